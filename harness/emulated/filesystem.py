"""The emulated host's file system: Windows paths, case-insensitive, in memory.

Contract: paths are absolute Windows paths (``C:\\...``); lookups ignore case and accept ``/``;
the stored name keeps the case it was first created with. Directories exist implicitly above every
file and explicitly when made. ``write`` reports whether the file was created (new) so callers can
log Sysmon 11 with the right CreationUtcTime. Thread-safe.
"""

from __future__ import annotations

import ntpath
import threading
from dataclasses import dataclass
from datetime import datetime


class FsError(Exception):
    """A file operation failed the way Windows would refuse it (message is Windows' text)."""


@dataclass(slots=True)
class FileEntry:
    path: str
    data: bytes
    created: datetime
    modified: datetime


def normalize(path: str, cwd: str = "C:\\") -> str:
    """Absolute, normalized Windows path (``..`` and ``.`` resolved, no trailing separator)."""
    p = path.replace("/", "\\").strip()
    if len(p) >= 2 and p[1] == ":":
        if len(p) == 2:
            p += "\\"
    elif p.startswith("\\"):
        p = cwd[:2] + p
    else:
        p = ntpath.join(cwd, p)
    p = ntpath.normpath(p)
    if len(p) >= 2 and p[1] == ":":
        p = p[0].upper() + p[1:]
    return p


def _key(path: str) -> str:
    return path.lower().rstrip("\\") or path.lower()


class FileSystem:
    """In-memory, case-insensitive file tree."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, FileEntry] = {}
        self._dirs: dict[str, str] = {}

    def mkdir(self, path: str) -> None:
        p = normalize(path)
        with self._lock:
            self._mkdirs(p)

    def _mkdirs(self, p: str) -> None:
        while True:
            k = _key(p)
            if k in self._dirs:
                return
            self._dirs[k] = p
            parent = ntpath.dirname(p)
            if parent == p:
                return
            p = parent

    def exists(self, path: str) -> bool:
        k = _key(normalize(path))
        with self._lock:
            return k in self._files or k in self._dirs

    def is_file(self, path: str) -> bool:
        with self._lock:
            return _key(normalize(path)) in self._files

    def is_dir(self, path: str) -> bool:
        with self._lock:
            return _key(normalize(path)) in self._dirs

    def stat(self, path: str) -> FileEntry | None:
        with self._lock:
            return self._files.get(_key(normalize(path)))

    def read(self, path: str) -> bytes:
        p = normalize(path)
        with self._lock:
            entry = self._files.get(_key(p))
            if entry is None:
                raise FsError("The system cannot find the file specified.")
            return entry.data

    def write(self, path: str, data: bytes, *, now: datetime, append: bool = False) -> tuple[bool, FileEntry]:
        """Write (or append to) a file. Returns (created_new, entry)."""
        p = normalize(path)
        parent = ntpath.dirname(p)
        with self._lock:
            if _key(p) in self._dirs:
                raise FsError("Access is denied.")
            if _key(parent) not in self._dirs:
                raise FsError("The system cannot find the path specified.")
            entry = self._files.get(_key(p))
            if entry is None:
                entry = FileEntry(path=p, data=data, created=now, modified=now)
                self._files[_key(p)] = entry
                return True, entry
            entry.data = entry.data + data if append else data
            entry.modified = now
            return False, entry

    def delete(self, path: str) -> bool:
        """Delete a file; False when there was none."""
        with self._lock:
            return self._files.pop(_key(normalize(path)), None) is not None

    def listdir(self, path: str) -> list[str]:
        """Full paths of the direct children of a directory."""
        k = _key(normalize(path))
        with self._lock:
            out = [e.path for fk, e in self._files.items() if _key(ntpath.dirname(e.path)) == k]
            out += [d for dk, d in self._dirs.items() if dk != k and _key(ntpath.dirname(d)) == k]
        return sorted(out, key=str.lower)
