"""Transports: WinRM (pypsrp) and SSH (paramiko)."""
