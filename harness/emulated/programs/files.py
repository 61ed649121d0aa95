"""attrib.exe on one existing file: sets or clears R/A/S/H silently, as attrib does on success.

Source: Microsoft Learn "attrib" (syntax ``attrib [{+|-}r] [{+|-}a] [{+|-}s] [{+|-}h] [{+|-}i]
<drive>:<path><filename> [/s [/d] [/l]]``; no output on success). Attributes have no Sysmon event.
Wildcards, /s and /d, a missing file and the listing form are not modelled.
"""

from __future__ import annotations

import re

from harness.emulated.filesystem import normalize
from harness.emulated.programs.common import not_modelled
from harness.emulated.tools import Ctx, ProgramProfile


def attrib(ctx: Ctx, argv: list[str], profile: ProgramProfile) -> int:
    args = argv[1:]
    flags = [a for a in args if re.fullmatch(r"[+-][rashi]", a, re.IGNORECASE)]
    paths = [a for a in args if a not in flags]
    if not flags or len(paths) != 1 or paths[0].startswith("/") or any(c in paths[0] for c in "*?"):
        return not_modelled(ctx, argv, words=1)
    if not ctx.host.fs.is_file(normalize(paths[0], ctx.cwd)):
        return not_modelled(ctx, [argv[0], "(a file the host does not have)"])
    return 0
