"""netsh.exe: ``interface portproxy add|delete v4tov4`` with the registry value it writes.

Sources: Microsoft Learn "Netsh interface portproxy commands" (parameters listenport,
listenaddress, connectport, connectaddress; listenaddress defaults to all addresses); the proxy is
stored under HKLM\\SYSTEM\\CurrentControlSet\\Services\\PortProxy\\v4tov4\\tcp as a value named
"<listenaddress>/<listenport>" with data "<connectaddress>/<connectport>" (written by netsh.exe; the
key Sigma's registry_event_portproxy_registry_key rule watches). netsh prints an empty line on
success. Firewall, trace, wlan and other contexts are not modelled.
"""

from __future__ import annotations

from harness.emulated.programs.common import not_modelled, out
from harness.emulated.registry import Value, sysmon_details
from harness.emulated.tools import Ctx, ProgramProfile

PORTPROXY = "SYSTEM\\CurrentControlSet\\Services\\PortProxy\\v4tov4\\tcp"


def netsh(ctx: Ctx, argv: list[str], profile: ProgramProfile) -> int:
    words = [a.lower() for a in argv[1:]]
    if words[:2] != ["interface", "portproxy"] or len(words) < 4 or words[3] != "v4tov4":
        return not_modelled(ctx, argv, words=3)
    verb = words[2]
    params = {}
    for a in argv[5:]:
        k, sep, v = a.partition("=")
        if not sep:
            return not_modelled(ctx, argv, words=4)
        params[k.lower()] = v
    listen = f"{params.get('listenaddress', '*')}/{params.get('listenport', '')}"
    if verb == "add" and params.get("listenport") and params.get("connectaddress"):
        value = Value(listen, "REG_SZ", f"{params['connectaddress']}/{params.get('connectport', params['listenport'])}")
        ctx.host.registry.set_value("HKLM", PORTPROXY, value)
        key = f"HKLM\\{PORTPROXY}"
        ctx.host.log_registry(ctx.proc, "CreateKey", key)
        ctx.host.log_registry(ctx.proc, "SetValue", key, value.name, sysmon_details(value))
        out(ctx, "\n")
        return 0
    return not_modelled(ctx, argv, words=4)
