"""Unit tests of the emulated WinRM pieces below HTTP: SOAP parsing/faults, TLS material, auth framing."""

from __future__ import annotations

import base64
import stat
import uuid
from pathlib import Path

import pytest
import spnego
from cryptography import x509
from cryptography.x509.oid import ExtensionOID
from pypsrp.encryption import WinRMEncryption
from pypsrp.wsman import WSMan

from harness.emulated.tls import generate_tls_material
from harness.emulated.wsman_auth import (
    ConnectionAuth,
    Credentials,
    MessageFramingError,
    NtlmUserFile,
    StepOutcome,
)
from harness.emulated.wsman_soap import (
    Action,
    FaultKind,
    WsmanFault,
    fault_envelope,
    parse_duration,
    parse_request,
    peek_message_id,
)

SOAP = "http://www.w3.org/2003/05/soap-envelope"


def envelope(header_extra: str = "", body: str = "", *, action: str = Action.RECEIVE.value) -> bytes:
    mid = f"uuid:{uuid.uuid4()}"
    return (
        f"<s:Envelope xmlns:s='{SOAP}' xmlns:a='http://schemas.xmlsoap.org/ws/2004/08/addressing' "
        f"xmlns:w='http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd'><s:Header>"
        f"<a:Action>{action}</a:Action><a:MessageID>{mid}</a:MessageID>{header_extra}"
        f"</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("PT20S", 20.0), ("PT20.500S", 20.5), ("PT1M30S", 90.0), ("P1DT1H", 90000.0), ("PT0S", 0.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "P", "PT", "20", "PT-1S", "PTxS"])
def test_parse_duration_rejects_garbage(text: str) -> None:
    with pytest.raises(WsmanFault) as info:
        parse_duration(text)
    assert info.value.kind is FaultKind.INVALID_PARAMETER


def test_parse_request_reads_headers_selectors_and_options() -> None:
    data = envelope(
        "<w:ResourceURI>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd</w:ResourceURI>"
        "<w:OperationTimeout>PT7S</w:OperationTimeout><w:MaxEnvelopeSize>9000</w:MaxEnvelopeSize>"
        "<w:SelectorSet><w:Selector Name='ShellId'>ABC</w:Selector></w:SelectorSet>"
        "<w:OptionSet><w:Option Name='WINRS_CODEPAGE'>65001</w:Option></w:OptionSet>",
        "<x/>",
    )
    req = parse_request(data)
    assert req.known_action() is Action.RECEIVE
    assert (req.operation_timeout_s, req.max_envelope_size) == (7.0, 9000)
    assert req.selectors == {"ShellId": "ABC"} and req.options == {"WINRS_CODEPAGE": "65001"}
    assert req.body is not None and req.body.tag == "x"
    assert peek_message_id(data) == req.message_id


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"", FaultKind.SCHEMA_VALIDATION),
        (b"<unclosed", FaultKind.SCHEMA_VALIDATION),
        (b"<a/>", FaultKind.SCHEMA_VALIDATION),
        (f"<s:Envelope xmlns:s='{SOAP}'><s:Body/></s:Envelope>".encode(), FaultKind.SCHEMA_VALIDATION),
        (
            envelope().replace(b"<a:MessageID>", b"<a:Other>").replace(b"</a:MessageID>", b"</a:Other>"),
            FaultKind.SCHEMA_VALIDATION,
        ),
        (envelope("<w:MaxEnvelopeSize>100</w:MaxEnvelopeSize>"), FaultKind.ENCODING_LIMIT),
        (envelope("<w:MaxEnvelopeSize>big</w:MaxEnvelopeSize>"), FaultKind.INVALID_PARAMETER),
        (b'<!DOCTYPE x SYSTEM "file:///etc/passwd"><x/>', FaultKind.SCHEMA_VALIDATION),
    ],
    ids=["empty", "unclosed", "not-soap", "no-header", "no-message-id", "tiny-envelope", "bad-size", "doctype"],
)
def test_parse_request_faults(data: bytes, kind: FaultKind) -> None:
    with pytest.raises(WsmanFault) as info:
        parse_request(data)
    assert info.value.kind is kind


def test_external_entities_are_never_resolved(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    # The DOCTYPE is refused before any parsing, so nothing can be fetched or expanded.
    data = f'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY e SYSTEM "file://{secret}">]>'.encode() + envelope(
        body="<x>&e;</x>"
    )
    with pytest.raises(WsmanFault) as info:
        parse_request(data)
    assert "TOPSECRET" not in info.value.reason


def test_unknown_action_is_action_not_supported() -> None:
    req = parse_request(envelope(action="http://example.invalid/Frobnicate"))
    with pytest.raises(WsmanFault) as info:
        req.known_action()
    assert info.value.kind is FaultKind.ACTION_NOT_SUPPORTED


def test_fault_envelope_is_read_by_pypsrp_like_a_windows_fault() -> None:
    xml = fault_envelope(WsmanFault(FaultKind.TIMED_OUT), "uuid:REL", machine="WIN-X")
    fault = WSMan._parse_wsman_fault(xml.decode())
    assert fault.code == 2150858793
    assert fault.machine == "WIN-X"
    assert fault.reason.startswith("The WS-Management service cannot complete the operation")
    assert b"<a:RelatesTo>uuid:REL</a:RelatesTo>" in xml
    assert b"http://schemas.dmtf.org/wbem/wsman/1/wsman/fault" in xml


def test_action_short_names() -> None:
    assert [a.short for a in Action] == ["Create", "Delete", "Get", "Command", "Receive", "Send", "Signal"]
    assert Action.RECEIVE.response.endswith("/ReceiveResponse")


def test_tls_material_has_san_ca_chain_and_private_key(tmp_path: Path) -> None:
    mat = generate_tls_material(tmp_path / "tls")
    ca = x509.load_pem_x509_certificate(mat.ca_cert_path.read_bytes())
    cert = x509.load_der_x509_certificate(mat.cert_der)
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert ca.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value.ca
    assert stat.S_IMODE(mat.key_path.stat().st_mode) == 0o600
    mat.server_context()  # the key and certificate match


def test_ntlm_user_file_is_private_and_lists_local_domains(tmp_path: Path) -> None:
    f = NtlmUserFile(tmp_path / "users", Credentials("lab", "pw1"), domains=("WIN-A", "CORP", ""))
    assert stat.S_IMODE(f.path.stat().st_mode) == 0o600
    assert f.path.read_text().splitlines() == [":lab:pw1", ".:lab:pw1", "WIN-A:lab:pw1", "CORP:lab:pw1"]
    assert "pw1" not in repr(Credentials("lab", "pw1"))
    with pytest.raises(ValueError):
        NtlmUserFile(tmp_path / "bad", Credentials("a:b", "x"), domains=())
    f.remove()
    assert not f.path.exists()


def _handshake(tmp_path: Path, password: str) -> tuple[ConnectionAuth, object, StepOutcome]:
    creds = Credentials("lab", "right-password")
    auth = ConnectionAuth(user_file=NtlmUserFile(tmp_path / "u", creds, domains=()), credentials=creds)
    client = spnego.client(
        "lab", password, hostname="localhost", protocol="ntlm", options=spnego.NegotiateOptions.wrapping_winrm
    )
    token = client.step()
    outcome = StepOutcome.CONTINUE
    while token is not None:
        result = auth.step("Negotiate " + base64.b64encode(token).decode())
        outcome = result.outcome
        if outcome is not StepOutcome.CONTINUE:
            break
        token = client.step(result.out_token)
    return auth, client, outcome


def test_ntlm_handshake_and_message_sealing_round_trip(tmp_path: Path) -> None:
    auth, client, outcome = _handshake(tmp_path, "right-password")
    assert outcome is StepOutcome.COMPLETE and auth.user == "lab"
    enc = WinRMEncryption(client, WinRMEncryption.SPNEGO)
    ctype, payload = enc.wrap_message(b"<request/>")
    full_type = f'{ctype};protocol="{WinRMEncryption.SPNEGO}";boundary="Encrypted Boundary"'
    assert auth.unseal(payload, full_type) == b"<request/>"
    assert enc.unwrap_message(auth.seal(b"<reply/>"), "Encrypted Boundary") == b"<reply/>"
    with pytest.raises(MessageFramingError):
        auth.unseal(payload[:40], full_type)


def test_ntlm_handshake_with_wrong_password_is_rejected(tmp_path: Path) -> None:
    auth, _, outcome = _handshake(tmp_path, "wrong")
    assert outcome is StepOutcome.REJECTED and not auth.authenticated


def test_garbage_authorization_is_rejected(tmp_path: Path) -> None:
    creds = Credentials("lab", "pw")
    auth = ConnectionAuth(user_file=NtlmUserFile(tmp_path / "u", creds, domains=()), credentials=creds)
    for header in ("Negotiate !!!", "Digest abc", "Negotiate " + base64.b64encode(b"junk").decode()):
        assert auth.step(header).outcome is StepOutcome.REJECTED
    assert auth.step("Basic " + base64.b64encode(b"lab:pw").decode()).outcome is StepOutcome.REJECTED


@pytest.mark.parametrize("kwargs", [{"username": "a:b"}, {"username": ""}, {"username": "x" * 21}, {"port": 70000}])
def test_server_config_rejects_bad_values_with_one_clear_error(kwargs: dict[str, object]) -> None:
    from harness.emulated.wsman import ServerConfig
    from harness.errors import EmulationError

    with pytest.raises(EmulationError):
        ServerConfig(**kwargs)  # type: ignore[arg-type]
