"""Telemetry readers: XML, EVTX, JSON shapes, normalized JSONL."""
