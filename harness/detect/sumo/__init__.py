"""Local Sumo Logic Log Search engine: parser, evaluator, lint, message model.

Public entry points: ``SumoDetector`` (detector.py), ``MessageConfig``/``to_message``
(messages.py), ``parse_query`` (parser.py) and ``lint_sumo`` (lint.py).
"""
