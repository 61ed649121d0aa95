"""A tiny stand-in for ``harness.emulated.host.EmulatedHost`` used by the WS-Man server tests.

It implements only the host interface the WinRS service calls (open_shell / start / read /
write_stdin / terminate / close) with a handful of deterministic commands, so protocol tests do not
depend on the command model:

- ``cmd.exe /c echo TEXT``   -> ``TEXT\\r\\n`` on stdout, exit 0
- ``big N``                  -> N bytes of a repeating pattern on stdout, exit 0
- ``fail TEXT``              -> TEXT on stderr, exit 1
- ``sleep SECONDS``          -> no output, exit 0 after SECONDS (terminate ends it at once)
- ``cat``                    -> echoes stdin to stdout until EOF, exit 0
- ``chcp``                   -> the shell's codepage, encoded in that codepage
- anything else              -> "not modelled" on stderr, exit 1
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

TERMINATED_EXIT_CODE = 0xC000013A - (1 << 32)  # STATUS_CONTROL_C_EXIT as a signed 32-bit int


@dataclass(frozen=True)
class OutputChunk:
    stdout: bytes
    stderr: bytes
    done: bool
    exit_code: int | None


@dataclass
class FakeSettings:
    hostname: str = "WIN-FAKEHOST"
    domain: str = "ATOMICLAB"


class FakeCommand:
    def __init__(self, command_line: str, codepage: int) -> None:
        self.command_line = command_line
        self._cond = threading.Condition()
        self._out = bytearray()
        self._err = bytearray()
        self._done = False
        self._exit: int | None = None
        self._stdin_eof = False
        self.terminated = False
        self.stdin = bytearray()
        self._codepage = codepage
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _finish(self, code: int) -> None:
        with self._cond:
            if not self._done:
                self._done, self._exit = True, code
            self._cond.notify_all()

    def _run(self) -> None:
        line = self.command_line
        words = line.split()
        head = words[0].lower() if words else ""
        if line.lower().startswith("cmd.exe /c echo "):
            self._emit(line[len("cmd.exe /c echo ") :].encode() + b"\r\n")
            self._finish(0)
        elif head == "big" and len(words) == 2:
            n = int(words[1])
            pattern = b"0123456789abcdefghijklmnopqrstuvwxyz\r\n"
            self._emit((pattern * (n // len(pattern) + 1))[:n])
            self._finish(0)
        elif head == "fail":
            self._emit(line[5:].encode(), err=True)
            self._finish(1)
        elif head == "sleep" and len(words) == 2:
            deadline = time.monotonic() + float(words[1])
            with self._cond:
                while not self.terminated and time.monotonic() < deadline:
                    self._cond.wait(deadline - time.monotonic())
            self._finish(TERMINATED_EXIT_CODE if self.terminated else 0)
        elif head == "cat":
            with self._cond:
                while not self._stdin_eof and not self.terminated:
                    self._cond.wait(0.5)
            self._finish(TERMINATED_EXIT_CODE if self.terminated else 0)
        elif head == "chcp":
            enc = "utf-8" if self._codepage == 65001 else f"cp{self._codepage}"
            self._emit(f"Active code page: {self._codepage} ü\r\n".encode(enc))
            self._finish(0)
        else:
            self._emit(f"'{head}' is not modelled by the fake host\r\n".encode(), err=True)
            self._finish(1)

    def _emit(self, data: bytes, *, err: bool = False) -> None:
        with self._cond:
            (self._err if err else self._out).extend(data)
            self._cond.notify_all()

    def read(self, timeout: float) -> OutputChunk:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (self._out or self._err or self._done):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            out, err = bytes(self._out), bytes(self._err)
            self._out.clear()
            self._err.clear()
            return OutputChunk(out, err, self._done, self._exit)

    def write_stdin(self, data: bytes, *, eof: bool = False) -> None:
        with self._cond:
            self.stdin.extend(data)
            if self.command_line.split()[:1] == ["cat"]:
                self._out.extend(data)
            self._stdin_eof = self._stdin_eof or eof
            self._cond.notify_all()

    def terminate(self) -> None:
        with self._cond:
            self.terminated = True
            self._cond.notify_all()
        self._finish(TERMINATED_EXIT_CODE)


@dataclass
class FakeShell:
    user: str
    codepage: int
    shell_id: str = field(default_factory=lambda: str(uuid.uuid4()).upper())
    commands: list[FakeCommand] = field(default_factory=list)
    closed: bool = False

    def start(self, command_line: str) -> FakeCommand:
        cmd = FakeCommand(command_line, self.codepage)
        self.commands.append(cmd)
        return cmd

    def close(self) -> None:
        self.closed = True


class FakeHost:
    """Records every shell it opens so tests can inspect command lines and closes."""

    def __init__(self) -> None:
        self.settings = FakeSettings()
        self.shells: list[FakeShell] = []

    def open_shell(self, user: str, *, codepage: int = 437) -> FakeShell:
        if codepage not in (437, 850, 1252, 65001):
            raise ValueError(f"codepage {codepage} is not installed")
        shell = FakeShell(user=user, codepage=codepage)
        self.shells.append(shell)
        return shell

    @property
    def command_lines(self) -> list[str]:
        return [c.command_line for s in self.shells for c in s.commands]
