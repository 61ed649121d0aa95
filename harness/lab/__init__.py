"""The lab: the Vagrant wrapper (vagrant.py), lab.yaml writing (labfile.py) and the preflight that
tells a lab gap from a rule gap (preflight.py)."""
