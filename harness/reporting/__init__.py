"""Reporters: results.json, junit.xml, report.html, navigator-layer.json, evidence bundle, history."""
