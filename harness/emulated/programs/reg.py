"""reg.exe: query, add and delete over the registry model, with Sysmon 12/13 for every change.

Sources: Microsoft Learn "reg add", "reg delete", "reg query" (syntax, /v /ve /t /d /f /s /va,
data types); the output lines and "ERROR: The system was unable to find the specified registry key
or value." are reg.exe's own text (atomic-evtx transcripts, Windows Server 2022). Without ``/f`` reg
asks for confirmation on the console; over WinRS that prompt is not modelled (note, no effect).
A key the model does not know (see ``registry.KeyState.UNKNOWN``) is not modelled, never absent.
"""

from __future__ import annotations

from harness.emulated.programs.common import err, not_modelled, out
from harness.emulated.registry import LONG_HIVE, VALUE_TYPES, KeyState, Value, canonical, key_name, sysmon_details
from harness.emulated.tools import Ctx, ProgramProfile

OK = "The operation completed successfully.\n\n"
NOT_FOUND = "ERROR: The system was unable to find the specified registry key or value.\n"


def _opts(args: list[str]) -> tuple[list[str], dict[str, str | None]]:
    pos: list[str] = []
    opts: dict[str, str | None] = {}
    i = 0
    while i < len(args):
        a = args[i]
        low = a.lower()
        if low in ("/v", "/t", "/d", "/s", "/f", "/ve", "/va", "/reg:64", "/reg:32", "/se", "/k", "/c", "/e"):
            if low in ("/v", "/t", "/d") and i + 1 < len(args):
                opts[low[1:]] = args[i + 1]
                i += 1
            elif low == "/s" and i + 1 < len(args) and len(args[i + 1]) == 1:
                opts["sep"] = args[i + 1]
                i += 1
            else:
                opts[low[1:]] = None
        else:
            pos.append(a)
        i += 1
    return pos, opts


def _long(hive: str, rest: str) -> str:
    return f"{LONG_HIVE[hive]}\\{rest}" if rest else LONG_HIVE[hive]


def _data(rtype: str, text: str, sep: str) -> str | int | bytes | list[str] | None:
    if rtype in ("REG_DWORD", "REG_QWORD"):
        try:
            return int(text, 16) if text.lower().startswith("0x") else int(text or "0")
        except ValueError:
            return None
    if rtype in ("REG_BINARY", "REG_NONE"):
        try:
            return bytes.fromhex(text)
        except ValueError:
            return None
    if rtype == "REG_MULTI_SZ":
        return text.split(sep)
    return text


def _show(v: Value) -> str:
    if isinstance(v.data, int):
        return hex(v.data)
    if isinstance(v.data, bytes):
        return v.data.hex().upper()
    if isinstance(v.data, list):
        return "\\0".join(v.data)
    return v.data


def reg(ctx: Ctx, argv: list[str], profile: ProgramProfile) -> int:
    args = argv[1:]
    sub = args[0].lower() if args else ""
    pos, opts = _opts(args[1:])
    where = canonical(pos[0]) if pos else None
    if sub not in ("add", "delete", "query") or where is None or "reg:32" in opts:
        return not_modelled(ctx, argv)
    hive, rest = where
    if hive in ("HKU", "HKCC"):
        return not_modelled(ctx, argv)
    registry = ctx.host.registry
    state = registry.state(hive, rest)
    if sub == "query":
        return _query(ctx, argv, hive, rest, state, opts)
    if sub == "add":
        return _add(ctx, argv, hive, rest, opts)
    return _delete(ctx, argv, hive, rest, state, opts)


def _query(ctx: Ctx, argv: list[str], hive: str, rest: str, state: KeyState, opts: dict[str, str | None]) -> int:
    if state is KeyState.ABSENT:
        err(ctx, NOT_FOUND)
        return 1
    key = ctx.host.registry.key(hive, rest)
    if key is None or "s" in opts or "f" in opts:
        return not_modelled(ctx, argv)
    name = "" if "ve" in opts else opts.get("v")
    if name is None:
        if not key.complete:
            return not_modelled(ctx, argv)  # a stock key has values and subkeys the model does not list
        out(ctx, f"\n{_long(hive, key.path.partition(chr(92))[2])}\n")
        for v in key.values.values():
            out(ctx, f"    {v.name or '(Default)'}    {v.type}    {_show(v)}\n")
        out(ctx, "\n")
        for sk in ctx.host.registry.subkeys(hive, rest):
            out(ctx, f"{_long(hive, sk.partition(chr(92))[2])}\n")
        return 0
    found = key.values.get(name.lower())
    if found is None:
        if not key.complete:
            return not_modelled(ctx, argv)
        err(ctx, NOT_FOUND)
        return 1
    shown = f"    {found.name or '(Default)'}    {found.type}    {_show(found)}"
    out(ctx, f"\n{_long(hive, key.path.partition(chr(92))[2])}\n{shown}\n\n")
    return 0


def _add(ctx: Ctx, argv: list[str], hive: str, rest: str, opts: dict[str, str | None]) -> int:
    registry = ctx.host.registry
    name = "" if "ve" in opts else opts.get("v")
    key = key_name(hive, rest)
    if name is None:
        registry.create_key(hive, rest)
        ctx.host.log_registry(ctx.proc, "CreateKey", key)
        out(ctx, OK)
        return 0
    rtype = (opts.get("t") or "REG_SZ").upper()
    if rtype not in VALUE_TYPES:
        err(ctx, "ERROR: Invalid syntax.\nType \"REG ADD /?\" for usage.\n")
        return 1
    existing = registry.key(hive, rest)
    if "f" not in opts and (existing is None or not existing.complete or name.lower() in existing.values):
        return not_modelled(ctx, argv)  # reg would ask "Value ... exists, overwrite(Yes/No)?" on the console
    data = _data(rtype, opts.get("d") or "", opts.get("sep") or "\\0")
    if data is None:
        err(ctx, "ERROR: Invalid syntax.\nType \"REG ADD /?\" for usage.\n")
        return 1
    value = Value(name, rtype, data)
    registry.set_value(hive, rest, value)
    ctx.host.log_registry(ctx.proc, "CreateKey", key)
    ctx.host.log_registry(ctx.proc, "SetValue", key, name, sysmon_details(value))
    out(ctx, OK)
    return 0


def _delete(ctx: Ctx, argv: list[str], hive: str, rest: str, state: KeyState, opts: dict[str, str | None]) -> int:
    if "f" not in opts or "va" in opts:
        return not_modelled(ctx, argv)  # the console confirmation prompt / bulk value delete
    if state is KeyState.ABSENT:
        err(ctx, NOT_FOUND)
        return 1
    registry = ctx.host.registry
    key = registry.key(hive, rest)
    name = "" if "ve" in opts else opts.get("v")
    if name is None:
        if state is KeyState.UNKNOWN:
            return not_modelled(ctx, argv)
        for gone in registry.delete_key(hive, rest):
            ctx.host.log_registry(ctx.proc, "DeleteKey", gone)
        out(ctx, OK)
        return 0
    if key is None or (name.lower() not in key.values and not key.complete):
        return not_modelled(ctx, argv)
    if not registry.delete_value(hive, rest, name):
        err(ctx, NOT_FOUND)
        return 1
    ctx.host.log_registry(ctx.proc, "DeleteValue", key.path, name)
    out(ctx, OK)
    return 0
