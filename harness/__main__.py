"""``python -m harness`` is the same as ``atomiclab``."""

import sys

from harness.cli import main

sys.exit(main())
