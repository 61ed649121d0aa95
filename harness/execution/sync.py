"""``atomiclab sync`` / ``run --sync``: the payload files a selection references, copied to each target's
atomics folder with checksums, only what changed.

Contract:

* ``payloads_for(tests)``: for each selected test, every file below its technique folder's ``src/`` and
  ``bin/`` (upstream layout ``atomics/T1055.011/{src,bin}/...``), plus the files of the checkout's
  ``ExternalPayloads/`` folder (beside ``atomics/``, where Invoke-AtomicRedTeam's get-prereqs put
  downloads) whose name a test text names after ``ExternalPayloads``. Paths are relative to the atomics
  folder, ``/``-separated (``../ExternalPayloads/x.exe`` for the latter).
* ``sync_payloads(payloads, sink, folder, windows=...)``: asks the target for the SHA-256 of every
  destination in one command, copies the files that are missing or differ (directories first), then
  asks again and raises TransportError naming the file when a copy does not match its local SHA-256.
  Returns a ``SyncReport`` (copied, unchanged, bytes).
* Sinks: ``TransportSink`` over any Transport (WinRM: PowerShell ``Get-FileHash`` / ``New-Item`` and the
  transport's pypsrp file copy; SSH: ``sha256sum`` / ``mkdir -p`` and paramiko SFTP), and ``FileSystemSink``
  writing into the emulated host's in-memory file system (so the emulated host has the payloads too).
"""

from __future__ import annotations

import base64
import hashlib
import ntpath
import posixpath
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from harness.errors import ProtocolError
from harness.execution.transport import Transport
from harness.model import AtomicTest

PAYLOAD_DIRS = ("src", "bin")
EXTERNAL_PAYLOADS = "ExternalPayloads"
_EXTERNAL_REF = re.compile(r"ExternalPayloads[\\/]+([^\s\"'`|&;<>()]+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Payload:
    local: Path
    relative: str  # to the atomics folder, "/"-separated


@dataclass(slots=True)
class SyncReport:
    target: str
    copied: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    bytes_copied: int = 0


def _texts(test: AtomicTest) -> Iterable[str]:
    yield test.executor.command or ""
    yield test.executor.cleanup_command or ""
    for dep in test.dependencies:
        yield dep.prereq_command
        yield dep.get_prereq_command
    for arg in test.input_arguments.values():
        yield arg.default


def payloads_for(tests: Sequence[AtomicTest]) -> list[Payload]:
    """The payload files ``tests`` reference (see the module contract), without duplicates, sorted."""
    found: dict[str, Payload] = {}
    for test in tests:
        if not test.source:
            continue
        technique_dir = Path(test.source).resolve().parent
        atomics_dir = technique_dir.parent
        for sub in PAYLOAD_DIRS:
            folder = technique_dir / sub
            if folder.is_dir():
                for f in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
                    rel = f.relative_to(atomics_dir).as_posix()
                    found.setdefault(rel, Payload(f, rel))
        external = atomics_dir.parent / EXTERNAL_PAYLOADS
        if external.is_dir():
            for text in _texts(test):
                for m in _EXTERNAL_REF.finditer(text):
                    name = m.group(1).replace("\\", "/")
                    candidate = (external / name).resolve()
                    if candidate.is_file() and candidate.is_relative_to(external.resolve()):
                        rel = "../" + EXTERNAL_PAYLOADS + "/" + candidate.relative_to(external.resolve()).as_posix()
                        found.setdefault(rel, Payload(candidate, rel))
    return [found[k] for k in sorted(found)]


def remote_path(folder: str, relative: str, *, windows: bool) -> str:
    """The destination of ``relative`` below the target's atomics ``folder``."""
    if windows:
        return ntpath.normpath(ntpath.join(folder, relative.replace("/", "\\")))
    return posixpath.normpath(posixpath.join(folder, relative))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


class PayloadSink(Protocol):
    """Where payloads go: a target reached over a transport, or the emulated host's file system."""

    def digests(self, paths: Sequence[str]) -> dict[str, str | None]:
        """SHA-256 (lower-case hex) of each remote path, None when it does not exist."""
        ...

    def makedirs(self, folders: Sequence[str]) -> None: ...

    def put(self, local: Path, remote: str) -> None: ...


def sync_payloads(payloads: Sequence[Payload], sink: PayloadSink, folder: str, *, windows: bool,
                  target: str = "") -> SyncReport:
    """Copy what differs (see the module contract)."""
    report = SyncReport(target)
    if not payloads:
        return report
    wanted = {remote_path(folder, p.relative, windows=windows): (p, sha256_file(p.local)) for p in payloads}
    have = sink.digests(list(wanted))
    changed = [r for r, (_p, digest) in wanted.items() if have.get(r) != digest]
    report.unchanged = [wanted[r][0].relative for r in wanted if r not in changed]
    if not changed:
        return report
    parent = ntpath.dirname if windows else posixpath.dirname
    sink.makedirs(sorted({parent(r) for r in changed}))
    for r in changed:
        payload, _digest = wanted[r]
        sink.put(payload.local, r)
        report.copied.append(payload.relative)
        report.bytes_copied += payload.local.stat().st_size
    after = sink.digests(changed)
    for r in changed:
        if after.get(r) != wanted[r][1]:
            raise ProtocolError(f"{wanted[r][0].relative}: the copy at {r} does not match its SHA-256",
                                host=target or "target", hint="check free space and permissions on the target")
    return report


def _ps_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _encoded(script: str) -> str:
    return "powershell.exe -NoProfile -NonInteractive -EncodedCommand " + base64.b64encode(
        script.encode("utf-16-le")).decode("ascii")


class TransportSink:
    """Payloads over a Transport: WinRM (PowerShell + pypsrp copy) or SSH (POSIX tools + SFTP)."""

    def __init__(self, transport: Transport, *, windows: bool, timeout: float = 300.0) -> None:
        self._t = transport
        self._windows = windows
        self._timeout = timeout

    def _run(self, command: str, what: str) -> str:
        result = self._t.run(command, timeout=self._timeout)
        if result.exit_code != 0 or result.timed_out:
            first = (result.stderr or result.stdout).strip().splitlines()[:1]
            raise ProtocolError(f"{what} failed (exit {result.exit_code}): {first[0] if first else ''}",
                                host=self._t.host)
        return result.stdout

    def digests(self, paths: Sequence[str]) -> dict[str, str | None]:
        if self._windows:
            items = ",".join(_ps_literal(p) for p in paths)
            script = (f"foreach ($p in @({items})) {{ if (Test-Path -LiteralPath $p -PathType Leaf) "
                      "{ (Get-FileHash -LiteralPath $p -Algorithm SHA256).Hash + ' ' + $p } "
                      "else { 'MISSING ' + $p } }")
            out = self._run(_encoded(script), "hashing the payloads")
        else:
            quoted = " ".join(shlex.quote(p) for p in paths)
            script = f'for p in {quoted}; do if [ -f "$p" ]; then sha256sum -- "$p"; else echo "MISSING  $p"; fi; done'
            out = self._run("sh -c " + shlex.quote(script), "hashing the payloads")
        found: dict[str, str | None] = dict.fromkeys(paths)
        for line in out.splitlines():
            digest, _sep, path = line.strip("\r").partition(" ")
            path = path.lstrip(" *") if not self._windows else path
            if path in found and digest != "MISSING":
                found[path] = digest.lower()
        return found

    def makedirs(self, folders: Sequence[str]) -> None:
        if self._windows:
            items = ",".join(_ps_literal(f) for f in folders)
            self._run(_encoded(f"foreach ($d in @({items})) {{ New-Item -ItemType Directory -Force -Path $d | "
                               "Out-Null }"), "creating the payload folders")
        else:
            self._run("mkdir -p -- " + " ".join(shlex.quote(f) for f in folders), "creating the payload folders")

    def put(self, local: Path, remote: str) -> None:
        self._t.put_file(local, remote)


class FileSystemSink:
    """Payloads written into an emulated host's in-memory file system (``harness.emulated.filesystem``)."""

    def __init__(self, fs: Any) -> None:
        self._fs = fs

    def digests(self, paths: Sequence[str]) -> dict[str, str | None]:
        return {p: hashlib.sha256(self._fs.read(p)).hexdigest() if self._fs.is_file(p) else None for p in paths}

    def makedirs(self, folders: Sequence[str]) -> None:
        for f in folders:
            self._fs.mkdir(f)

    def put(self, local: Path, remote: str) -> None:
        self._fs.write(remote, local.read_bytes(), now=datetime.now(UTC))


__all__ = [
    "FileSystemSink",
    "Payload",
    "PayloadSink",
    "SyncReport",
    "TransportSink",
    "payloads_for",
    "remote_path",
    "sync_payloads",
]
