"""Content: the atomics, expectations and rule files a run is made of, loaded and checked as data.

Modules:

* ``yamldoc``      safe YAML parsing that keeps every value's source line (``FILE:LINE: YAML-PATH``)
* ``schemacheck``  JSON Schema (draft 2020-12) validation; schemas ship in ``schemas/``
* ``atomics``      Atomic Red Team files -> ``harness.model.AtomicFile`` (+ ``#{arg}`` lint, GUIDs)
* ``expectations`` expected events and detections per test GUID; ``LabFeature``
* ``project``      ``content_root()``: where atomics/, expectations/, detections/ live
* ``validate``     everything ``atomiclab validate`` checks, returned as data
* ``labconfig``    the lab description (lab.yaml)

Field conditions (``where:``) are compiled by ``harness.matching``.
"""
