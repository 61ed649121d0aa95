"""The emulated host's registry: keys and values it knows, and what it knows it does not have.

Contract:
- Paths are accepted in the spellings Windows tools use (``HKLM\\...``, ``HKEY_LOCAL_MACHINE\\...``,
  ``HKLM:\\...``, ``Registry::HKEY_...``); ``canonical`` returns (hive, rest) with the hive as
  ``HKLM``/``HKCU``/``HKCR``/``HKU``/``HKCC`` or None for a path that is not a registry path.
- The registry is *partial*: a stock Windows Server 2022 has hundreds of thousands of keys and the
  model seeds only the well-known ones below (all present on a stock install; names from Microsoft
  Learn's registry documentation for each feature). ``state(key)`` answers ``PRESENT``, ``ABSENT``
  (deleted in this session) or ``UNKNOWN``; callers treat ``UNKNOWN`` as not modelled, never as
  absent, so the model never invents a failure for a key a real host has.
- Writes return what changed so the caller logs Sysmon 12/13 (``TelemetryWriter.registry_*``).
- Thread-safe (one lock; commands of several shells run at once).
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field

HIVES = {
    "hklm": "HKLM", "hkey_local_machine": "HKLM", "hkcu": "HKCU", "hkey_current_user": "HKCU",
    "hkcr": "HKCR", "hkey_classes_root": "HKCR", "hku": "HKU", "hkey_users": "HKU",
    "hkcc": "HKCC", "hkey_current_config": "HKCC",
}  # fmt: skip
LONG_HIVE = {
    "HKLM": "HKEY_LOCAL_MACHINE", "HKCU": "HKEY_CURRENT_USER", "HKCR": "HKEY_CLASSES_ROOT", "HKU": "HKEY_USERS",
    "HKCC": "HKEY_CURRENT_CONFIG",
}  # fmt: skip
VALUE_TYPES = ("REG_SZ", "REG_EXPAND_SZ", "REG_DWORD", "REG_QWORD", "REG_BINARY", "REG_MULTI_SZ", "REG_NONE")

#: Keys of a stock Windows Server 2022 the model vouches for (and their parents, implied).
STOCK_KEYS = (
    "HKLM\\SOFTWARE\\Classes",
    "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run",
    "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\RunOnce",
    "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Policies\\System",
    "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Policies\\Explorer",
    "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Explorer",
    "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\App Paths",
    "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall",
    "HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Winlogon",
    "HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Image File Execution Options",
    "HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Windows",
    "HKLM\\SOFTWARE\\Microsoft\\Windows Defender",
    "HKLM\\SOFTWARE\\Microsoft\\Netsh",
    "HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows",
    "HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows Defender",
    "HKLM\\SOFTWARE\\WOW6432Node\\Microsoft\\Windows\\CurrentVersion\\Run",
    "HKLM\\SYSTEM\\CurrentControlSet\\Control\\Lsa",
    "HKLM\\SYSTEM\\CurrentControlSet\\Control\\SecurityProviders\\WDigest",
    "HKLM\\SYSTEM\\CurrentControlSet\\Control\\Session Manager\\Environment",
    "HKLM\\SYSTEM\\CurrentControlSet\\Control\\Terminal Server\\WinStations\\RDP-Tcp",
    "HKLM\\SYSTEM\\CurrentControlSet\\Control\\Print\\Monitors",
    "HKLM\\SYSTEM\\CurrentControlSet\\Control\\NetworkProvider\\Order",
    "HKLM\\SYSTEM\\CurrentControlSet\\Services\\EventLog",
    "HKCU\\Software\\Classes",
    "HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run",
    "HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\RunOnce",
    "HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Explorer",
    "HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Policies",
    "HKCU\\Software\\Microsoft\\Windows NT\\CurrentVersion",
    "HKCU\\Environment",
    "HKCU\\Control Panel\\Desktop",
    "HKCU\\Control Panel\\International\\Geo",
    "HKCU\\Software\\Microsoft\\Command Processor",
    "HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Internet Settings\\ZoneMap",
    "HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Explorer\\Advanced",
    "HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Explorer\\Shell Folders",
    "HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Explorer\\User Shell Folders",
    "HKLM\\HARDWARE\\DESCRIPTION\\System",
    "HKLM\\SOFTWARE\\Microsoft\\.NETFramework",
    "HKLM\\SOFTWARE\\Microsoft\\Active Setup\\Installed Components",
    "HKLM\\SOFTWARE\\Microsoft\\Command Processor",
    "HKLM\\SOFTWARE\\Microsoft\\Cryptography",
    "HKLM\\SYSTEM\\CurrentControlSet\\Control\\FileSystem",
    "HKLM\\SYSTEM\\CurrentControlSet\\Control\\Nls\\Language",
    "HKLM\\SYSTEM\\CurrentControlSet\\Control\\SafeBoot",
    "HKLM\\SYSTEM\\CurrentControlSet\\Control\\TimeZoneInformation",
    "HKLM\\SYSTEM\\CurrentControlSet\\Control\\WMI\\Autologger\\EventLog-Application",
    "HKLM\\SYSTEM\\CurrentControlSet\\Services\\TermService\\Parameters",
    "HKLM\\SYSTEM\\CurrentControlSet\\Services\\W32Time\\TimeProviders",
    "HKLM\\SYSTEM\\CurrentControlSet\\Services\\WinSock2\\Parameters",
)


class KeyState(enum.Enum):
    PRESENT = "present"
    ABSENT = "absent"
    UNKNOWN = "unknown"


@dataclass(slots=True)
class Value:
    name: str  # "" is the key's default value
    type: str
    data: str | int | bytes | list[str]


@dataclass(slots=True)
class Key:
    path: str  # canonical spelling as created: "HKLM\\SOFTWARE\\..."
    values: dict[str, Value] = field(default_factory=dict)  # lower-case name -> value
    complete: bool = True  # False for seeded stock keys: a real host has values the model does not list


def canonical(path: str) -> tuple[str, str] | None:
    """(hive, rest) for a registry path in any common spelling; None when it is not one."""
    p = path.strip().strip('"').replace("/", "\\")
    low = p.lower()
    for prefix in ("registry::", "microsoft.powershell.core\\registry::"):
        if low.startswith(prefix):
            p = p[len(prefix) :]
            low = p.lower()
    head, _, rest = p.partition("\\")
    hive = HIVES.get(head.rstrip(":").lower())
    if hive is None:
        return None
    return hive, rest.strip("\\")


def key_name(hive: str, rest: str) -> str:
    return f"{hive}\\{rest}" if rest else hive


class Registry:
    """Keys created, seeded or deleted on this host (case-insensitive, first spelling kept)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, Key] = {}
        self._deleted: set[str] = set()
        for hive in LONG_HIVE:
            self._keys[hive.lower()] = Key(hive, complete=False)
        for name in STOCK_KEYS:
            self._ensure(name)
        for key in self._keys.values():
            key.complete = False

    def _ensure(self, name: str) -> list[str]:
        """Create ``name`` and its missing parents; return the keys created (outermost first)."""
        created: list[str] = []
        parts = name.split("\\")
        for i in range(1, len(parts) + 1):
            sub = "\\".join(parts[:i])
            if sub.lower() not in self._keys:
                self._keys[sub.lower()] = Key(sub)
                self._deleted.discard(sub.lower())
                created.append(sub)
        return created

    def state(self, hive: str, rest: str) -> KeyState:
        low = key_name(hive, rest).lower()
        with self._lock:
            if low in self._keys:
                return KeyState.PRESENT
            parts = low.split("\\")
            for i in range(len(parts), 0, -1):
                if "\\".join(parts[:i]) in self._deleted:
                    return KeyState.ABSENT
            return KeyState.UNKNOWN

    def key(self, hive: str, rest: str) -> Key | None:
        with self._lock:
            return self._keys.get(key_name(hive, rest).lower())

    def create_key(self, hive: str, rest: str) -> list[str]:
        with self._lock:
            return self._ensure(key_name(hive, rest))

    def set_value(self, hive: str, rest: str, value: Value) -> list[str]:
        """Set ``value`` (creating the key and parents, as reg.exe does); returns keys created."""
        with self._lock:
            created = self._ensure(key_name(hive, rest))
            self._keys[key_name(hive, rest).lower()].values[value.name.lower()] = value
            return created

    def delete_value(self, hive: str, rest: str, name: str) -> bool:
        with self._lock:
            k = self._keys.get(key_name(hive, rest).lower())
            return k is not None and k.values.pop(name.lower(), None) is not None

    def delete_key(self, hive: str, rest: str) -> list[str]:
        """Delete the key and its subkeys; returns the deleted key paths (deepest first)."""
        low = key_name(hive, rest).lower()
        with self._lock:
            gone = sorted((k for k in self._keys if k == low or k.startswith(low + "\\")), key=len, reverse=True)
            names = [self._keys.pop(k).path for k in gone]
            self._deleted.add(low)
            return names

    def subkeys(self, hive: str, rest: str) -> list[str]:
        low = key_name(hive, rest).lower()
        with self._lock:
            depth = low.count("\\") + 1
            return sorted(
                k.path for lk, k in self._keys.items() if lk.startswith(low + "\\") and lk.count("\\") == depth
            )


def sysmon_details(value: Value) -> str:
    """Sysmon 13 ``Details`` for a value: ``DWORD (0x00000003)`` as recorded (evtx-attack-samples,
    PanacheSysmon_vs_AtomicRedTeam01.evtx), strings verbatim, ``Binary Data`` for binary data, and
    ``QWORD (0xHIGH-0xLOW)`` (Sysmon's format for 64-bit values)."""
    if value.type == "REG_DWORD" and isinstance(value.data, int):
        return f"DWORD (0x{value.data & 0xFFFFFFFF:08x})"
    if value.type == "REG_QWORD" and isinstance(value.data, int):
        return f"QWORD (0x{(value.data >> 32) & 0xFFFFFFFF:08x}-0x{value.data & 0xFFFFFFFF:08x})"
    if value.type in ("REG_BINARY", "REG_NONE"):
        return "Binary Data"
    if isinstance(value.data, list):
        return " ".join(value.data)
    return str(value.data)
