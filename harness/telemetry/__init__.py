"""Telemetry: one event model, readers for every real Windows event format, collection, lineage."""
