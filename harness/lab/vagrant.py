"""A thin, testable wrapper over the ``vagrant`` command line.

Every call is an argument list (never a shell string) run through an injected ``CommandRunner``, so
tests substitute a fake ``vagrant`` on PATH or a recording runner. A missing vagrant binary or
provider becomes a LabError that says what to install; a failing vagrant command becomes a LabError
carrying vagrant's own last error line.
"""

from __future__ import annotations

import enum
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import LabError

#: Snapshot name the lab returns to (``vagrant snapshot save VM baseline`` once, restore per test).
BASELINE = "baseline"


class Provider(enum.StrEnum):
    VIRTUALBOX = "virtualbox"
    LIBVIRT = "libvirt"
    HYPERV = "hyperv"


#: The binary each provider needs on the host, checked before ``vagrant up``.
_PROVIDER_BINARIES: Mapping[Provider, tuple[str, str]] = {
    Provider.VIRTUALBOX: ("VBoxManage", "install VirtualBox"),
    Provider.LIBVIRT: ("virsh", "install libvirt and the vagrant-libvirt plugin"),
    Provider.HYPERV: ("powershell.exe", "Hyper-V needs a Windows host with the Hyper-V feature enabled"),
}


@dataclass(frozen=True, slots=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


CommandRunner = Callable[[Sequence[str], Path, Mapping[str, str]], Completed]


def subprocess_runner(argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> Completed:
    """Run ``argv`` in ``cwd`` and capture its output (vagrant prints progress to stdout)."""
    import subprocess  # only when vagrant runs: `atomiclab --help` does not pay for it

    try:
        proc = subprocess.run(list(argv), cwd=cwd, env=dict(env), capture_output=True, text=True,
                              errors="replace", check=False)
    except OSError as exc:  # not executable, removed since `which`, cwd gone ...
        raise LabError(f"cannot run {argv[0]}: {exc.strerror or exc}",
                       hint="check the Vagrant installation") from exc
    return Completed(proc.returncode, proc.stdout, proc.stderr)


#: Snapshot names passed to vagrant: a plain word, so a name can never be read as an option.
_SNAPSHOT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_snapshot_name(name: str) -> str:
    """``name`` if it is a valid snapshot name, else LabError (what vagrant would misread)."""
    if not _SNAPSHOT_NAME.fullmatch(name):
        raise LabError(f"snapshot name {name[:40]!r} is not valid",
                       hint="use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


@dataclass(frozen=True, slots=True)
class MachineState:
    name: str
    state: str
    provider: str


class Vagrant:
    """Drives ``vagrant`` in the project root (where the Vagrantfile is)."""

    def __init__(
        self,
        root: Path,
        *,
        executable: str = "vagrant",
        runner: CommandRunner = subprocess_runner,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.root = root
        self.executable = executable
        self._runner = runner
        self._env = dict(os.environ if env is None else env)

    def _which(self, name: str) -> str | None:
        return shutil.which(name, path=self._env.get("PATH"))

    def _run(self, *args: str) -> Completed:
        exe = self._which(self.executable)
        if exe is None:
            raise LabError(
                "vagrant is not installed or not on PATH",
                hint="install Vagrant (2.3 or newer), then run `atomiclab lab up` again",
            )
        if not (self.root / "Vagrantfile").is_file():
            raise LabError(f"no Vagrantfile in {self.root}", hint="run from the atomiclab checkout")
        result = self._runner([exe, *args], self.root, self._env)
        if result.returncode != 0:
            lines = [ln.strip() for ln in (result.stderr or result.stdout).splitlines() if ln.strip()]
            last = lines[-1] if lines else f"exit code {result.returncode}"
            raise LabError(f"`vagrant {' '.join(args)}` failed: {last}", hint="see `vagrant status` and docs/lab.md")
        return result

    def check_provider(self, provider: Provider) -> None:
        binary, what = _PROVIDER_BINARIES[provider]
        if self._which(binary) is None:
            raise LabError(f"provider {provider.value} is not available: {binary} not found", hint=what)

    def up(self, *, provider: Provider | None = None, machines: Sequence[str] = ()) -> None:
        args = ["up"]
        if provider is not None:
            self.check_provider(provider)
            args.append(f"--provider={provider.value}")
        self._run(*args, *machines)

    def provision(self, machines: Sequence[str] = (), *, only: Sequence[str] = ()) -> None:
        """``vagrant provision``; ``only`` names the provisioners to run (``--provision-with``),
        which is also how a ``run: "never"`` step runs at all."""
        self._run("provision", *([f"--provision-with={','.join(only)}"] if only else []), *machines)

    def status(self) -> list[MachineState]:
        """Parse ``vagrant status --machine-readable`` (``time,target,type,data`` lines)."""
        out = self._run("status", "--machine-readable").stdout
        states: dict[str, dict[str, str]] = {}
        for line in out.splitlines():
            parts = line.split(",", 3)
            if len(parts) < 4 or not parts[1]:
                continue
            _, target, kind, data = parts
            if kind in ("state", "provider-name"):
                states.setdefault(target, {})[kind] = data
        return [MachineState(n, s.get("state", "unknown"), s.get("provider-name", "")) for n, s in states.items()]

    def snapshot_save(self, machine: str, name: str = BASELINE) -> None:
        self._run("snapshot", "save", "--force", machine, check_snapshot_name(name))

    def snapshot_restore(self, machine: str, name: str = BASELINE) -> None:
        # `snapshot restore` (not push/pop): the baseline stays for the next test.
        self._run("snapshot", "restore", "--no-provision", machine, check_snapshot_name(name))

    def halt(self, machines: Sequence[str] = ()) -> None:
        self._run("halt", *machines)

    def destroy(self, machines: Sequence[str] = ()) -> None:
        self._run("destroy", "--force", *machines)
