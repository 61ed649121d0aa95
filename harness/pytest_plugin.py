"""pytest plugin entry point (``pytest11``); the options and hooks are being written (owner: runner)."""
