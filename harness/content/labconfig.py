"""Lab configuration (``lab.yaml``): the targets a run reaches and run-wide settings.

The file is validated against ``schemas/lab.schema.json`` and every problem is a ``ContentError``
``FILE:LINE: YAML-PATH: message``. Example::

    name: atomiclab-vagrant
    targets:
      - name: win2022
        transport: winrm            # winrm | ssh
        address: 192.168.56.10
        port: 5986                  # default: 5986 (winrm https), 5985 (winrm http), 22 (ssh)
        auth: ntlm                  # winrm: negotiate|ntlm|kerberos|credssp|certificate|basic
        username: atomiclab         # ssh: password|key
        password_env: ATOMICLAB_WIN2022_PASSWORD   # the variable's NAME; never the password
        ca_cert: certs/win2022.pem  # relative to this file
        tools: {nmap: 'C:\\Program Files (x86)\\Nmap\\nmap.exe'}
        atomics_folder: 'C:\\AtomicRedTeam\\atomics'   # replaces PathToAtomicsFolder; atomiclab sync copies here
      - name: ubuntu
        transport: ssh              # platform linux; sh/bash atomics; Sysmon for Linux read when installed
        address: 192.168.56.11
        username: atomiclab
        key_file: keys/ubuntu       # auth: key; key_passphrase_env names the variable holding its passphrase
        known_hosts: known_hosts
    channels:                       # event channel -> Sumo _sourceCategory (local rule evaluation)
      Microsoft-Windows-Sysmon/Operational: Windows/Sysmon
    timeouts: {connect_s: 30, command_s: 300, telemetry_s: 60}
    atomics: ../atomic-red-team/atomics   # default --atomics (relative to this file)
    input_arguments:
      '*': {target: 127.0.0.1}      # every test
      c9c5c712-9e58-4613-85f6-139cddfa1f30: {ports: '22,80'}

Relative paths (ca_cert, known_hosts, key_file, cert files) resolve against the file's directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.content.schemacheck import validate
from harness.content.yamldoc import load_yaml, read_text
from harness.errors import ContentError

LAB_SCHEMA = "lab.schema.json"

_DEFAULT_PORTS = {
    ("winrm", "https"): 5986,
    ("winrm", "http"): 5985,
    ("ssh", "https"): 22,
    ("ssh", "http"): 22,
}
_DEFAULT_AUTH = {"winrm": "ntlm", "ssh": "key"}
_DEFAULT_PLATFORM = {"winrm": "windows", "ssh": "linux"}
_WINRM_AUTH = frozenset({"negotiate", "ntlm", "kerberos", "credssp", "certificate", "basic"})
_SSH_AUTH = frozenset({"password", "key"})


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect_s: float = 30.0
    command_s: float = 300.0
    telemetry_s: float = 60.0


@dataclass(frozen=True, slots=True)
class TargetConfig:
    """One target. ``password_env`` is the NAME of the environment variable holding the secret."""

    name: str
    transport: str  # winrm | ssh
    address: str
    port: int
    platform: str = "windows"
    scheme: str = "https"
    auth: str = "ntlm"
    username: str | None = None
    password_env: str | None = None
    #: ssh key auth: NAME of the variable holding the key file's passphrase.
    key_passphrase_env: str | None = None
    ca_cert: Path | None = None
    cert_pem: Path | None = None
    cert_key_pem: Path | None = None
    known_hosts: Path | None = None
    key_file: Path | None = None
    tools: Mapping[str, str] = field(default_factory=dict)
    emulated: bool = False
    #: Vagrant machine name behind this target (``atomiclab lab up`` writes it; ``run --revert-each``).
    vagrant_machine: str | None = None
    #: Target-side Atomic Red Team atomics folder replacing ``PathToAtomicsFolder`` (None: the
    #: platform's default, ``harness.execution.modes.default_atomics_folder``).
    atomics_folder: str | None = None


@dataclass(frozen=True, slots=True)
class LabConfig:
    targets: tuple[TargetConfig, ...]
    name: str = ""
    source: str = ""
    channels: Mapping[str, str] = field(default_factory=dict)
    timeouts: Timeouts = field(default_factory=Timeouts)
    #: ``"*"`` or a test GUID -> argument name -> value (as text, checked by the executor).
    input_arguments: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    #: Default atomics paths (``atomics:``, relative to the lab file); ``--atomics`` wins over them.
    atomics: tuple[Path, ...] = ()

    def arguments_for(self, guid: str) -> dict[str, str]:
        """Overrides for one test: the ``*`` entries, then the test's own (which win)."""
        out = dict(self.input_arguments.get("*", {}))
        out.update(self.input_arguments.get(guid, {}))
        return out

    def target(self, name: str) -> TargetConfig:
        for t in self.targets:
            if t.name == name:
                return t
        known = ", ".join(t.name for t in self.targets)
        raise ContentError(f"no target named {name!r}", file=self.source or None, hint=f"targets: {known}")


def load_lab_config(path: Path) -> LabConfig:
    """Load and validate ``lab.yaml``; raises ContentError (FILE:LINE: PATH: message) on any problem."""
    shown = str(path)
    doc = load_yaml(read_text(path, display=shown), file=shown)
    if doc.data is None:
        raise ContentError("lab file is empty", file=shown, line=1, hint="declare at least one target")
    _refuse_inline_secrets(doc)
    problems = validate(doc, LAB_SCHEMA)
    if problems:
        raise problems[0]
    data: dict[str, Any] = doc.data
    base = path.parent
    targets: list[TargetConfig] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(data["targets"]):
        name = str(raw["name"])
        if name in seen:
            raise doc.error(("targets", i, "name"), f"duplicate target name {name!r} (first at target {seen[name]})")
        seen[name] = i
        targets.append(_target(doc, i, raw, base))
    t = data.get("timeouts") or {}
    d = Timeouts()
    return LabConfig(
        targets=tuple(targets),
        name=str(data.get("name") or path.stem),
        source=shown,
        channels={str(k): str(v) for k, v in (data.get("channels") or {}).items()},
        timeouts=Timeouts(
            connect_s=float(t.get("connect_s", d.connect_s)),
            command_s=float(t.get("command_s", d.command_s)),
            telemetry_s=float(t.get("telemetry_s", d.telemetry_s)),
        ),
        input_arguments={
            str(k): {str(a): _scalar_text(doc, ("input_arguments", k, a), v) for a, v in args.items()}
            for k, args in (data.get("input_arguments") or {}).items()
        },
        atomics=_atomics_paths(data.get("atomics"), base),
    )


def _atomics_paths(value: object, base: Path) -> tuple[Path, ...]:
    """``atomics:`` (a path or a list) resolved against the lab file's folder."""
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    out: list[Path] = []
    for item in items:
        p = Path(str(item)).expanduser()
        out.append(p if p.is_absolute() else base / p)
    return tuple(out)


def _refuse_inline_secrets(doc: Any) -> None:
    """A password written into lab.yaml is refused before schema validation, whose messages quote
    the offending value: the secret must not reach the terminal or a log."""
    targets = doc.data.get("targets") if isinstance(doc.data, dict) else None
    for i, raw in enumerate(targets if isinstance(targets, list) else []):
        if isinstance(raw, dict) and "password" in raw:
            raise doc.error(
                ("targets", i, "password"),
                "passwords are never stored in lab.yaml",
                key=True,
                hint="put it in an environment variable and name that variable with password_env",
            )


def _scalar_text(doc: Any, path: tuple[str | int, ...], value: object) -> str:
    # keep the value as written (``1.50`` stays ``1.50``); the executor checks it against the type
    written = doc.scalars.get(path)
    return str(written) if written is not None else str(value)


def _target(doc: Any, i: int, raw: Mapping[str, Any], base: Path) -> TargetConfig:
    transport = str(raw["transport"])
    scheme = str(raw.get("scheme") or "https")
    auth = str(raw.get("auth") or _DEFAULT_AUTH[transport])
    allowed = _WINRM_AUTH if transport == "winrm" else _SSH_AUTH
    if auth not in allowed:
        raise doc.error(
            ("targets", i, "auth"),
            f"auth {auth!r} is not valid for {transport}",
            hint=f"use one of {', '.join(sorted(allowed))}",
        )
    if transport == "winrm" and scheme == "http" and auth == "basic":
        raise doc.error(
            ("targets", i, "auth"),
            "basic auth over plain HTTP sends the password in clear",
            hint="use scheme: https, or ntlm/negotiate/kerberos which encrypt over HTTP",
        )
    if transport == "ssh" and "scheme" in raw:
        raise doc.error(("targets", i, "scheme"), "scheme applies to winrm targets only")
    needs_secret = auth in ("negotiate", "ntlm", "kerberos", "credssp", "basic", "password")
    if needs_secret and not raw.get("username"):
        raise doc.error(("targets", i), f"auth {auth} needs a username", key=False)
    if auth == "password" and not raw.get("password_env"):
        raise doc.error(("targets", i), "auth password needs password_env (the variable holding it)")

    def rel(key: str) -> Path | None:
        v = raw.get(key)
        if v is None:
            return None
        p = Path(str(v)).expanduser()
        return p if p.is_absolute() else base / p

    return TargetConfig(
        name=str(raw["name"]),
        transport=transport,
        address=str(raw["address"]),
        port=int(raw.get("port") or _DEFAULT_PORTS[(transport, scheme)]),
        platform=str(raw.get("platform") or _DEFAULT_PLATFORM[transport]),
        scheme=scheme,
        auth=auth,
        username=None if raw.get("username") is None else str(raw["username"]),
        password_env=None if raw.get("password_env") is None else str(raw["password_env"]),
        key_passphrase_env=None if raw.get("key_passphrase_env") is None else str(raw["key_passphrase_env"]),
        ca_cert=rel("ca_cert"),
        cert_pem=rel("cert_pem"),
        cert_key_pem=rel("cert_key_pem"),
        known_hosts=rel("known_hosts"),
        key_file=rel("key_file"),
        tools={str(k): str(v) for k, v in (raw.get("tools") or {}).items()},
        emulated=bool(raw.get("emulated", False)),
        vagrant_machine=None if raw.get("vagrant_machine") is None else str(raw["vagrant_machine"]),
        atomics_folder=_atomics_folder(doc, i, raw),
    )


def _atomics_folder(doc: Any, i: int, raw: Mapping[str, Any]) -> str | None:
    from harness.execution.modes import atomics_folder_problem

    value = raw.get("atomics_folder")
    if value is None:
        return None
    problem = atomics_folder_problem(str(value))
    if problem:
        raise doc.error(("targets", i, "atomics_folder"), f"atomics_folder refused: {problem}",
                        hint="use a plain path such as C:\\AtomicRedTeam\\atomics")
    return str(value)
