"""Issue 16, evidence you can trust: one run per report folder, verify sees every file and never
leaves the folder, manifests signed with HMAC-SHA256 or Ed25519, events.jsonl 0600 and streamed.

Each test reproduces a finding (it failed before the fix): two runs into one --out cross-linked
their evidence and verify said OK; verify ignored *.tmp files, nested manifests, symlinked folders
and FIFOs and followed symlinks out of the folder; a consistent edit of results.json plus its
manifest digest passed; evidence/events.jsonl was 0644 while the other report files are 0600.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
from pathlib import Path

import pytest
from test_report_files import sample_run

from harness.cli import main
from harness.errors import ReportError
from harness.reporting.base import ReportDirectory
from harness.reporting.evidence import verify_manifest, write_manifest
from harness.reporting.results_json import ResultsJsonReporter
from harness.reporting.signing import HmacSigner, SignatureStatus, Verifier, signer_from_secret

HMAC_KEY = "0123456789abcdef-test-hmac-key"


def _published(out: Path, signer=None) -> Path:  # type: ignore[no-untyped-def]
    run, sink = sample_run(out)
    sink.signer = signer
    sink.publish(run.finished())
    sink.close()
    return out


def test_a_second_run_into_the_same_folder_is_refused(tmp_path: Path) -> None:
    out = _published(tmp_path / "out")
    with pytest.raises(ReportError, match="report folder is not empty"):
        ReportDirectory(out, [ResultsJsonReporter()])
    assert verify_manifest(out).ok


def test_two_runs_starting_together_on_one_empty_folder_cannot_both_write(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = ReportDirectory(out, [ResultsJsonReporter()])
    try:
        with pytest.raises(ReportError, match="another atomiclab run is writing"):
            ReportDirectory(out, [ResultsJsonReporter()])
    finally:
        first.close()


def test_cli_refuses_a_non_empty_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "e.jsonl"
    events.write_text(json.dumps({"EventID": 1, "Channel": "Security", "@timestamp": 1700000000}) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("{}")
    code = main(["evaluate", "--telemetry", str(events), "--out", str(out), "--history", str(tmp_path / "h.sqlite"),
                 "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not empty" in err and "--out" in err


@pytest.mark.parametrize("name", ["x.tmp", ".results.json.abc.tmp", "evidence/manifest.json", "deep/er/manifest.json"])
def test_verify_names_added_tmp_files_and_nested_manifests(tmp_path: Path, name: str) -> None:
    out = _published(tmp_path / "out")
    (out / name).parent.mkdir(parents=True, exist_ok=True)
    (out / name).write_text("{}")
    rep = verify_manifest(out)
    assert rep.unlisted == (name,) and not rep.ok


def test_verify_never_follows_a_symlink_out_of_the_folder(tmp_path: Path) -> None:
    secret = tmp_path / "outside"
    secret.mkdir()
    (secret / "passwd").write_text("root:x:0:0\n")
    out = _published(tmp_path / "out")
    (out / "evidence" / "linked").symlink_to(secret, target_is_directory=True)
    (out / "junit-link.xml").symlink_to(secret / "passwd")
    rep = verify_manifest(out)
    assert dict(rep.special) == {"evidence/linked": "symlink", "junit-link.xml": "symlink"}
    assert not rep.unlisted and not rep.ok  # nothing behind the links was read or listed


def test_a_listed_file_swapped_for_a_symlink_is_not_read(tmp_path: Path) -> None:
    out = _published(tmp_path / "out")
    target = out / "junit.xml"
    (tmp_path / "copy.xml").write_bytes(target.read_bytes())  # same content: a digest would match
    target.unlink()
    target.symlink_to(tmp_path / "copy.xml")
    rep = verify_manifest(out)
    assert ("junit.xml", "symlink") in rep.special and not rep.ok


def test_verify_names_a_fifo_without_blocking(tmp_path: Path) -> None:
    out = _published(tmp_path / "out")
    os.mkfifo(out / "evidence" / "pipe")
    done: list[object] = []
    worker = threading.Thread(target=lambda: done.append(verify_manifest(out)), daemon=True)
    worker.start()
    worker.join(10)
    assert done, "verify blocked on a FIFO"
    rep = done[0]
    assert rep.special == (("evidence/pipe", "FIFO"),) and not rep.ok  # type: ignore[attr-defined]


def test_cli_verify_lists_special_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _published(tmp_path / "out")
    os.mkfifo(out / "p")
    assert main(["verify", str(out)]) == 1
    assert "SPECIAL  p (FIFO" in capsys.readouterr().out


def _forge(out: Path) -> None:
    """The attack signing defeats: edit results.json and put its new digest into the manifest."""
    results = out / "results.json"
    data = json.loads(results.read_text())
    data["tests"][1]["status"] = "passed"
    results.write_text(json.dumps(data))
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"]["results.json"] = hashlib.sha256(results.read_bytes()).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest))


def test_without_signing_a_consistent_forgery_verifies(tmp_path: Path) -> None:
    out = _published(tmp_path / "out")
    _forge(out)
    assert verify_manifest(out).ok  # why signing exists


def test_hmac_signed_manifest_detects_a_consistent_forgery(tmp_path: Path) -> None:
    signer = signer_from_secret(HMAC_KEY, "K")
    assert isinstance(signer, HmacSigner)
    out = _published(tmp_path / "out", signer)
    assert verify_manifest(out, Verifier(signer=signer)).signature is SignatureStatus.VALID
    assert verify_manifest(out).signature is SignatureStatus.NOT_CHECKED and verify_manifest(out).ok
    _forge(out)
    rep = verify_manifest(out, Verifier(signer=signer))
    assert rep.signature is SignatureStatus.INVALID and not rep.ok and not rep.changed
    other = signer_from_secret("another-key-of-enough-length", "K2")
    write_manifest(out, signer=other)  # re-signed by someone without our key
    assert verify_manifest(out, Verifier(signer=signer)).signature is SignatureStatus.INVALID


def _ed25519_pems() -> tuple[str, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def test_cli_signs_with_ed25519_from_the_environment_and_verifies_with_the_public_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    private, public = _ed25519_pems()
    monkeypatch.setenv("ATOMICLAB_TEST_SIGN_KEY", private)
    pub = tmp_path / "pub.pem"
    pub.write_bytes(public)
    events = tmp_path / "e.jsonl"
    events.write_text(json.dumps({"EventID": 1, "Channel": "Security", "@timestamp": 1700000000}) + "\n")
    out = tmp_path / "out"
    code = main(["evaluate", "--telemetry", str(events), "--out", str(out), "--history", str(tmp_path / "h.sqlite"),
                 "--no-progress", "--sign-key", "ATOMICLAB_TEST_SIGN_KEY"])
    assert code in (0, 1)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["signature"]["algorithm"] == "ed25519"
    assert private not in (out / "results.json").read_text()  # the key never reaches a report
    capsys.readouterr()
    assert main(["verify", str(out), "--public-key", str(pub)]) == 0
    assert "SIGNATURE valid" in capsys.readouterr().out
    assert main(["verify", str(out), "--sign-key", "ATOMICLAB_TEST_SIGN_KEY"]) == 0
    _forge(out)
    assert main(["verify", str(out), "--public-key", str(pub)]) == 1
    assert "SIGNATURE INVALID" in capsys.readouterr().out


def test_a_missing_or_weak_sign_key_fails_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ATOMICLAB_NO_SUCH_KEY", raising=False)
    monkeypatch.setattr("harness.credentials._system_keyring", lambda service, user: None)
    events = tmp_path / "e.jsonl"
    events.write_text("{}\n")
    args = ["evaluate", "--telemetry", str(events), "--history", str(tmp_path / "h.sqlite"), "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "o1"), "--sign-key", "ATOMICLAB_NO_SUCH_KEY"]) == 2
    assert "ATOMICLAB_NO_SUCH_KEY" in capsys.readouterr().err and not (tmp_path / "o1").exists()
    monkeypatch.setenv("ATOMICLAB_WEAK", "short")
    assert main([*args, "--out", str(tmp_path / "o2"), "--sign-key", "ATOMICLAB_WEAK"]) == 2
    err = capsys.readouterr().err
    assert "at least 16 bytes" in err and "short" not in err.replace("ATOMICLAB_WEAK", "")


def test_an_unsigned_manifest_fails_verify_when_a_key_is_given(tmp_path: Path) -> None:
    out = _published(tmp_path / "out")
    rep = verify_manifest(out, Verifier(signer=signer_from_secret(HMAC_KEY, "K")))
    assert rep.signature is SignatureStatus.UNSIGNED and not rep.ok


def test_events_jsonl_is_0600_like_the_other_report_files(tmp_path: Path) -> None:
    out = _published(tmp_path / "out")
    for name in ("evidence/events.jsonl", "results.json", "manifest.json"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600, name
