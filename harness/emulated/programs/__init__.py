"""Models of stock Windows programs, one small module per family, registered by behaviour name.

Contract: ``PROGRAM_BEHAVIOURS`` maps a profile's ``behaviour`` to ``behaviour(ctx, argv, profile)``
(see ``harness.emulated.tools``). Each model covers the forms the upstream atomics use, with the
output text and exit codes of the real program (sources cited in each module); every other form
prints the "not modelled" note and has no effect.
"""

from __future__ import annotations

from collections.abc import Mapping

from harness.emulated.programs import files, netsh, reg, sc, schtasks, web, wmic
from harness.emulated.tools import Behaviour

PROGRAM_BEHAVIOURS: Mapping[str, Behaviour] = {
    "reg": reg.reg,
    "curl": web.curl,
    "certutil": web.certutil,
    "wmic": wmic.wmic,
    "schtasks": schtasks.schtasks,
    "netsh": netsh.netsh,
    "attrib": files.attrib,
    "sc": sc.sc,
}
