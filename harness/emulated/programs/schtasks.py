"""schtasks.exe: /create and /delete of tasks in the root folder, with the task file's Sysmon 11.

Sources: Microsoft Learn "schtasks create" / "schtasks delete" (switches, /f, /sc values); the
SUCCESS/ERROR lines are schtasks' own text on Windows Server 2022. The Task Scheduler service
(svchost.exe -k netsvcs -p -s Schedule) stores each task as an XML file named after it under
C:\\Windows\\System32\\Tasks (Microsoft Learn "Tasks" / Task Scheduler schema; the file-create event
by svchost.exe is what Sigma's file_event rules on ``\\Windows\\System32\\Tasks\\`` look for).
The task content, triggers and /run, /query, /change, remote /s, tasks in \\Microsoft\\ folders and
the "already exists, replace (Y/N)?" prompt are not modelled.
"""

from __future__ import annotations

from harness.emulated.programs.common import err, not_modelled, out
from harness.emulated.tools import Ctx, ProgramProfile

TASKS_DIR = "C:\\Windows\\System32\\Tasks"
SCHEDULES = {"minute", "hourly", "daily", "weekly", "monthly", "once", "onstart", "onlogon", "onidle", "onevent"}


def _opts(args: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("/"):
            key = a[1:].lower()
            if i + 1 < len(args) and not args[i + 1].startswith("/"):
                found[key] = args[i + 1]
                i += 1
            else:
                found[key] = ""
        i += 1
    return found


def schtasks(ctx: Ctx, argv: list[str], profile: ProgramProfile) -> int:
    args = argv[1:]
    verb = args[0].lower() if args else ""
    o = _opts(args[1:])
    name = o.get("tn", "")
    if verb not in ("/create", "/delete") or not name or "s" in o or "xml" in o:
        return not_modelled(ctx, argv)
    leaf = name.lstrip("\\")
    if "\\" in leaf or any(c in leaf for c in '<>:"/|?*'):
        return not_modelled(ctx, [argv[0], verb, "(a task in a folder)"])
    path = f"{TASKS_DIR}\\{leaf}"
    exists = ctx.host.fs.is_file(path)
    if verb == "/create":
        if o.get("sc", "").lower() not in SCHEDULES or "tr" not in o or (o["sc"].lower() == "once" and "st" not in o):
            return not_modelled(ctx, [argv[0], verb, "(schedule form)"])
        if exists and "f" not in o:
            return not_modelled(ctx, [argv[0], verb, "(replace prompt)"])
        ctx.host.fs.mkdir(TASKS_DIR)
        ctx.host.write_file(ctx.host.service_process("schedule"), path, _task_xml(o).encode("utf-16"))
        out(ctx, f'SUCCESS: The scheduled task "{leaf}" has successfully been created.\n')
        return 0
    if not exists:
        if "f" not in o:
            return not_modelled(ctx, [argv[0], verb, "(confirmation prompt)"])
        err(ctx, "ERROR: The system cannot find the file specified.\n")
        return 1
    if "f" not in o:
        return not_modelled(ctx, [argv[0], verb, "(confirmation prompt)"])
    ctx.host.fs.delete(path)
    out(ctx, f'SUCCESS: The scheduled task "{leaf}" was successfully deleted.\n')
    return 0


def _task_xml(o: dict[str, str]) -> str:
    # Only what the command line says; the real file carries the full task definition.
    return (
        '<?xml version="1.0" encoding="UTF-16"?>\r\n'
        '<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">\r\n'
        f"  <Actions><Exec><Command>{o.get('tr', '')}</Command></Exec></Actions>\r\n</Task>\r\n"
    )
