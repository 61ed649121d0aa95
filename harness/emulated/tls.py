"""TLS material for the emulated host's WinRM HTTPS listener.

At every start the emulated host makes a fresh throw-away CA and a server certificate signed by it
(SAN ``IP:127.0.0.1`` and ``DNS:localhost``), writes them as PEM into a private directory and hands
the CA path to clients, which validate the chain like they would a lab's exported WinRM certificate.
Verification is never switched off: a client that trusts another CA fails the handshake.

Contract: :func:`generate_tls_material` writes ``ca.pem`` (public), ``server.pem`` (public) and
``server-key.pem`` (mode 0600) into ``directory`` and returns their paths together with the DER
bytes of the server certificate (the NTLM acceptor derives the ``tls-server-end-point`` channel
binding from it).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness.errors import EmulationError
from harness.model import utcnow

#: How long the generated certificates are valid; the emulated host lives for one run.
_VALIDITY = dt.timedelta(days=2)
#: Clock skew tolerated by clients whose clock is slightly behind.
_BACKDATE = dt.timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """Paths of the generated PEM files and the server certificate in DER form."""

    ca_cert_path: Path
    cert_path: Path
    key_path: Path
    cert_der: bytes

    def server_context(self) -> ssl.SSLContext:
        """A server-side TLS context (TLS 1.2+) loaded with the generated certificate and key."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.cert_path), str(self.key_path))
        return ctx


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "atomiclab emulated host"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_private(path: Path, data: bytes) -> None:
    # Created with 0600 from the start so the key is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def generate_tls_material(directory: Path, *, hostname: str = "localhost") -> TlsMaterial:
    """Create a CA and a server certificate for 127.0.0.1/``hostname`` in ``directory``.

    Raises :class:`EmulationError` when the directory cannot be written.
    """
    now = utcnow()
    not_before, not_after = now - _BACKDATE, now + _VALIDITY

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("atomiclab emulated WinRM CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")), x509.DNSName(hostname)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hostname))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    ca_path = directory / "ca.pem"
    cert_path = directory / "server.pem"
    key_path = directory / "server-key.pem"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_private(
            key_path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
    except OSError as exc:
        raise EmulationError(
            f"cannot write TLS material to {directory}: {exc.strerror or exc}",
            hint="check the directory is writable",
        ) from exc
    return TlsMaterial(
        ca_cert_path=ca_path,
        cert_path=cert_path,
        key_path=key_path,
        cert_der=cert.public_bytes(serialization.Encoding.DER),
    )


__all__ = ["TlsMaterial", "generate_tls_material"]
