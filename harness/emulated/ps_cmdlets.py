"""Cmdlet models of the emulated PowerShell beyond the core set in ``powershell.py``.

Contract: ``CMDLETS`` maps lower-case cmdlet names to ``impl(interp, bound, input, command)``
(the signature of ``powershell.CMDLETS``); ``static_member`` / ``static_method`` /
``set_static_member`` answer ``[Type]::Name`` for the few .NET statics the atomics use. Every
effect goes through the host (files: Sysmon 11; registry: Sysmon 12/13; processes: Sysmon 1/4688).
Error texts are Windows PowerShell 5.1's (message, CategoryInfo and FullyQualifiedErrorId as the
cmdlet writes them; sources: the cmdlets' resource strings in PowerShell's source,
src/Microsoft.PowerShell.Commands.{Management,Utility}/resources/*.resx). A form outside the model
says "not modelled" and has no effect; a registry key the model does not know is never "absent".
The lab hosts have no internet: web requests fail with the name-resolution error a host without
DNS for public names reports (WebException NameResolutionFailure).
"""

from __future__ import annotations

import base64
import ntpath
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from harness.emulated.filesystem import FsError, normalize
from harness.emulated.powershell import (
    Bound,
    Command,
    Interpreter,
    Parser,
    PSError,
    PSObject,
    PSSyntaxError,
    _error_action,
    _remove_item,
    _test_path,
    enumerate_value,
    format_list,
    to_int,
    to_str,
)
from harness.emulated.registry import LONG_HIVE, KeyState, Value, canonical, key_name, sysmon_details

PS_REGISTRY = "Microsoft.PowerShell.Core\\Registry"


# ------------------------------------------------------------------------------------- helpers


def _fail(it: Interpreter, b: Bound, err: PSError) -> None:
    """A non-terminating error, honouring -ErrorAction (Stop makes it terminating)."""
    action = _error_action(b)
    if action == "stop":
        raise err
    if action in ("silentlycontinue", "ignore"):
        it.last_ok = False
        it.scope.vars["?"] = False
        return
    it.report(err)


def _not_found(path: str, cmdlet: str, cmd: Command, exc: str = "ItemNotFoundException") -> PSError:
    return PSError(
        f"Cannot find path '{path}' because it does not exist.",
        category="ObjectNotFound",
        target=path,
        exception=exc,
        fqid=f"PathNotFound,Microsoft.PowerShell.Commands.{cmdlet.replace('-', '')}Command",
        pos=cmd.pos,
        prefix=cmdlet,
    )


def _paths(it: Interpreter, b: Bound, *names: str, position: int = 0) -> list[str]:
    raw = b.get(*names, position=position)
    return [to_str(p) for p in enumerate_value(raw)]


def _ps_key_path(hive: str, rest: str) -> str:
    return f"{PS_REGISTRY}::{LONG_HIVE[hive]}" + (f"\\{rest}" if rest else "")


def _mode(is_dir: bool) -> str:
    return "d-----" if is_dir else "-a----"


def _lwt(t: datetime) -> str:
    # FileSystem.format.ps1xml (5.1): "{0,10}  {1,8}" of ToString("d") and ToString("t"), en-US.
    hour = t.hour % 12 or 12
    date = f"{t.month}/{t.day}/{t.year}"
    clock = f"{hour}:{t.minute:02d} " + ("AM" if t.hour < 12 else "PM")
    return f"{date:>10}  {clock:>8}"


class FileItem:
    """A FileInfo/DirectoryInfo as New-Item/Copy-Item -PassThru output it (table view)."""

    def __init__(self, path: str, is_dir: bool, length: int, when: datetime) -> None:
        self.FullName = path
        self.Name = ntpath.basename(path)
        self.is_dir = is_dir
        self.Length = length
        self.LastWriteTime = when

    def __str__(self) -> str:
        return self.FullName

    def ps_set(self, it: Interpreter, name: str, value: Any) -> bool:
        """Property assignment: LastWriteTime/LastAccessTime change no event; CreationTime is Sysmon 2
        (file creation time changed), which the host does not model."""
        low = name.lower()
        if low in ("lastwritetime", "lastaccesstime"):
            setattr(self, "LastWriteTime" if low == "lastwritetime" else "LastAccessTime", value)
            return True
        it.not_modelled(f"setting FileInfo.{name}")
        return True

    def render(self) -> str:
        head = (
            f"\r\n\r\n    Directory: {ntpath.dirname(self.FullName)}\r\n\r\n\r\n"
            "Mode                LastWriteTime         Length Name\r\n"
            "----                -------------         ------ ----\r\n"
        )
        length = "" if self.is_dir else str(self.Length)
        return head + f"{_mode(self.is_dir):<6}{_lwt(self.LastWriteTime):>27}{length:>15} {self.Name}\r\n\r\n\r\n"


class RegistryKeyItem:
    """A registry key as New-Item outputs it (Hive/Name/Property table)."""

    def __init__(self, hive: str, rest: str, props: list[str]) -> None:
        self.hive = hive
        self.rest = rest
        self.Name = key_name(LONG_HIVE[hive], rest)
        self.props = props

    def __str__(self) -> str:
        return self.Name

    def render(self) -> str:
        parent, _, leaf = self.Name.rpartition("\\")
        return (
            f"\r\n\r\n    Hive: {parent}\r\n\r\n\r\n"
            "Name                           Property\r\n----                           --------\r\n"
            f"{leaf:<31}{' '.join(self.props)}\r\n\r\n\r\n"
        )


# --------------------------------------------------------------------------- Invoke-Expression


def _invoke_expression(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    texts = [to_str(v) for v in enumerate_value(b.get("command", position=0))] or [to_str(v) for v in inp]
    for text in texts:
        it.ctx.host.log_script_block(it.ctx.proc, text)  # Invoke-Expression text is its own script block
        try:
            stmts = Parser(text).script()
        except PSSyntaxError as e:
            it.not_modelled(f"PowerShell syntax in Invoke-Expression: {e}")
            return
        saved_source = it.source
        it.source = text
        try:
            yield from it.block_stmts(stmts)
        finally:
            it.source = saved_source


# ----------------------------------------------------------------------------------- file items


def _new_item(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    kind = to_str(b.get("itemtype", "type", default="")).lower()
    name = b.get("name")
    value = b.get("value")
    force = bool(b.get("force"))
    paths = _paths(it, b, "path", position=0) or [it.ctx.cwd]
    out: list[Any] = []
    for raw in paths:
        full_raw = ntpath.join(raw, to_str(name)) if name is not None else raw
        where = canonical(full_raw)
        if where is not None:
            out.extend(_new_registry_key(it, b, cmd, where, force))
            continue
        if full_raw.lower().startswith(("function:", "variable:", "env:", "alias:", "cert:", "wsman:")):
            it.not_modelled(f"New-Item {full_raw.split(':', 1)[0]}:")
            continue
        path = normalize(full_raw, it.ctx.cwd)
        fs = it.ctx.host.fs
        if kind in ("directory", "container", "d"):
            if fs.exists(path) and not force:
                _fail(it, b, PSError(
                    f"An item with the specified name {path} already exists.", category="ResourceExists",
                    target=path, exception="IOException",
                    fqid="DirectoryExist,Microsoft.PowerShell.Commands.NewItemCommand", pos=cmd.pos, prefix="New-Item",
                ))  # fmt: skip
                continue
            fs.mkdir(path)  # Directory.CreateDirectory: missing parents are created too
            out.append(FileItem(path, True, 0, it.ctx.host.now()))
        elif kind in ("", "file", "f"):
            if fs.exists(path) and not force:
                _fail(it, b, PSError(
                    f"The file '{path}' already exists.", category="WriteError", target=path,
                    exception="IOException", fqid="NewItemIOError,Microsoft.PowerShell.Commands.NewItemCommand",
                    pos=cmd.pos, prefix="New-Item",
                ))  # fmt: skip
                continue
            parent = ntpath.dirname(path)
            if not fs.is_dir(parent):
                if not force:
                    _fail(it, b, PSError(
                        f"Could not find a part of the path '{path}'.", category="WriteError", target=path,
                        exception="DirectoryNotFoundException",
                        fqid="NewItemIOError,Microsoft.PowerShell.Commands.NewItemCommand", pos=cmd.pos,
                        prefix="New-Item",
                    ))  # fmt: skip
                    continue
                fs.mkdir(parent)
            data = to_str(value).encode("utf-8") if value is not None else b""
            it.ctx.host.write_file(it.ctx.proc, path, data)
            out.append(FileItem(path, False, len(data), it.ctx.host.now()))
        else:
            it.not_modelled(f"New-Item -ItemType {kind}")
    return iter(out)


def _new_registry_key(it: Interpreter, b: Bound, cmd: Command, where: tuple[str, str], force: bool) -> list[Any]:
    hive, rest = where
    reg = it.ctx.host.registry
    state = reg.state(hive, rest)
    if state is KeyState.PRESENT:
        if not force:
            _fail(it, b, PSError(
                "A key at this path already exists.", category="ResourceExists",
                target=_ps_key_path(hive, rest), exception="IOException",
                fqid="System.IO.IOException,Microsoft.PowerShell.Commands.NewItemCommand", pos=cmd.pos,
                prefix="New-Item", info=f"({_ps_key_path(hive, rest)}:String) [New-Item]",
            ))  # fmt: skip
            return []
        # -Force on an existing key recreates it in the registry provider: not modelled.
        it.not_modelled("New-Item -Force on an existing registry key")
        return []
    parent_hive, _, _ = key_name(hive, rest).rpartition("\\")
    parent_state = reg.state(hive, rest.rpartition("\\")[0]) if "\\" in rest else KeyState.PRESENT
    if parent_state is not KeyState.PRESENT and not force:
        if parent_state is KeyState.UNKNOWN:
            it.not_modelled(f"New-Item under the unmodelled key {parent_hive}")
            return []
        _fail(it, b, _not_found(f"{hive}:\\{rest.rpartition(chr(92))[0]}", "New-Item", cmd))
        return []
    created = reg.create_key(hive, rest)
    for k in created:
        it.ctx.host.log_registry(it.ctx.proc, "CreateKey", k)
    value = b.get("value")
    props: list[str] = []
    if value is not None:
        v = Value("", "REG_SZ", to_str(value))
        reg.set_value(hive, rest, v)
        it.ctx.host.log_registry(it.ctx.proc, "SetValue", key_name(hive, rest), "", sysmon_details(v))
        props.append("(default)")
    return [RegistryKeyItem(hive, rest, props)]


def _copy_item(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    dest_raw = b.get("destination", position=1)
    if dest_raw is None:
        it.not_modelled("Copy-Item without -Destination")
        return iter(())
    fs = it.ctx.host.fs
    dest = normalize(to_str(dest_raw), it.ctx.cwd)
    out: list[Any] = []
    for raw in _paths(it, b, "path", "literalpath", position=0):
        if canonical(raw) is not None or any(c in raw for c in "*?"):
            it.not_modelled("Copy-Item " + ("registry" if canonical(raw) else "wildcards"))
            continue
        src = normalize(raw, it.ctx.cwd)
        if fs.is_dir(src):
            it.not_modelled("Copy-Item of a directory")
            continue
        if not fs.is_file(src):
            _fail(it, b, _not_found(src, "Copy-Item", cmd))
            continue
        target = ntpath.join(dest, ntpath.basename(src)) if fs.is_dir(dest) else dest
        if not fs.is_dir(ntpath.dirname(target)):
            _fail(it, b, PSError(
                f"Could not find a part of the path '{target}'.", category="NotSpecified", target="",
                exception="DirectoryNotFoundException",
                fqid="System.IO.DirectoryNotFoundException,Microsoft.PowerShell.Commands.CopyItemCommand",
                pos=cmd.pos, prefix="Copy-Item",
            ))  # fmt: skip
            continue
        data = fs.read(src)
        it.ctx.host.write_file(it.ctx.proc, target, data)
        if b.get("passthru"):
            out.append(FileItem(target, False, len(data), it.ctx.host.now()))
    return iter(out)


def _get_childitem(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    """Get-ChildItem of one file (its FileInfo) or one Env: variable; a path that does not exist is
    the cmdlet's ItemNotFoundException. Directory listings are not modelled (the emulated file system
    does not hold every file a real host has)."""
    raws = _paths(it, b, "path", "literalpath", position=0)
    extra = {"recurse", "filter", "include", "exclude", "name", "directory", "file", "hidden", "depth"} & set(b.named)
    if len(raws) != 1 or extra or any(c in raws[0] for c in "*?"):
        it.not_modelled("Get-ChildItem listing")
        return iter(())
    raw = raws[0]
    if raw.lower().startswith("env:"):
        name = raw[4:].lstrip("\\")
        value = it.ctx.env.get(name) if name else None
        if not name:
            it.not_modelled("Get-ChildItem Env: listing")
            return iter(())
        if value is None:
            _fail(it, b, _not_found(name, "Get-ChildItem", cmd))
            return iter(())
        return iter([PSObject("System.Collections.DictionaryEntry", {"Name": name, "Value": value})])
    if canonical(raw) is not None or (":" in raw[2:]):
        it.not_modelled("Get-ChildItem of a provider path")
        return iter(())
    path = normalize(raw, it.ctx.cwd)
    fs = it.ctx.host.fs
    entry = fs.stat(path)
    if entry is not None and fs.is_file(path):
        return iter([FileItem(entry.path, False, len(entry.data), entry.modified)])
    if fs.is_dir(path):
        it.not_modelled("Get-ChildItem listing")
        return iter(())
    _fail(it, b, _not_found(path, "Get-ChildItem", cmd))
    return iter(())


def _set_location(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    raw = to_str(b.get("path", "literalpath", position=0, default=it.ctx.proc.account.profile_dir))
    if canonical(raw) is not None or (raw.endswith(":") and len(raw) > 2):
        it.not_modelled("Set-Location to a provider drive")
        return iter(())
    path = normalize(raw, it.ctx.cwd)
    if not it.ctx.host.fs.is_dir(path):
        _fail(it, b, _not_found(path, "Set-Location", cmd))
        return iter(())
    it.ctx.cwd = path
    return iter(())


def _join_path(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    parents = enumerate_value(b.get("path", position=0))
    child = to_str(b.get("childpath", position=1, default=""))
    return iter([to_str(p).rstrip("\\/") + "\\" + child.lstrip("\\/") if child else to_str(p) for p in parents])


def _split_path(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    out: list[Any] = []
    for p in [to_str(x) for x in enumerate_value(b.get("path", position=0))] or [to_str(x) for x in inp]:
        if b.get("leaf"):
            out.append(ntpath.basename(p.rstrip("\\")))
        elif b.get("qualifier"):
            out.append(ntpath.splitdrive(p)[0])
        elif b.get("noqualifier"):
            out.append(ntpath.splitdrive(p)[1])
        elif b.get("isabsolute"):
            out.append(ntpath.isabs(p))
        else:
            out.append(ntpath.dirname(p.rstrip("\\")))
    return iter(out)


# ---------------------------------------------------------------------------------- registry


def _reg_target(it: Interpreter, b: Bound, cmd: Command, cmdlet: str) -> tuple[str, str] | None:
    raw = _paths(it, b, "path", "literalpath", position=0)
    if len(raw) != 1:
        it.not_modelled(f"{cmdlet} without exactly one -Path")
        return None
    where = canonical(raw[0])
    if where is None:
        it.not_modelled(f"{cmdlet} on a non-registry path")
        return None
    state = it.ctx.host.registry.state(*where)
    if state is KeyState.UNKNOWN:
        it.not_modelled(f"{cmdlet} (a registry key outside the model)")
        return None
    if state is KeyState.ABSENT:
        _fail(it, b, _not_found(raw[0], cmdlet, cmd))
        return None
    return where


_PROPERTY_TYPES = {
    "string": "REG_SZ", "expandstring": "REG_EXPAND_SZ", "dword": "REG_DWORD", "qword": "REG_QWORD",
    "binary": "REG_BINARY", "multistring": "REG_MULTI_SZ", "none": "REG_NONE",
}  # fmt: skip


def _value_of(raw: Any, rtype: str) -> str | int | bytes | list[str]:
    if rtype in ("REG_DWORD", "REG_QWORD"):
        return to_int(raw)
    if rtype == "REG_BINARY":
        return bytes(to_int(x) & 0xFF for x in enumerate_value(raw))
    if rtype == "REG_MULTI_SZ":
        return [to_str(x) for x in enumerate_value(raw)]
    return to_str(raw)


def _property_object(hive: str, rest: str, props: dict[str, Any]) -> PSObject:
    parent, _, leaf = rest.rpartition("\\")
    return PSObject(
        "System.Management.Automation.PSCustomObject",
        {
            **props, "PSPath": _ps_key_path(hive, rest), "PSParentPath": _ps_key_path(hive, parent),
            "PSChildName": leaf, "PSDrive": hive if hive in ("HKLM", "HKCU") else "", "PSProvider": PS_REGISTRY,
        },
    )  # fmt: skip


def _set_property(it: Interpreter, b: Bound, cmd: Command, cmdlet: str, new: bool) -> Iterator[Any]:
    where = _reg_target(it, b, cmd, cmdlet)
    if where is None:
        return iter(())
    hive, rest = where
    name = to_str(b.get("name", position=1, default=""))
    raw = b.get("value", position=2)
    key = it.ctx.host.registry.key(hive, rest)
    assert key is not None
    existing = key.values.get(name.lower())
    ptype = to_str(b.get("propertytype", "type", default="")).lower()
    if ptype and ptype not in _PROPERTY_TYPES:
        it.not_modelled(f"{cmdlet} -PropertyType {ptype}")
        return iter(())
    if new and existing is not None and not b.get("force"):
        _fail(it, b, PSError(
            "The property already exists.", category="ResourceExists", target=_ps_key_path(hive, rest),
            exception="IOException", fqid="System.IO.IOException,Microsoft.PowerShell.Commands.NewItemPropertyCommand",
            pos=cmd.pos, prefix=cmdlet, info=f"({_ps_key_path(hive, rest)}:String) [New-ItemProperty]",
        ))  # fmt: skip
        return iter(())
    if ptype:
        rtype = _PROPERTY_TYPES[ptype]
    elif existing is not None and not new:
        rtype = existing.type
    elif isinstance(raw, int) and not isinstance(raw, bool):
        rtype = "REG_DWORD"  # the registry provider stores an Int32 as a DWORD
    else:
        rtype = "REG_SZ"
    value = Value(name, rtype, _value_of(raw, rtype))
    it.ctx.host.registry.set_value(hive, rest, value)
    it.ctx.host.log_registry(it.ctx.proc, "SetValue", key.path, name, sysmon_details(value))
    if new or b.get("passthru"):
        return iter([_property_object(hive, rest, {name: raw})])
    return iter(())


def _new_itemproperty(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    return _set_property(it, b, cmd, "New-ItemProperty", new=True)


def _set_itemproperty(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    return _set_property(it, b, cmd, "Set-ItemProperty", new=False)


def _remove_itemproperty(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    where = _reg_target(it, b, cmd, "Remove-ItemProperty")
    if where is None:
        return iter(())
    hive, rest = where
    reg = it.ctx.host.registry
    key = reg.key(hive, rest)
    assert key is not None
    for name in [to_str(n) for n in enumerate_value(b.get("name", position=1))]:
        if name.lower() not in key.values:
            if not key.complete:
                it.not_modelled("Remove-ItemProperty (a registry value outside the model)")
                continue
            _fail(it, b, PSError(
                f"Property {name} does not exist at path {LONG_HIVE[hive]}\\{rest}.", category="InvalidArgument",
                target=name, exception="PSArgumentException",
                fqid="System.Management.Automation.PSArgumentException,Microsoft.PowerShell.Commands."
                "RemoveItemPropertyCommand", pos=cmd.pos, prefix="Remove-ItemProperty",
                info=f"({name}:String) [Remove-ItemProperty]",
            ))  # fmt: skip
            continue
        reg.delete_value(hive, rest, name)
        it.ctx.host.log_registry(it.ctx.proc, "DeleteValue", key.path, name)
    return iter(())


def _get_itemproperty(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    where = _reg_target(it, b, cmd, "Get-ItemProperty")
    if where is None:
        return iter(())
    hive, rest = where
    key = it.ctx.host.registry.key(hive, rest)
    assert key is not None
    names = [to_str(n) for n in enumerate_value(b.get("name", position=1))]
    if not names:
        if not key.complete:
            it.not_modelled("Get-ItemProperty of a whole stock registry key")
            return iter(())
        return iter([_property_object(hive, rest, {v.name or "(default)": v.data for v in key.values.values()})])
    props: dict[str, Any] = {}
    for n in names:
        v = key.values.get(n.lower())
        if v is None:
            if not key.complete:
                it.not_modelled("Get-ItemProperty (a registry value outside the model)")
                return iter(())
            _fail(it, b, PSError(
                f"Property {n} does not exist at path {LONG_HIVE[hive]}\\{rest}.", category="InvalidArgument",
                target=n, exception="PSArgumentException",
                fqid="System.Management.Automation.PSArgumentException,Microsoft.PowerShell.Commands."
                "GetItemPropertyCommand", pos=cmd.pos, prefix="Get-ItemProperty",
                info=f"({n}:String) [Get-ItemProperty]",
            ))  # fmt: skip
            return iter(())
        props[v.name] = v.data
    return iter([_property_object(hive, rest, props)])


def _remove_item_any(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    raws = _paths(it, b, "path", "literalpath", position=0)
    if not any(canonical(r) for r in raws):
        return _remove_item(it, b, inp, cmd)
    reg = it.ctx.host.registry
    for r in raws:
        where = canonical(r)
        if where is None:
            it.not_modelled("Remove-Item of registry and file paths at once")
            continue
        state = reg.state(*where)
        if state is KeyState.UNKNOWN or any(c in r for c in "*?"):
            it.not_modelled("Remove-Item of a registry key the emulated host does not model")
            continue
        if state is KeyState.ABSENT:
            _fail(it, b, _not_found(r, "Remove-Item", cmd))
            continue
        if reg.subkeys(*where) and not b.get("recurse"):
            it.not_modelled("Remove-Item of a registry key with subkeys without -Recurse (a confirmation prompt)")
            continue
        for gone in reg.delete_key(*where):
            it.ctx.host.log_registry(it.ctx.proc, "DeleteKey", gone)
    return iter(())


def _test_path_any(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    raws = _paths(it, b, "path", "literalpath", position=0)
    if not any(canonical(r) for r in raws):
        return _test_path(it, b, inp, cmd)
    out: list[bool] = []
    for r in raws:
        where = canonical(r)
        state = it.ctx.host.registry.state(*where) if where else KeyState.UNKNOWN
        if state is KeyState.UNKNOWN:
            it.not_modelled("Test-Path of a registry key the emulated host does not model")
        out.append(state is KeyState.PRESENT)
    return iter(out)


# ------------------------------------------------------------------------------------ processes


def _start_process(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    file = to_str(b.get("filepath", position=0, default=""))
    args = b.get("argumentlist", "args", position=1)
    if b.get("verb") or b.get("credential") or not file:
        it.not_modelled("Start-Process " + " ".join(f"-{k}" for k in b.named))
        return iter(())
    ctx = it.ctx
    prog = ctx.host.resolve_program(file, ctx.cwd, ctx.env)
    if prog is None and not any(c in file for c in "\\/:"):
        for d in [p for p in (ctx.env.get("PATH") or "").split(";") if p]:
            prog = ctx.host.resolve_program(ntpath.join(d, file), ctx.cwd, ctx.env)
            if prog is not None:
                break
    if prog is None:
        _fail(it, b, PSError(
            "This command cannot be run due to the error: The system cannot find the file specified.",
            category="InvalidOperation", exception="InvalidOperationException",
            fqid="InvalidOperationException,Microsoft.PowerShell.Commands.StartProcessCommand", pos=cmd.pos,
            prefix="Start-Process", info="(:) [Start-Process]",
        ))  # fmt: skip
        return iter(())
    if not prog.image.lower().endswith((".exe", ".com")):
        it.not_modelled(f"Start-Process of a {ntpath.splitext(prog.image)[1]} file (ShellExecute association)")
        return iter(())
    arg_text = " ".join(to_str(a) for a in enumerate_value(args)) if args is not None else ""
    # .NET Process.Start writes "<path>" <arguments> as the new process's command line.
    command_line = f'"{prog.image}"' + (f" {arg_text}" if arg_text else "")
    from harness.emulated.tools import BufferSink

    sink = BufferSink()
    shown = bool(b.get("nonewwindow"))
    code = ctx.host.run_program(ctx, prog, command_line, out=ctx.out if shown else sink, err=ctx.err if shown else sink)
    if b.get("passthru"):
        return iter([PSObject("System.Diagnostics.Process", {"ProcessName": ntpath.splitext(ntpath.basename(
            prog.image))[0], "ExitCode": code})])  # fmt: skip
    return iter(())


#: Processes that run on every Windows Server 2022 (session 0/1 system processes and service hosts).
ALWAYS_RUNNING = frozenset({
    "system", "registry", "smss", "csrss", "wininit", "winlogon", "services", "lsass", "svchost", "fontdrvhost",
    "dwm", "spoolsv", "explorer", "sihost", "taskhostw", "ctfmon", "runtimebroker", "msmpeng", "nissrv",
    "wmiprvse", "conhost", "dllhost", "msdtc", "logonui", "lsaiso", "wlms", "vssvc", "searchindexer",
    "startmenuexperiencehost", "shellexperiencehost", "textinputhost", "securityhealthservice", "sysmon64",
    "winrshost", "wsmprovhost", "powershell", "cmd", "vmtoolsd", "vboxservice", "vboxtray", "idle",
})  # fmt: skip


def _stop_process(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    """Stop-Process -Name/-Id: a process the host never ran (and Windows does not always run) does
    not exist, which Stop-Process reports; stopping one that may be running is not modelled (the
    emulated programs end when their model returns, a real one may still run)."""
    return _absent_processes(it, b, cmd, "Stop-Process")


def _get_process(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    """Get-Process -Name/-Id of a process that cannot exist: the cmdlet's not-found error (or nothing
    with -ErrorAction SilentlyContinue); a listing or a process that may run is not modelled."""
    return _absent_processes(it, b, cmd, "Get-Process")


def _absent_processes(it: Interpreter, b: Bound, cmd: Command, cmdlet: str) -> Iterator[Any]:
    fqcmd = cmdlet.replace("-", "") + "Command"
    seen = {p.name.lower().removesuffix(".exe") for p in it.ctx.host.processes.history()}
    seen_pids = {p.pid for p in it.ctx.host.processes.history()}
    # Positional: Get-Process -Name, Stop-Process -Id (the cmdlets' parameter sets).
    get = cmdlet == "Get-Process"
    names = [to_str(n) for n in enumerate_value(b.get("name", "processname", position=0 if get else None))]
    ids = [to_int(i) for i in enumerate_value(b.get("id", position=None if get else 0))] if not names else []
    if not names and not ids:
        it.not_modelled(f"{cmdlet} listing or piped processes")
        return iter(())
    for n in names:
        low = n.lower().removesuffix(".exe")
        if low in seen or low in ALWAYS_RUNNING or any(c in low for c in "*?"):
            it.not_modelled(f"{cmdlet} (a process that may be running)")
            continue
        _fail(it, b, PSError(
            f'Cannot find a process with the name "{n}". Verify the process name and call the cmdlet again.',
            category="ObjectNotFound", target=n, exception="ProcessCommandException",
            fqid=f"NoProcessFoundForGivenName,Microsoft.PowerShell.Commands.{fqcmd}", pos=cmd.pos,
            prefix=cmdlet, info=f"({n}:String) [{cmdlet}]",
        ))  # fmt: skip
    for pid in ids:
        if pid in seen_pids or pid < 1000:
            it.not_modelled(f"{cmdlet} (a process that may be running)")
            continue
        _fail(it, b, PSError(
            f"Cannot find a process with the process identifier {pid}.", category="ObjectNotFound",
            target=str(pid), exception="ProcessCommandException",
            fqid=f"NoProcessFoundForGivenId,Microsoft.PowerShell.Commands.{fqcmd}", pos=cmd.pos,
            prefix=cmdlet, info=f"({pid}:Int32) [{cmdlet}]",
        ))  # fmt: skip
    return iter(())


# ---------------------------------------------------------------------------------- credentials


class SecureString:
    """System.Security.SecureString built from plain text (ConvertTo-SecureString -AsPlainText)."""

    type_name = "System.Security.SecureString"

    def __init__(self, text: str) -> None:
        self._text = text
        self.Length = len(text)

    def __str__(self) -> str:
        return self.type_name

    def render(self) -> str:
        return self.type_name + "\r\n"


class NetworkCredential:
    """System.Net.NetworkCredential (PSCredential.GetNetworkCredential())."""

    type_name = "System.Net.NetworkCredential"

    def __init__(self, user: str, password: str) -> None:
        domain, _, name = user.rpartition("\\")
        self.UserName = name
        self.Password = password
        self.Domain = domain

    def render(self) -> str:
        return format_list(PSObject(self.type_name, {"UserName": self.UserName, "Domain": self.Domain}))


class PSCredential:
    """System.Management.Automation.PSCredential(user, SecureString)."""

    type_name = "System.Management.Automation.PSCredential"

    def __init__(self, user: str, password: SecureString) -> None:
        self.UserName = user
        self.Password = password

    def ps_call(self, it: Interpreter, name: str, args: list[Any], pos: int) -> Any:
        if name.lower() == "getnetworkcredential":
            return NetworkCredential(self.UserName, self.Password._text)
        raise it.unmodelled(f"PSCredential.{name}()", f"PSCredential.{name}() is not modelled by the emulated "
                            "PowerShell.", pos)  # fmt: skip

    def render(self) -> str:
        return format_list(PSObject(self.type_name, {"UserName": self.UserName, "Password": self.Password.type_name}))


def _convertto_securestring(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    values = [to_str(v) for v in enumerate_value(b.get("string", position=0))] or [to_str(v) for v in inp]
    if not b.get("asplaintext") or not values:
        it.not_modelled("ConvertTo-SecureString of an encrypted standard string")
        return iter(())
    if not b.get("force"):
        it.not_modelled("ConvertTo-SecureString -AsPlainText without -Force")  # 5.1 refuses it
        return iter(())
    return iter([SecureString(v) for v in values])


def new_credential(it: Interpreter, args: list[Any]) -> PSCredential | None:
    """New-Object PSCredential(user, securestring); None when the arguments are outside the model."""
    if len(args) == 2 and isinstance(args[1], SecureString):
        return PSCredential(to_str(args[0]), args[1])
    return None


# ----------------------------------------------------------------------------------------- web


def _host_of(url: str) -> str:
    # Invoke-WebRequest takes a URI without a scheme as http:// (System.Uri with UriKind.RelativeOrAbsolute,
    # then "http://" prepended by the web cmdlets).
    text = url.strip()
    if not re.match(r"^[a-z][a-z0-9+.-]*://", text, re.IGNORECASE):
        text = "http://" + text
    m = re.match(r"^[a-z][a-z0-9+.-]*://(?:[^@/]*@)?([^/:?#]+)", text, re.IGNORECASE)
    return m.group(1) if m else ""


def web_failure(it: Interpreter, url: str) -> str | None:
    """The error text a lab host without internet gives for ``url``; None when it would connect."""
    host = _host_of(url)
    if not host:
        return None
    ip = it.resolve(host)
    if ip is None:
        return f"The remote name could not be resolved: '{host}'"
    if ip.startswith("127.") or ip == it.ctx.host.ipv4:
        m = re.match(r"^(?:[a-z][a-z0-9+.-]*://)?[^/:?#]+:(\d+)", url.strip(), re.IGNORECASE)
        port = int(m.group(1)) if m else 443 if url.strip().lower().startswith("https:") else 80
        if not it.ctx.host.connect(it.ctx.proc, "tcp", ip, port):
            return "Unable to connect to the remote server"
    return None


def _invoke_webrequest(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    url = to_str(b.get("uri", position=0, default=""))
    msg = web_failure(it, url)
    name = "Invoke-RestMethod" if cmd.name in ("irm", "Invoke-RestMethod") or (
        isinstance(cmd.name, str) and cmd.name.lower() in ("irm", "invoke-restmethod")) else "Invoke-WebRequest"
    if msg is None:
        it.not_modelled(f"{name} to a reachable address")
        return iter(())
    _fail(it, b, PSError(
        msg, category="InvalidOperation", exception="WebException",
        fqid=f"WebCmdletWebResponseException,Microsoft.PowerShell.Commands.{name.replace('-', '')}Command",
        pos=cmd.pos, prefix=name, info=f"(System.Net.HttpWebRequest:HttpWebRequest) [{name}]",
    ))  # fmt: skip
    return iter(())


class WebClient:
    """System.Net.WebClient: every download fails the way it does on a host without internet."""

    type_name = "System.Net.WebClient"

    def ps_call(self, it: Interpreter, name: str, args: list[Any], pos: int) -> Any:
        low = name.lower()
        if low in ("downloadstring", "downloadfile", "downloaddata", "openread", "uploadstring", "uploadfile"):
            msg = web_failure(it, to_str(args[0]) if args else "")
            if msg is None:
                what = f"WebClient.{name} to a reachable address"
                raise it.unmodelled(what, f"{what} is not modelled by the emulated PowerShell.", pos)
            raise PSError(
                f'Exception calling "{name}" with "{len(args)}" argument(s): "{msg}"',
                exception="MethodInvocationException", fqid="WebException", pos=pos,
            )
        if low == "dispose":
            return None
        raise it.unmodelled(f"WebClient.{name}", f"WebClient.{name} is not modelled by the emulated PowerShell.", pos)


def _get_module(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    names = [to_str(n).lower() for n in enumerate_value(b.get("name", position=0))]
    if not b.get("listavailable") or not names:
        it.not_modelled("Get-Module without -ListAvailable -Name")
        return iter(())
    from harness.emulated.stock import load_stock

    stock_modules = {m.lower() for m in load_stock().modules}
    if any(n in stock_modules or "*" in n for n in names):
        it.not_modelled("Get-Module -ListAvailable of a stock module")
    return iter(())  # a module that is not installed lists nothing


# ------------------------------------------------------------------------------------- statics

_ENCODINGS = {"utf8": "utf-8", "unicode": "utf-16-le", "ascii": "ascii", "default": "cp1252", "bigendianunicode":
              "utf-16-be", "utf32": "utf-32-le"}  # fmt: skip


class Encoding:
    """System.Text.Encoding: GetBytes (a byte array is a list of ints) and GetString."""

    type_name = "System.Text.Encoding"

    def __init__(self, codec: str) -> None:
        self.codec = codec

    def ps_call(self, it: Interpreter, name: str, args: list[Any], pos: int) -> Any:
        low = name.lower()
        if low == "getbytes" and args:
            return list(to_str(args[0]).encode(self.codec, errors="replace"))
        if low == "getstring" and args:
            return bytes(to_int(x) & 0xFF for x in enumerate_value(args[0])).decode(self.codec, errors="replace")
        raise it.unmodelled(f"Encoding.{name}", f"Encoding.{name} is not modelled by the emulated PowerShell.", pos)


class WindowsIdentity:
    """System.Security.Principal.WindowsIdentity of the current process's account."""

    type_name = "System.Security.Principal.WindowsIdentity"

    def __init__(self, it: Interpreter) -> None:
        acct = it.ctx.proc.account
        self.Name = acct.qualified
        self.User = acct.sid
        self.IsSystem = acct.is_system
        self.AuthenticationType = "NTLM"

    def __str__(self) -> str:
        return self.type_name

    def render(self) -> str:
        return format_list(PSObject(self.type_name, {"Name": self.Name, "User": self.User}))


_FOLDERS = {
    "desktop": "{profile}\\Desktop", "desktopdirectory": "{profile}\\Desktop", "mydocuments": "{profile}\\Documents",
    "personal": "{profile}\\Documents", "applicationdata": "{profile}\\AppData\\Roaming",
    "localapplicationdata": "{profile}\\AppData\\Local", "userprofile": "{profile}", "windows": "C:\\Windows",
    "system": "C:\\Windows\\system32", "programfiles": "C:\\Program Files", "commonapplicationdata": "C:\\ProgramData",
    "startup": "{profile}\\AppData\\Roaming\\Microsoft\\Windows\\Start Menu\\Programs\\Startup",
}  # fmt: skip


def _method_error(name: str, args: list[Any], message: str, exc: str) -> PSError:
    return PSError(
        f'Exception calling "{name}" with "{len(args)}" argument(s): "{message}"',
        exception="MethodInvocationException", fqid=exc,
    )



def static_member(it: Interpreter, type_name: str, name: str) -> tuple[bool, Any]:
    t = type_name.lower().removeprefix("system.")
    n = name.lower()
    if t == "net.securityprotocoltype" and n in ("tls", "tls11", "tls12", "tls13", "ssl3", "systemdefault"):
        return True, {"tls": "Tls", "tls11": "Tls11", "tls12": "Tls12", "tls13": "Tls13", "ssl3": "Ssl3",
                      "systemdefault": "SystemDefault"}[n]  # fmt: skip
    if t == "net.servicepointmanager" and n == "securityprotocol":
        return True, it.statics.get("net.servicepointmanager.securityprotocol", "Ssl3, Tls")
    if t in ("text.encoding",) and n in _ENCODINGS:
        return True, Encoding(_ENCODINGS[n])
    if t == "environment":
        env = {"machinename": it.ctx.host.hostname, "username": it.ctx.proc.account.name,
               "userdomainname": it.ctx.proc.account.domain, "newline": "\r\n", "is64bitoperatingsystem": True,
               "is64bitprocess": True, "currentdirectory": it.ctx.cwd, "systemdirectory": "C:\\Windows\\system32"}
        if n in env:
            return True, env[n]
    return False, None


def set_static_member(it: Interpreter, type_name: str, name: str, value: Any) -> bool:
    t = type_name.lower().removeprefix("system.")
    if t == "net.servicepointmanager" and name.lower() == "securityprotocol":
        it.statics["net.servicepointmanager.securityprotocol"] = to_str(value)
        return True
    return False


def static_method(it: Interpreter, type_name: str, name: str, args: list[Any]) -> tuple[bool, Any]:
    t = type_name.lower().removeprefix("system.")
    n = name.lower()
    if t == "io.path" and n == "combine":
        return True, ntpath.join(*[to_str(a) for a in args])
    if t == "io.path" and n == "gettempfilename":
        return False, None
    if t == "io.file" and n == "exists":
        return True, it.ctx.host.fs.is_file(normalize(to_str(args[0]), it.ctx.cwd)) if args else False
    if t == "io.directory" and n == "exists":
        return True, it.ctx.host.fs.is_dir(normalize(to_str(args[0]), it.ctx.cwd)) if args else False
    if t == "environment" and n == "getenvironmentvariable" and len(args) == 1:
        return True, it.ctx.env.get(to_str(args[0]))
    if t == "environment" and n == "setenvironmentvariable" and len(args) in (2, 3):
        return _set_environment_variable(it, to_str(args[0]), args[1], to_str(args[2]) if len(args) == 3 else "")
    if t == "environment" and n == "getfolderpath" and args:
        folder = _FOLDERS.get(to_str(args[0]).lower())
        return (True, folder.format(profile=it.ctx.proc.account.profile_dir)) if folder else (False, None)
    if t in ("convert",) and n == "tobase64string" and args:
        return True, base64.b64encode(bytes(to_int(x) & 0xFF for x in enumerate_value(args[0]))).decode("ascii")
    if t in ("convert",) and n == "frombase64string" and args:
        try:
            return True, list(base64.b64decode(to_str(args[0]), validate=True))
        except ValueError:
            raise _method_error(name, args, "The input is not a valid Base-64 string as it contains a non-base 64 "
                                "character, more than two padding characters, or an illegal character among the "
                                "padding characters. ", "FormatException") from None  # fmt: skip
    if t == "string" and n in ("isnullorempty", "isnullorwhitespace") and args:
        text = to_str(args[0])
        return True, (text == "") if n == "isnullorempty" else (text.strip() == "")
    if t == "io.path" and n in ("getdirectoryname", "getfilename", "getextension", "getfilenamewithoutextension"):
        p = to_str(args[0]) if args else ""
        return True, {"getdirectoryname": ntpath.dirname(p), "getfilename": ntpath.basename(p),
                      "getextension": ntpath.splitext(p)[1],
                      "getfilenamewithoutextension": ntpath.splitext(ntpath.basename(p))[0]}[n]  # fmt: skip
    if t == "io.path" and n == "gettemppath":
        return True, (it.ctx.env.get("TEMP") or "C:\\Windows\\Temp") + "\\"
    if t == "security.principal.windowsidentity" and n == "getcurrent":
        return True, WindowsIdentity(it)
    if t == "gc" and n in ("collect", "waitforpendingfinalizers"):
        return True, None
    if t == "io.file" and n in ("readalltext", "readallbytes") and args:
        path = normalize(to_str(args[0]), it.ctx.cwd)
        try:
            data = it.ctx.host.fs.read(path)
        except FsError:
            raise _method_error(name, args, f"Could not find file '{path}'.", "FileNotFoundException") from None
        return True, list(data) if n == "readallbytes" else data.decode("utf-8-sig", "replace")
    if t == "io.file" and n in ("writeallbytes", "copy") and len(args) >= 2:
        fs = it.ctx.host.fs
        if n == "copy":
            src = normalize(to_str(args[0]), it.ctx.cwd)
            if not fs.is_file(src):
                raise _method_error(name, args, f"Could not find file '{src}'.", "FileNotFoundException")
            data = fs.read(src)
        else:
            data = bytes(to_int(x) & 0xFF for x in enumerate_value(args[1]))
        dst = normalize(to_str(args[1] if n == "copy" else args[0]), it.ctx.cwd)
        if n == "copy" and fs.exists(dst) and not (len(args) > 2 and args[2] is True):
            raise _method_error(name, args, f"The file '{dst}' already exists.", "IOException")
        try:
            it.ctx.host.write_file(it.ctx.proc, dst, data)
        except FsError:
            raise _method_error(name, args, f"Could not find a part of the path '{dst}'.",
                                "DirectoryNotFoundException") from None  # fmt: skip
        return True, None
    if t == "io.file" and n == "writealltext" and len(args) == 2:
        path = normalize(to_str(args[0]), it.ctx.cwd)
        try:
            it.ctx.host.write_file(it.ctx.proc, path, to_str(args[1]).encode("utf-8"))
        except FsError:
            raise PSError(
                f'Exception calling "WriteAllText" with "2" argument(s): "Could not find a part of the path '
                f"'{path}'.\"", exception="MethodInvocationException", fqid="DirectoryNotFoundException",
            ) from None
        return True, None
    return False, None


def _set_environment_variable(it: Interpreter, name: str, value: Any, target: str) -> tuple[bool, Any]:
    """[Environment]::SetEnvironmentVariable: the process block, or the User / Machine registry key
    (HKCU\\Environment, HKLM\\...\\Session Manager\\Environment; .NET writes a REG_SZ there)."""
    where = {"": None, "process": None, "user": ("HKCU", "Environment"),
             "machine": ("HKLM", "SYSTEM\\CurrentControlSet\\Control\\Session Manager\\Environment")}  # fmt: skip
    key = target.lower()
    if key not in where:
        return False, None
    spot = where[key]
    if spot is None:
        if value is None or to_str(value) == "":
            del it.ctx.env[name]
        else:
            it.ctx.env[name] = to_str(value)
        return True, None
    hive, rest = spot
    reg = it.ctx.host.registry
    if value is None or to_str(value) == "":
        if reg.delete_value(hive, rest, name):
            it.ctx.host.log_registry(it.ctx.proc, "DeleteValue", key_name(hive, rest), name)
        return True, None
    v = Value(name, "REG_SZ", to_str(value))
    reg.set_value(hive, rest, v)
    it.ctx.host.log_registry(it.ctx.proc, "SetValue", key_name(hive, rest), name, sysmon_details(v))
    return True, None


CMDLETS = {
    "invoke-expression": _invoke_expression,
    "new-item": _new_item,
    "copy-item": _copy_item,
    "set-location": _set_location,
    "join-path": _join_path,
    "split-path": _split_path,
    "new-itemproperty": _new_itemproperty,
    "set-itemproperty": _set_itemproperty,
    "remove-itemproperty": _remove_itemproperty,
    "get-itemproperty": _get_itemproperty,
    "remove-item": _remove_item_any,
    "test-path": _test_path_any,
    "start-process": _start_process,
    "invoke-webrequest": _invoke_webrequest,
    "invoke-restmethod": _invoke_webrequest,
    "get-module": _get_module,
    "get-childitem": _get_childitem,
    "stop-process": _stop_process,
    "get-process": _get_process,
    "convertto-securestring": _convertto_securestring,
}
