"""Local Sumo Logic Log Search engine: parser, evaluator, lint, message model."""
