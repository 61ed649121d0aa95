"""What a stock Windows PowerShell 5.1 (Windows Server 2022) knows by name, for the emulated host.

The emulated PowerShell interprets a subset. When a name it cannot run is one a stock host does run
(a language keyword, a built-in alias, or a fragment of syntax the subset's parser split into a
"command"), answering with ``CommandNotFoundException`` would invent a failure a real host never
shows: such a name is *not modelled* instead (recorded with the host; the test is inconclusive).

Sources: keywords from about_Language_Keywords (learn.microsoft.com/powershell/module/
microsoft.powershell.core/about/about_language_keywords, Windows PowerShell 5.1); aliases from the
built-in alias table of Windows PowerShell 5.1 (``Get-Alias`` on a stock host; the table is
``BuiltInAliases`` in PowerShell's src/System.Management.Automation/engine/InitialSessionState.cs,
plus the Windows-only ones: curl/wget -> Invoke-WebRequest, ls/dir -> Get-ChildItem, ...).
"""

from __future__ import annotations

import re

#: about_Language_Keywords (5.1): reserved words that begin statements.
KEYWORDS = frozenset(
    [
    "begin", "break", "catch", "class", "continue", "data", "define", "do", "dynamicparam", "else", "elseif", "end",
    "enum", "exit", "filter", "finally", "for", "foreach", "from", "function", "hidden", "if", "in", "inlinescript",
    "parallel", "param", "process", "return", "sequence", "static", "switch", "throw", "trap", "try", "until",
    "using", "var", "while", "workflow",
    ]
)  # fmt: skip

#: Built-in aliases of Windows PowerShell 5.1 -> the command they name.
ALIASES: dict[str, str] = {
    "%": "ForEach-Object", "?": "Where-Object", "ac": "Add-Content", "asnp": "Add-PSSnapin",
    "cat": "Get-Content", "cd": "Set-Location", "chdir": "Set-Location", "clc": "Clear-Content",
    "clear": "Clear-Host", "clhy": "Clear-History", "cli": "Clear-Item", "clp": "Clear-ItemProperty",
    "cls": "Clear-Host", "clv": "Clear-Variable", "cnsn": "Connect-PSSession", "compare": "Compare-Object",
    "copy": "Copy-Item", "cp": "Copy-Item", "cpi": "Copy-Item", "cpp": "Copy-ItemProperty",
    "curl": "Invoke-WebRequest", "cvpa": "Convert-Path", "dbp": "Disable-PSBreakpoint", "del": "Remove-Item",
    "diff": "Compare-Object", "dir": "Get-ChildItem", "dnsn": "Disconnect-PSSession", "ebp": "Enable-PSBreakpoint",
    "echo": "Write-Output", "epal": "Export-Alias", "epcsv": "Export-Csv", "epsn": "Export-PSSession",
    "erase": "Remove-Item", "etsn": "Enter-PSSession", "exsn": "Exit-PSSession", "fc": "Format-Custom",
    "fhx": "Format-Hex", "fl": "Format-List", "foreach": "ForEach-Object", "ft": "Format-Table",
    "fw": "Format-Wide", "gal": "Get-Alias", "gbp": "Get-PSBreakpoint", "gc": "Get-Content",
    "gcb": "Get-Clipboard", "gci": "Get-ChildItem", "gcm": "Get-Command", "gcs": "Get-PSCallStack",
    "gdr": "Get-PSDrive", "ghy": "Get-History", "gi": "Get-Item", "gin": "Get-ComputerInfo", "gjb": "Get-Job",
    "gl": "Get-Location", "gm": "Get-Member", "gmo": "Get-Module", "gp": "Get-ItemProperty",
    "gpv": "Get-ItemPropertyValue", "gps": "Get-Process", "group": "Group-Object", "gsn": "Get-PSSession",
    "gsnp": "Get-PSSnapin", "gsv": "Get-Service", "gtz": "Get-TimeZone", "gu": "Get-Unique",
    "gv": "Get-Variable", "gwmi": "Get-WmiObject", "h": "Get-History", "history": "Get-History",
    "icm": "Invoke-Command", "iex": "Invoke-Expression", "ihy": "Invoke-History", "ii": "Invoke-Item",
    "ipal": "Import-Alias", "ipcsv": "Import-Csv", "ipmo": "Import-Module", "ipsn": "Import-PSSession",
    "irm": "Invoke-RestMethod", "ise": "powershell_ise.exe", "iwmi": "Invoke-WmiMethod",
    "iwr": "Invoke-WebRequest", "kill": "Stop-Process", "lp": "Out-Printer", "ls": "Get-ChildItem",
    "man": "help", "md": "mkdir", "measure": "Measure-Object", "mi": "Move-Item", "mount": "New-PSDrive",
    "move": "Move-Item", "mp": "Move-ItemProperty", "mv": "Move-Item", "nal": "New-Alias", "ndr": "New-PSDrive",
    "ni": "New-Item", "nmo": "New-Module", "npssc": "New-PSSessionConfigurationFile", "nsn": "New-PSSession",
    "nv": "New-Variable", "ogv": "Out-GridView", "oh": "Out-Host", "popd": "Pop-Location", "ps": "Get-Process",
    "pushd": "Push-Location", "pwd": "Get-Location", "r": "Invoke-History", "rbp": "Remove-PSBreakpoint",
    "rcjb": "Receive-Job", "rcsn": "Receive-PSSession", "rd": "Remove-Item", "rdr": "Remove-PSDrive",
    "ren": "Rename-Item", "ri": "Remove-Item", "rjb": "Remove-Job", "rm": "Remove-Item", "rmdir": "Remove-Item",
    "rmo": "Remove-Module", "rni": "Rename-Item", "rnp": "Rename-ItemProperty", "rp": "Remove-ItemProperty",
    "rsn": "Remove-PSSession", "rsnp": "Remove-PSSnapin", "rujb": "Resume-Job", "rv": "Remove-Variable",
    "rvpa": "Resolve-Path", "rwmi": "Remove-WmiObject", "sajb": "Start-Job", "sal": "Set-Alias",
    "saps": "Start-Process", "sasv": "Start-Service", "sbp": "Set-PSBreakpoint", "sc": "Set-Content",
    "scb": "Set-Clipboard", "select": "Select-Object", "set": "Set-Variable", "shcm": "Show-Command",
    "si": "Set-Item", "sl": "Set-Location", "sleep": "Start-Sleep", "sls": "Select-String", "sort": "Sort-Object",
    "sp": "Set-ItemProperty", "spjb": "Stop-Job", "spps": "Stop-Process", "spsv": "Stop-Service",
    "start": "Start-Process", "stz": "Set-TimeZone", "sujb": "Suspend-Job", "sv": "Set-Variable",
    "swmi": "Set-WmiInstance", "tee": "Tee-Object", "trcm": "Trace-Command", "type": "Get-Content",
    "wget": "Invoke-WebRequest", "where": "Where-Object", "wjb": "Wait-Job", "write": "Write-Output",
}  # fmt: skip

#: A name a real "is not recognized" error can be about: a word or a path, not a stray token.
_COMMAND_NAME = re.compile(r"[\w][\w.\-]*|(?:[A-Za-z]:|\.{1,2})?[\\/][^<>|&;\"*?]*")


def stock_gap(name: str, *, literal: bool) -> str | None:
    """What a stock PowerShell 5.1 would run under ``name`` that the emulated one cannot, or None.

    ``literal``: the name came from a bare word (not from evaluating an expression in command
    position, which only a mis-parse of valid syntax produces). None means the name is credibly
    unknown on a stock host too (CommandNotFoundException is then the right answer).
    """
    low = name.lower()
    if low in KEYWORDS:
        return f"PowerShell keyword '{low}'"
    if low in ALIASES:
        return f"{ALIASES[low]} (alias {low})"
    if not literal or not _COMMAND_NAME.fullmatch(name):
        return f"PowerShell syntax near '{name[:40]}'"
    return None
