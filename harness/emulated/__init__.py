"""emulated."""
