"""What a stock Windows Server 2022 has, by name, in one place for the emulated host and the counting.

Contract: ``load_stock()`` returns a frozen ``StockCatalogue`` composed of the program profiles
(``profiles/*.yaml``: the modelled programs and ``stock_server2022.yaml``), the Windows PowerShell 5.1
aliases and keywords (``ps_stock.py``) and the cmdlets of the stock modules
(``windows_server_2022.yaml`` here, sources cited there). A stock cmdlet that has no model is "not
modelled" (inconclusive), never "not recognized". A broken catalogue -> EmulationError naming it.
"""

from __future__ import annotations

import ntpath
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import yaml

from harness.emulated.ps_stock import ALIASES, KEYWORDS
from harness.emulated.tools import load_profiles
from harness.errors import EmulationError

#: Approved verbs (Get-Verb in Windows PowerShell 5.1; about_Approved_Verbs on Microsoft Learn).
APPROVED_VERBS = frozenset({
    "add", "clear", "close", "copy", "enter", "exit", "find", "format", "get", "hide", "join", "lock", "move",
    "new", "open", "optimize", "pop", "push", "redo", "remove", "rename", "reset", "resize", "search", "select",
    "set", "show", "skip", "split", "step", "switch", "undo", "unlock", "watch", "connect", "disconnect", "read",
    "receive", "send", "write", "backup", "checkpoint", "compare", "compress", "convert", "convertfrom",
    "convertto", "dismount", "edit", "expand", "export", "group", "import", "initialize", "limit", "merge",
    "mount", "out", "publish", "restore", "save", "sync", "unpublish", "update", "approve", "assert", "build",
    "complete", "confirm", "deny", "deploy", "disable", "enable", "install", "invoke", "register", "request",
    "restart", "resume", "start", "stop", "submit", "suspend", "uninstall", "unregister", "wait", "debug",
    "measure", "ping", "repair", "resolve", "test", "trace", "block", "grant", "protect", "revoke", "unblock",
    "unprotect", "use",
})  # fmt: skip

_PROGRAM_EXTS = (".exe", ".com", ".cmd", ".bat")


@dataclass(frozen=True, slots=True)
class StockCatalogue:
    """Stock programs (lower-case file name -> full path), cmdlets, aliases, keywords and modules."""

    programs: Mapping[str, str]
    cmdlets: Mapping[str, str]  # lower-case -> canonical spelling
    ps_aliases: Mapping[str, str]  # lower-case alias -> the command it names
    ps_keywords: frozenset[str]
    modules: frozenset[str] = frozenset()
    verbs: frozenset[str] = APPROVED_VERBS

    def is_program(self, name: str) -> bool:
        """True for a stock program given as ``name`` or ``name.exe`` (any case, any folder)."""
        low = ntpath.basename(name.strip("\"'")).lower()
        return low in self.programs or any(low + ext in self.programs for ext in _PROGRAM_EXTS)

    def canonical_program(self, name: str) -> str:
        low = ntpath.basename(name.strip("\"'")).lower()
        for ext in _PROGRAM_EXTS:
            if low.endswith(ext):
                return low[: -len(ext)]
        return low

    def is_cmdlet(self, name: str) -> bool:
        return name.lower() in self.cmdlets

    def canonical_cmdlet(self, name: str) -> str:
        return self.cmdlets.get(name.lower(), name)

    def alias_target(self, name: str) -> str | None:
        return self.ps_aliases.get(name.lower())


@lru_cache(maxsize=1)
def load_stock() -> StockCatalogue:
    """The catalogue from the package data (read once per process; it is immutable)."""
    name = "windows_server_2022.yaml"
    try:
        text = resources.files("harness.emulated.stock").joinpath(name).read_text(encoding="utf-8")
        doc = yaml.safe_load(text)
        cmdlets = {str(c).lower(): str(c) for names in doc["cmdlets"].values() for c in names}
        modules = frozenset(str(m) for m in doc["cmdlets"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise EmulationError(f"stock/{name}: invalid stock catalogue: {exc}", hint="fix the YAML catalogue") from exc
    programs: dict[str, str] = {}
    for p in load_profiles():
        if p.requires is None:  # lab-installed tools (nmap, git ...) are not stock
            programs.setdefault(p.name.lower(), p.image)
    return StockCatalogue(
        programs=programs,
        cmdlets=cmdlets,
        ps_aliases={k.lower(): v for k, v in ALIASES.items()},
        ps_keywords=frozenset(KEYWORDS),
        modules=modules,
    )
