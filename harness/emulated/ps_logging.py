"""How Windows PowerShell 5.1 logs what it runs: 4104 script blocks and the classic log's 400/403/600.

Contract:
- ``suspicious_signature(text)``: the first of PowerShell's "suspicious" strings found in a script
  block (case-insensitive), or None. Such a block is logged at Level 3 (Warning), others at
  Level 5 (Verbose), and it is logged even when script block logging is not configured (only an
  explicit "disabled" policy stops it). Source: PowerShell/PowerShell
  ``src/System.Management.Automation/engine/runtime/CompiledScriptBlock.cs``
  (``SuspiciousContentChecker.LookupHash``: the list below; ``Match`` hashes runs of ``[A-Za-z-]``,
  which for these letter-and-hyphen patterns is a case-insensitive substring test;
  ``LogScriptBlockCreation`` / ``WriteScriptBlockToLog``: the level and the forced logging).
  PowerShell also flags some obfuscation by AST shape; that part is not modelled.
- ``split_script_block(text, rng)``: the parts one 4104 per part carries. Under 20000 characters one
  part; otherwise a random segment size of 10000 + [0, 10000) characters and ``len // size + 1``
  segments (so a text that is a multiple of the size ends with an empty part), as
  ``LogScriptBlockCreation`` does.
- ``engine_blob`` / ``provider_blob`` render the third ``<Data>`` of the classic "Windows PowerShell"
  log's 400/403 and 600 events, ``PROVIDERS`` the six providers whose 600 "Started" events precede 400 at every
  engine start (the order and sequence numbers 1, 3, ... 11, 13 for 400, 15 for 403 as in the
  atomic-evtx T1571-1 recording; HostApplication is powershell.exe's argv joined by spaces there).
"""

from __future__ import annotations

import random

#: PowerShell's suspicious strings (CompiledScriptBlock.cs, SuspiciousContentChecker.LookupHash).
SUSPICIOUS = (
    "Add-Type", "DllImport", "DefineDynamicAssembly", "DefineDynamicModule", "DefineType",
    "DefineConstructor", "CreateType", "DefineLiteral", "DefineEnum", "DefineField", "ILGenerator", "Emit",
    "UnverifiableCodeAttribute", "DefinePInvokeMethod", "GetTypes", "GetAssemblies", "Methods", "Properties",
    "GetConstructor", "GetConstructors", "GetDefaultMembers", "GetEvent", "GetEvents", "GetField", "GetFields",
    "GetInterface", "GetInterfaceMap", "GetInterfaces", "GetMember", "GetMembers", "GetMethod", "GetMethods",
    "GetNestedType", "GetNestedTypes", "GetProperties", "GetProperty", "InvokeMember", "MakeArrayType",
    "MakeByRefType", "MakeGenericType", "MakePointerType", "DeclaringMethod", "DeclaringType", "ReflectedType",
    "TypeHandle", "TypeInitializer", "UnderlyingSystemType", "InteropServices", "Marshal", "AllocHGlobal",
    "PtrToStructure", "StructureToPtr", "FreeHGlobal", "IntPtr", "MemoryStream", "DeflateStream",
    "FromBase64String", "EncodedCommand", "Bypass", "ToBase64String", "ExpandString", "GetPowerShell",
    "OpenProcess", "VirtualAlloc", "VirtualFree", "WriteProcessMemory", "CreateUserThread", "CloseHandle",
    "GetDelegateForFunctionPointer", "kernel32", "CreateThread", "memcpy", "LoadLibrary", "GetModuleHandle",
    "GetProcAddress", "VirtualProtect", "FreeLibrary", "ReadProcessMemory", "CreateRemoteThread",
    "AdjustTokenPrivileges", "WriteByte", "WriteInt32", "OpenThreadToken", "PtrToString",
    "ZeroFreeGlobalAllocUnicode", "OpenProcessToken", "GetTokenInformation", "SetThreadToken",
    "ImpersonateLoggedOnUser", "RevertToSelf", "GetLogonSessionData", "CreateProcessWithToken",
    "DuplicateTokenEx", "OpenWindowStation", "OpenDesktop", "MiniDumpWriteDump", "AddSecurityPackage",
    "EnumerateSecurityPackages", "GetProcessHandle", "DangerousGetHandle", "CryptoServiceProvider",
    "Cryptography", "RijndaelManaged", "SHA1Managed", "CryptoStream", "CreateEncryptor", "CreateDecryptor",
    "TransformFinalBlock", "DeviceIoControl", "SetInformationProcess", "PasswordDeriveBytes",
    "GetAsyncKeyState", "GetKeyboardState", "GetForegroundWindow", "BindingFlags", "NonPublic",
    "ScriptBlockLogging", "LogPipelineExecutionDetails", "ProtectedEventLogging",
)  # fmt: skip
_SUSPICIOUS_LOWER = tuple((s.lower(), s) for s in SUSPICIOUS)

#: One ETW event stays under 64 KB: blocks of this many characters or more are split.
SPLIT_AT = 20000

#: Providers started at every engine start, in the order of their 600 events.
PROVIDERS = ("Registry", "Alias", "Environment", "FileSystem", "Function", "Variable")


def suspicious_signature(text: str) -> str | None:
    """The suspicious string ``text`` contains (PowerShell's list), or None."""
    low = text.lower()
    hits = [(low.find(p), name) for p, name in _SUSPICIOUS_LOWER if p in low]
    return min(hits)[1] if hits else None


def split_script_block(text: str, rng: random.Random) -> list[str]:
    """The 4104 parts of one script block (see the module docstring)."""
    if len(text) < SPLIT_AT:
        return [text]
    size = 10000 + rng.randrange(10000)
    segments = len(text) // size + 1
    return [text[i * size : i * size + size] for i in range(segments)]


def engine_blob(*, new: str, previous: str, sequence: int, host: dict[str, str]) -> str:
    """400/403: ``NewEngineState`` / ``PreviousEngineState`` then the host block."""
    head = f"\tNewEngineState={new}\n\tPreviousEngineState={previous}\n\n\tSequenceNumber={sequence}\n\n"
    return head + _host_block(host)


def provider_blob(*, provider: str, sequence: int, host: dict[str, str]) -> str:
    """600: ``ProviderName`` / ``NewProviderState=Started`` then the host block (no engine/runspace)."""
    head = f"\tProviderName={provider}\n\tNewProviderState=Started\n\n\tSequenceNumber={sequence}\n\n"
    return head + _host_block({**host, "EngineVersion": "", "RunspaceId": ""})


def _host_block(host: dict[str, str]) -> str:
    keys = ("HostName", "HostVersion", "HostId", "HostApplication", "EngineVersion", "RunspaceId", "PipelineId",
            "CommandName", "CommandType", "ScriptName", "CommandPath", "CommandLine")  # fmt: skip
    return "\n".join(f"\t{k}={host.get(k, '')}" for k in keys)


__all__ = [
    "PROVIDERS",
    "SPLIT_AT",
    "SUSPICIOUS",
    "engine_blob",
    "provider_blob",
    "split_script_block",
    "suspicious_signature",
]
