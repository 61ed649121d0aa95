"""``atomiclab sync`` / ``run --sync`` (issue 12): the payloads a selection references reach each target's
atomics folder with checksums, only what changed: SFTP against the real test sshd, the emulated host's
file system, and the WinRM (PowerShell) command shapes against a scripted transport."""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sshd_fixture import KEY_PASSPHRASE, SshdServer

from harness.cli import main
from harness.content.atomics import discover_atomics
from harness.errors import ProtocolError
from harness.execution.sync import FileSystemSink, TransportSink, payloads_for, sync_payloads
from harness.model import CommandResult
from harness.plan import select_tests
from harness.targets import EmulatedTargetFactory

REPO = Path(__file__).resolve().parents[1]
ART = REPO / "tests" / "fixtures" / "art-upstream"
FILES = discover_atomics([ART])


def _checkout(tmp_path: Path) -> Path:
    """The fixture checkout plus an ExternalPayloads folder (as Invoke-AtomicRedTeam's get-prereqs fill it)."""
    repo = tmp_path / "art"
    shutil.copytree(ART, repo)
    (repo / "ExternalPayloads").mkdir()
    (repo / "ExternalPayloads" / "nmap-7.80-setup.exe").write_bytes(b"MZ fake installer")
    (repo / "ExternalPayloads" / "unrelated.bin").write_bytes(b"x")
    return repo


def test_payloads_of_a_selection(tmp_path: Path) -> None:
    repo = _checkout(tmp_path)
    files = discover_atomics([repo])
    rels = [p.relative for p in payloads_for(select_tests(files, ["T1609", "T1055.011-1", "T1046"]))]
    assert rels == ["../ExternalPayloads/nmap-7.80-setup.exe", "T1055.011/src/extrabytes_x64.txt",
                    "T1609/src/busybox.yaml", "T1609/src/dockerfile"]
    assert payloads_for(select_tests(files, ["T1033"])) == []


def _lab(tmp_path: Path, sshd: SshdServer, folder: Path) -> Path:
    lab = tmp_path / "lab.yaml"
    lab.write_text(
        "targets:\n  - name: linux1\n    transport: ssh\n    platform: linux\n    address: 127.0.0.1\n"
        f"    port: {sshd.port}\n    auth: key\n    username: {sshd.username}\n    key_file: {sshd.user_key}\n"
        f"    key_passphrase_env: ATOMICLAB_TEST_SSH_KEY\n    known_hosts: {sshd.known_hosts}\n"
        f"    atomics_folder: {folder}\n")
    return lab


@pytest.mark.network
def test_sync_over_sftp_copies_only_what_changed(sshd: SshdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ATOMICLAB_TEST_SSH_KEY", KEY_PASSPHRASE)
    repo = _checkout(tmp_path)
    remote = tmp_path / "remote" / "AtomicRedTeam" / "atomics"
    argv = ["sync", "--lab", str(_lab(tmp_path, sshd, remote)), "--atomics", str(repo), "--tests", "T1609", "T1046"]
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("linux1: 3 copied (")
    for rel in ("T1609/src/busybox.yaml", "T1609/src/dockerfile"):
        assert (remote / rel).read_bytes() == (repo / "atomics" / rel).read_bytes()
    assert (remote.parent / "ExternalPayloads" / "nmap-7.80-setup.exe").read_bytes() == b"MZ fake installer"
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "linux1: 0 copied (0 bytes), 3 unchanged"
    (repo / "atomics" / "T1609" / "src" / "dockerfile").write_text("FROM scratch\n")
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "linux1: 1 copied (13 bytes), 2 unchanged"
    assert (remote / "T1609" / "src" / "dockerfile").read_text() == "FROM scratch\n"


def test_emulated_host_file_system_gets_the_payloads() -> None:
    payloads = payloads_for(select_tests(FILES, ["T1609"]))
    factory = EmulatedTargetFactory(payloads=payloads)
    opened = factory.open(factory.target())
    try:
        fs = factory.servers[-1].host.fs
        path = "C:\\AtomicRedTeam\\atomics\\T1609\\src\\busybox.yaml"
        assert fs.read(path) == (ART / "atomics" / "T1609" / "src" / "busybox.yaml").read_bytes()
        again = sync_payloads(payloads, FileSystemSink(fs), "C:\\AtomicRedTeam\\atomics", windows=True)
        assert (again.copied, len(again.unchanged)) == ([], 2)
    finally:
        opened.close()


class _Scripted:
    host = "win1"

    def __init__(self, hashes: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.puts: list[tuple[Path, str]] = []
        self.hashes = hashes

    def run(self, command_line: str, *, timeout: float) -> CommandResult:
        self.lines.append(command_line)
        now = datetime.now(UTC)
        out = "\r\n".join(f"{h.upper()} {p}" for p, h in self.hashes.items())
        return CommandResult(command_line, 0, out + "\r\nMISSING C:\\x\r\n", "", now, now)

    def put_file(self, local: Path, remote: str) -> None:
        self.puts.append((local, remote))
        self.hashes[remote] = hashlib.sha256(local.read_bytes()).hexdigest()

    def close(self) -> None:
        pass


def test_winrm_sink_uses_powershell_hashes_and_the_transport_copy() -> None:
    payloads = payloads_for(select_tests(FILES, ["T1055.011-1"]))
    t = _Scripted({})
    report = sync_payloads(payloads, TransportSink(t, windows=True), "C:\\AtomicRedTeam\\atomics", windows=True)
    assert report.copied == ["T1055.011/src/extrabytes_x64.txt"]
    assert t.puts == [(payloads[0].local, "C:\\AtomicRedTeam\\atomics\\T1055.011\\src\\extrabytes_x64.txt")]
    assert all(line.startswith("powershell.exe -NoProfile -NonInteractive -EncodedCommand ") for line in t.lines)
    assert len(t.lines) == 3  # hashes, folders, hashes again


def test_a_copy_that_does_not_match_is_an_error() -> None:
    class Corrupting(_Scripted):
        def put_file(self, local: Path, remote: str) -> None:
            self.hashes[remote] = "0" * 64

    payloads = payloads_for(select_tests(FILES, ["T1055.011-1"]))
    with pytest.raises(ProtocolError, match="does not match its SHA-256"):
        sync_payloads(payloads, TransportSink(Corrupting({}), windows=True), "C:\\A", windows=True, target="win1")
