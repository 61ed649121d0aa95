"""sc.exe create / delete / start / stop of services created on this host (query: tools.sc).

Sources: Microsoft Learn "sc.exe create", "sc.exe delete" (``binpath=``, ``start=`` with the value
as the next word) and "HKLM\\SYSTEM\\CurrentControlSet\\Services Registry Tree" (Type, Start,
ErrorControl, ImagePath, ObjectName values); the Service Control Manager (services.exe) writes the
service key, which a real recording shows as Sysmon 13 by services.exe with Start ``DWORD
(0x00000003)`` and ImagePath, and on delete Start ``DWORD (0x00000004)`` (evtx-attack-samples
PanacheSysmon_vs_AtomicRedTeam01.evtx, T1050). Result texts and codes are sc.exe's ("[SC]
CreateService SUCCESS", 1060 ERROR_SERVICE_DOES_NOT_EXIST, 1073 ERROR_SERVICE_EXISTS, 1062
ERROR_SERVICE_NOT_ACTIVE). Services the host did not create this session
(stock services), remote \\\\servers, config/description and start are not modelled.
"""

from __future__ import annotations

from harness.emulated.programs.common import not_modelled, out
from harness.emulated.registry import KeyState, Value, key_name, sysmon_details
from harness.emulated.tools import Ctx, ProgramProfile
from harness.emulated.tools import sc as sc_query

SERVICES = "SYSTEM\\CurrentControlSet\\Services"
START_TYPES = {"boot": 0, "system": 1, "auto": 2, "demand": 3, "disabled": 4, "delayed-auto": 2}


def _params(args: list[str]) -> dict[str, str] | None:
    """``name= value`` pairs (sc wants the value as the next word)."""
    found: dict[str, str] = {}
    i = 0
    while i < len(args):
        a = args[i]
        if not a.endswith("="):
            if "=" in a:
                k, _, v = a.partition("=")
                found[k.lower()] = v
                i += 1
                continue
            return None
        if i + 1 >= len(args):
            return None
        found[a[:-1].lower()] = args[i + 1]
        i += 2
    return found


def sc(ctx: Ctx, argv: list[str], profile: ProgramProfile) -> int:
    args = argv[1:]
    if args and args[0].startswith("\\\\"):
        return not_modelled(ctx, [argv[0], "\\\\server"])
    verb = args[0].lower() if args else ""
    if verb in ("query", "queryex") or len(args) < 2:
        return sc_query(ctx, argv, profile)
    name = args[1]
    registry = ctx.host.registry
    state = registry.state("HKLM", f"{SERVICES}\\{name}")
    key = registry.key("HKLM", f"{SERVICES}\\{name}")
    ours = key is not None and key.complete  # created on this host this session
    if verb == "create":
        params = _params(args[2:])
        allowed = {"binpath", "start", "displayname", "type", "obj"}
        if params is None or "binpath" not in params or set(params) - allowed:
            return not_modelled(ctx, argv, words=2)
        if state is KeyState.PRESENT:
            if not ours:
                return not_modelled(ctx, [argv[0], "create over a stock service"])
            out(ctx, "[SC] CreateService FAILED 1073:\n\nThe specified service already exists.\n\n")
            return 1073
        if ctx.host.service_state(name) is not None:
            out(ctx, "[SC] CreateService FAILED 1073:\n\nThe specified service already exists.\n\n")
            return 1073
        start = START_TYPES.get(params.get("start", "demand").lower())
        if start is None or params.get("type", "own").lower() != "own":
            return not_modelled(ctx, argv, words=2)
        scm = ctx.host.service_process("services")
        rest = f"{SERVICES}\\{name}"
        values = [
            Value("Type", "REG_DWORD", 0x10), Value("Start", "REG_DWORD", start), Value("ErrorControl", "REG_DWORD", 1),
            Value("ImagePath", "REG_EXPAND_SZ", params["binpath"]), Value("DisplayName", "REG_SZ", params.get(
                "displayname", name)), Value("ObjectName", "REG_SZ", params.get("obj", "LocalSystem")),
        ]  # fmt: skip
        for v in values:
            registry.set_value("HKLM", rest, v)
            ctx.host.log_registry(scm, "SetValue", key_name("HKLM", rest), v.name, sysmon_details(v))
        out(ctx, "[SC] CreateService SUCCESS\n")
        return 0
    if state is KeyState.ABSENT:  # deleted on this host
        out(ctx, "[SC] OpenService FAILED 1060:\n\nThe specified service does not exist as an installed service.\n\n")
        return 1060
    if not ours:
        return not_modelled(ctx, argv, words=2)
    assert key is not None
    if verb == "delete":
        v = Value("Start", "REG_DWORD", 4)  # marked for deletion: the SCM disables it first
        registry.set_value("HKLM", f"{SERVICES}\\{name}", v)
        ctx.host.log_registry(ctx.host.service_process("services"), "SetValue", key.path, "Start", sysmon_details(v))
        registry.delete_key("HKLM", f"{SERVICES}\\{name}")
        out(ctx, "[SC] DeleteService SUCCESS\n")
        return 0
    if verb == "stop":
        out(ctx, "[SC] ControlService FAILED 1062:\n\nThe service has not been started.\n\n")
        return 1062
    # start: the service binary may be a lab file the emulated file system does not hold.
    return not_modelled(ctx, argv, words=2)
