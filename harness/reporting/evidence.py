"""The auditor's evidence bundle: normalized events, command transcripts, and a SHA-256 manifest.

* ``evidence/events.jsonl``: one line per event a test was judged on, in the telemetry module's
  normalized JSONL form (``Event.to_dict``) plus ``test`` (GUID) and ``result`` (target::GUID).
  Verdicts reference events by their line in this file. It is append-only during a run; each test's
  block is written and flushed in one go.
* ``evidence/transcripts/<target>/<guid>-<role>.txt``: each remote command, its exit code, times,
  stdout and stderr.
* ``manifest.json``: ``{"algorithm": "sha256", "files": {relative path: hex digest}}`` over every
  other file in the folder, optionally with a ``signature`` (``signing``). ``verify_manifest``
  recomputes it and names changed, missing and unlisted files (``*.tmp`` and nested manifests
  included), and every symlink, FIFO, socket or device in the folder, which a run never writes:
  those are never followed or opened, so verify never reads outside the folder or blocks.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ReportError
from harness.model import CommandResult
from harness.reporting.signing import ManifestSigner, SignatureStatus, Verifier, sign_manifest
from harness.results import EVENTS_FILE
from harness.telemetry.event import Event

MANIFEST = "manifest.json"
TRANSCRIPTS = "evidence/transcripts"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _safe(part: str) -> str:
    return _SAFE.sub("_", part)[:100] or "_"


class EvidenceStore:
    """Appends events and transcripts under ``out``; thread-safe."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._lock = threading.Lock()
        self._events = out / EVENTS_FILE
        self._lines = 0
        if self._events.exists():  # continuing into an existing folder: keep line numbers true
            with self._events.open("rb") as fh:
                self._lines = sum(1 for _ in fh)

    def add_events(self, result_key: str, guid: str, events: Sequence[Event]) -> int:
        """Append ``events``; returns the 1-based line number of the first (of the next, if none).

        Written as a stream, one line at a time (memory stays flat however many events a capture
        holds), to a file created 0600 like every other report file; flushed once per block.
        """
        extra = {"test": guid, "result": result_key}
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        with self._lock:
            first = self._lines + 1
            written = 0
            try:
                self._events.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self._events, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o600)
                with open(fd, "w", encoding="utf-8", errors="backslashreplace", newline="\n") as fh:
                    for e in events:
                        fh.write(dumps(e.to_dict() | extra))
                        fh.write("\n")
                        written += 1
                    fh.flush()
            except OSError as exc:
                raise ReportError(f"{self._events}: cannot write evidence: {exc.strerror or exc}") from exc
            finally:
                self._lines += written
        return first

    def add_transcript(self, target: str, guid: str, role: str, result: CommandResult) -> str:
        """Write one command's transcript; returns its path relative to ``out``."""
        from harness.reporting.base import atomic_write_text

        rel = f"{TRANSCRIPTS}/{_safe(target)}/{_safe(guid)}-{_safe(role)}.txt"
        text = (
            f"role: {role}\n"
            f"started: {result.started.isoformat()}\n"
            f"ended: {result.ended.isoformat()}\n"
            f"exit_code: {result.exit_code}\n"
            f"timed_out: {str(result.timed_out).lower()}\n"
            f"command:\n{result.command}\n"
            f"--- stdout ---\n{result.stdout}\n"
            f"--- stderr ---\n{result.stderr}\n"
        )
        atomic_write_text(self.out / rel, text)
        return rel


class NotRegular(OSError):
    """The path is not (any more) a regular file: a link, FIFO, socket or device."""


def sha256_of(path: Path) -> str:
    """SHA-256 of a regular file, opened without following a final symlink and without blocking on
    a FIFO (NotRegular otherwise: the file checked is the file read)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if os.path.islink(path):
            raise NotRegular(f"{path}: a symlink") from exc
        raise
    with open(fd, "rb", closefd=True) as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegular(f"{path}: not a regular file")
        h = hashlib.sha256()
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


@dataclass
class _Scan:
    files: dict[str, Path] = field(default_factory=dict)
    special: dict[str, str] = field(default_factory=dict)  # relative path -> kind


def _scan(out: Path) -> _Scan:
    """Every entry under ``out`` by ``lstat``: regular files, and the rest (links are never
    followed, so a linked folder is one entry, not a way out of the folder). The top-level
    manifest is left out."""
    found = _Scan()

    def walk(folder: Path, prefix: str) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise ReportError(f"{folder}: cannot list the report folder: {exc.strerror or exc}") from exc
        for entry in entries:
            rel = prefix + entry.name
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except OSError:
                continue  # vanished while listing
            if stat.S_ISDIR(mode):
                walk(Path(entry.path), rel + "/")
            elif stat.S_ISREG(mode):
                if rel != MANIFEST:
                    found.files[rel] = Path(entry.path)
            else:
                found.special[rel] = _kind(mode)

    walk(out, "")
    return found


def _transient(rel: str) -> bool:
    """A report file being replaced right now (``atomic_write_bytes``'s ``.NAME.XXXX.tmp``)."""
    name = rel.rsplit("/", 1)[-1]
    return name.startswith(".") and name.endswith(".tmp")


#: A file's digest is reused while its (size, mtime_ns, inode) stay the same.
DigestCache = dict[str, tuple[tuple[int, int, int], str]]


def build_manifest(out: Path, cache: DigestCache | None = None) -> dict[str, object]:
    """Every regular file's SHA-256 but the manifest's (and but files being replaced right now by
    another thread of the run: they are renamed over their final name before the last publish). A
    symlink or special file is never listed: verify names it. With ``cache`` (kept by the caller
    across renders), an unchanged file (the transcripts, written once) is not read again: a render
    costs what changed, not the folder."""
    files: dict[str, str] = {}
    for rel, p in _scan(out).files.items():
        if _transient(rel):
            continue
        try:
            if cache is None:
                files[rel] = sha256_of(p)
                continue
            st = p.stat()
            key = (st.st_size, st.st_mtime_ns, st.st_ino)
            hit = cache.get(rel)
            if hit is None or hit[0] != key:
                hit = (key, sha256_of(p))
                cache[rel] = hit
            files[rel] = hit[1]
        except FileNotFoundError:
            continue  # a transient file renamed meanwhile
        except OSError as exc:
            raise ReportError(f"{p}: cannot read for the manifest: {exc.strerror or exc}") from exc
    return {"algorithm": "sha256", "files": files}


def write_manifest(
    out: Path,
    cache: DigestCache | None = None,
    signer: ManifestSigner | None = None,
    content: Mapping[str, object] | None = None,
) -> Path:
    """Write ``out/manifest.json`` (signed when a signer is given). ``content``: the run's content
    provenance (repositories with commit and dirty flag, each content file's SHA-256), recorded as
    ``manifest["content"]`` so the manifest alone names what ran (and a signature covers it)."""
    from harness.reporting.base import atomic_write_text

    path = out / MANIFEST
    manifest = build_manifest(out, cache)
    if content is not None:
        manifest["content"] = dict(content)
    if signer is not None:
        manifest = sign_manifest(manifest, signer)
    atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Outcome of ``verify_manifest``: empty lists mean the folder is exactly as written."""

    checked: int
    changed: tuple[str, ...]
    missing: tuple[str, ...]
    unlisted: tuple[str, ...]
    #: ``(relative path, kind)`` of every symlink, FIFO, socket or device found (never opened).
    special: tuple[tuple[str, str], ...] = ()
    signature: SignatureStatus = SignatureStatus.ABSENT

    @property
    def signature_ok(self) -> bool:
        return self.signature not in (SignatureStatus.INVALID, SignatureStatus.UNSIGNED)

    @property
    def ok(self) -> bool:
        return not (self.changed or self.missing or self.unlisted or self.special) and self.signature_ok


#: A manifest larger than this is not one atomiclab wrote (it lists one short line per report file).
MAX_MANIFEST_BYTES = 64 << 20
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _manifest_entry_error(rel: object, digest: object) -> str | None:
    """Why one ``files`` entry is unacceptable, or None. Entries are report-relative POSIX paths."""
    if not isinstance(rel, str) or not rel:
        return "a file name is empty"
    shown = rel if len(rel) <= 80 else rel[:77] + "..."
    if "\x00" in rel or "\\" in rel or rel.startswith("/") or re.match(r"[A-Za-z]:", rel):
        return f"file {shown!r} is not a relative path inside the report folder"
    parts = rel.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return f"file {shown!r} leaves the report folder or is not a plain relative path"
    if rel == MANIFEST:
        return "the manifest lists itself"
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        return f"file {shown!r} has no sha256 hex digest"
    return None


def load_manifest(out: Path) -> dict[str, str]:
    """Read and check ``out/manifest.json``; its ``files`` map. ReportError (one line) when unusable."""
    files = read_manifest(out)["files"]
    return {str(rel): str(digest) for rel, digest in files.items()}


def read_manifest(out: Path) -> dict[str, Any]:
    """``out/manifest.json`` checked (entries, size, regular file). ReportError when unusable."""
    path = out / MANIFEST
    hint = "point verify at a report folder written by atomiclab"
    if not out.is_dir():
        problem = "not a folder" if out.exists() else "no such folder"
        raise ReportError(f"{out}: {problem}, no manifest", hint=hint)
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise ReportError(f"{path}: no manifest", hint=hint) from exc
    except OSError as exc:
        raise ReportError(f"{path}: cannot read the manifest: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(st.st_mode) or path.is_symlink():
        raise ReportError(f"{path}: not a regular file", hint=hint)
    if st.st_size > MAX_MANIFEST_BYTES:
        raise ReportError(f"{path}: manifest is larger than {MAX_MANIFEST_BYTES >> 20} MiB", hint=hint)
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else " ".join(str(exc).split())
        raise ReportError(f"{path}: manifest is not readable JSON: {reason}", hint=hint) from exc
    if not isinstance(data, dict):
        raise ReportError(f"{path}: not an atomiclab manifest (expected a JSON object, found {type(data).__name__})",
            hint=hint,
        )
    files = data.get("files")
    if data.get("algorithm") != "sha256" or not isinstance(files, dict):
        raise ReportError(f"{path}: not an atomiclab manifest (expected algorithm sha256 and files)", hint=hint)
    for rel, digest in files.items():
        why = _manifest_entry_error(rel, digest)
        if why is not None:
            raise ReportError(f"{path}: not an atomiclab manifest: {why}", hint=hint)
    return data


def verify_manifest(out: Path, verifier: Verifier | None = None) -> VerifyReport:
    """Recompute every digest of ``out/manifest.json`` and check its signature with ``verifier``.
    ReportError when the manifest is unusable.

    Only regular files found inside ``out`` are ever opened (by ``lstat``, without following links):
    names in the manifest are looked up among them, never joined onto a path, so a hostile manifest
    or a planted symlink cannot make verify read outside the folder, and a FIFO cannot block it.
    """
    data = read_manifest(out)
    files = {str(rel): str(digest) for rel, digest in data["files"].items()}
    scan = _scan(out)
    present = scan.files
    changed: list[str] = []
    missing: list[str] = []
    special = dict(scan.special)
    for rel, digest in sorted(files.items()):
        p = present.get(rel)
        if p is None:
            if rel not in special:
                missing.append(rel)
            continue
        try:
            actual = sha256_of(p)
        except NotRegular:
            special[rel] = "symlink" if os.path.islink(p) else "special file"
            continue
        except OSError as exc:
            raise ReportError(f"{p}: cannot read: {exc.strerror or exc}") from exc
        if actual != digest:
            changed.append(rel)
    unlisted = sorted(set(present) - set(files))
    status = (verifier or Verifier()).check(data)
    return VerifyReport(len(files), tuple(changed), tuple(missing), tuple(unlisted),
                        tuple(sorted(special.items())), status)
