"""Detection engines: local Sumo Logic Log Search, Sigma (pySigma + SQLite), remote Sumo Search Job API."""
