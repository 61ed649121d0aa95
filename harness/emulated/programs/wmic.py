"""wmic.exe: ``process call create`` on the local host (Win32_Process.Create through WmiPrvSE).

Sources: Microsoft Learn "Create method of the Win32_Process class" (the new process is created by
the WMI provider host, so Sysmon shows ParentImage ...\\wbem\\WmiPrvSE.exe, while it runs as the
calling user; ReturnValue 0 = success), the WMIC output of a method call ("Executing
(Win32_Process)->Create()", "Method execution successful.", the __PARAMETERS instance), and
WBEM_E_LOCAL_CREDENTIALS (0x80041064, "User credentials cannot be used for local connections")
for /user against the local node (WMI error constants, learn.microsoft.com/windows/win32/wmisdk/
wmi-error-constants). Queries (``get``, ``list``), other classes and remote nodes are not modelled.
"""

from __future__ import annotations

from harness.emulated.programs.common import err, not_modelled, out
from harness.emulated.tools import BufferSink, Ctx, ProgramProfile, split_command_line

LOCAL_CREDENTIALS = 0x80041064


def _is_local(ctx: Ctx, node: str) -> bool:
    n = node.strip('"').lower()
    return n in ("localhost", "127.0.0.1", ".", ctx.host.hostname.lower(), ctx.host.ipv4)


def wmic(ctx: Ctx, argv: list[str], profile: ProgramProfile) -> int:
    args = argv[1:]
    globals_: dict[str, str] = {}
    while args and args[0].startswith("/"):
        name, _, value = args[0][1:].partition(":")
        globals_[name.lower()] = value
        args = args[1:]
    if "node" in globals_ and not _is_local(ctx, globals_["node"]):
        return not_modelled(ctx, [argv[0], "/node (a remote host)"])
    if set(globals_) - {"node", "user", "password"}:
        return not_modelled(ctx, [argv[0], "/" + sorted(set(globals_) - {"node", "user", "password"})[0]])
    low = [a.lower() for a in args]
    if low[:3] != ["process", "call", "create"] or len(args) < 4:
        return not_modelled(ctx, [argv[0], *args[:2]], words=3)
    if "user" in globals_:
        err(ctx, "ERROR:\nDescription = User credentials cannot be used for local connections\n")
        return LOCAL_CREDENTIALS
    command_line = " ".join(args[3:])
    first = split_command_line(command_line)[0] if command_line.strip() else ""
    cwd = "C:\\Windows\\system32"
    program = ctx.host.resolve_program(first, cwd, ctx.env)
    if program is None or not program.image.lower().endswith(".exe"):
        return not_modelled(ctx, [argv[0], "process call create of a program the host does not have"])
    provider = ctx.host.service_process("wmiprvse")
    wmi = Ctx(host=ctx.host, proc=provider, env=ctx.env.copy(), cwd=cwd, stdin="", out=BufferSink(),
              err=BufferSink(), cancel=ctx.cancel, codepage=ctx.codepage)  # fmt: skip
    out(ctx, "Executing (Win32_Process)->Create()\nMethod execution successful.\nOut Parameters:\n")
    ctx.host.run_program(wmi, program, command_line, cwd=cwd, account=ctx.proc.account)
    pid = next((c.pid for c in reversed(provider.children) if c.command_line == command_line), 0)
    out(ctx, f"instance of __PARAMETERS\n{{\n\tProcessId = {pid};\n\tReturnValue = 0;\n}};\n\n")
    return 0
