"""Remote execution: transports (WinRM, SSH), executors (render ART commands), prerequisites, cleanup."""
