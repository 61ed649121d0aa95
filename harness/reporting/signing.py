"""Optional signatures over ``manifest.json``: HMAC-SHA256 or Ed25519 (``cryptography``).

The key is a secret named by ``--sign-key NAME``: ``$NAME`` or the keyring entry ``atomiclab/NAME``
(``credentials.get_secret``), never a command-line value. Its text decides the algorithm: a PEM
Ed25519 private key (``-----BEGIN PRIVATE KEY-----``, PKCS#8) signs with Ed25519, anything else is
an HMAC-SHA256 key (at least 16 bytes). ``verify`` checks with the same secret, or for Ed25519 with
the public key alone (``--public-key FILE``: a public key is no secret).

What is signed: the manifest's ``algorithm`` and ``files`` as canonical JSON (sorted keys, no
spaces), so every file digest and every file name is covered and the ``signature`` member can sit
in the same file: ``{"algorithm": "hmac-sha256" | "ed25519", "value": BASE64}``. Without the key an
edit of results.json plus its manifest digest can no longer be made to verify.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from harness.credentials import SecretLookup, get_secret
from harness.errors import CredentialError, ReportError

HMAC_SHA256 = "hmac-sha256"
ED25519 = "ed25519"
MIN_HMAC_KEY_BYTES = 16
_PEM_PRIVATE = "-----BEGIN PRIVATE KEY-----"


class ManifestSigner(Protocol):
    """Signs the canonical bytes of a manifest."""

    @property
    def algorithm(self) -> str: ...

    def sign(self, data: bytes) -> bytes: ...


def signed_bytes(manifest: Mapping[str, Any]) -> bytes:
    """The canonical bytes a signature covers: ``algorithm`` and ``files``, sorted, compact."""
    body = {"algorithm": manifest.get("algorithm"), "files": manifest.get("files")}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


@dataclass(frozen=True)
class HmacSigner:
    key: bytes

    @property
    def algorithm(self) -> str:
        return HMAC_SHA256

    def sign(self, data: bytes) -> bytes:
        return hmac.new(self.key, data, hashlib.sha256).digest()


@dataclass(frozen=True)
class Ed25519Signer:
    key: Any  # cryptography Ed25519PrivateKey

    @property
    def algorithm(self) -> str:
        return ED25519

    def sign(self, data: bytes) -> bytes:
        return bytes(self.key.sign(data))

    def public_key(self) -> Any:
        return self.key.public_key()


def signer_from_secret(secret: str, name: str) -> HmacSigner | Ed25519Signer:
    """The signer a secret's text describes. ReportError naming ``name`` (never the secret)."""
    if _PEM_PRIVATE in secret:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            key = load_pem_private_key(secret.strip().encode("ascii"), password=None)
        except (ValueError, TypeError, UnicodeEncodeError) as exc:
            raise ReportError(f"signing key {name}: not a readable unencrypted PEM private key",
                              hint="use `openssl genpkey -algorithm ed25519`") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise ReportError(f"signing key {name}: a PEM key that is not Ed25519",
                              hint="use an Ed25519 key, or a random HMAC secret")
        return Ed25519Signer(key)
    raw = secret.encode("utf-8", "surrogatepass")
    if len(raw) < MIN_HMAC_KEY_BYTES:
        raise ReportError(f"signing key {name}: an HMAC key needs at least {MIN_HMAC_KEY_BYTES} bytes",
                          hint="e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`")
    return HmacSigner(raw)


def load_signer(name: str, lookup: SecretLookup = get_secret) -> HmacSigner | Ed25519Signer:
    """The signer of the secret ``name`` (environment, then keyring). A missing secret is a
    ReportError saying where to put it (checked before a run starts)."""
    try:
        secret = lookup(name)
    except CredentialError as exc:
        raise ReportError(f"--sign-key {name}: {exc.message}", hint=exc.hint) from None
    return signer_from_secret(secret, name)


def sign_manifest(manifest: dict[str, Any], signer: ManifestSigner) -> dict[str, Any]:
    """``manifest`` with its ``signature`` member set."""
    value = base64.b64encode(signer.sign(signed_bytes(manifest))).decode("ascii")
    return {**manifest, "signature": {"algorithm": signer.algorithm, "value": value}}


class SignatureStatus(enum.Enum):
    VALID = "valid"
    INVALID = "invalid"  # wrong key, or the manifest changed after signing
    UNSIGNED = "unsigned"  # a key was given but the manifest carries no signature
    NOT_CHECKED = "not checked"  # signed, but no key was given
    ABSENT = "absent"  # neither a signature nor a key


@dataclass(frozen=True)
class Verifier:
    """What ``verify`` checks a signature with: a signer's secret or an Ed25519 public key."""

    signer: HmacSigner | Ed25519Signer | None = None
    public_key: Any = None  # cryptography Ed25519PublicKey

    @classmethod
    def from_public_pem(cls, pem: bytes, source: str) -> Verifier:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        try:
            key = load_pem_public_key(pem)
        except (ValueError, TypeError) as exc:
            raise ReportError(f"{source}: not a PEM public key",
                              hint="export it with `openssl pkey -pubout`") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise ReportError(f"{source}: not an Ed25519 public key")
        return cls(public_key=key)

    def check(self, manifest: Mapping[str, Any]) -> SignatureStatus:
        sig = manifest.get("signature")
        keyless = self.signer is None and self.public_key is None
        if sig is None:
            return SignatureStatus.ABSENT if keyless else SignatureStatus.UNSIGNED
        if keyless:
            return SignatureStatus.NOT_CHECKED
        if not isinstance(sig, Mapping) or not isinstance(sig.get("value"), str):
            return SignatureStatus.INVALID
        try:
            value = base64.b64decode(sig["value"], validate=True)
        except ValueError:
            return SignatureStatus.INVALID
        data = signed_bytes(manifest)
        algorithm = sig.get("algorithm")
        if isinstance(self.signer, HmacSigner):
            ok = algorithm == HMAC_SHA256 and hmac.compare_digest(self.signer.sign(data), value)
            return SignatureStatus.VALID if ok else SignatureStatus.INVALID
        public = self.public_key if self.public_key is not None else self.signer.public_key()  # type: ignore[union-attr]
        if algorithm != ED25519:
            return SignatureStatus.INVALID
        from cryptography.exceptions import InvalidSignature

        try:
            public.verify(value, data)
        except InvalidSignature:
            return SignatureStatus.INVALID
        return SignatureStatus.VALID


__all__ = [
    "ED25519",
    "HMAC_SHA256",
    "Ed25519Signer",
    "HmacSigner",
    "ManifestSigner",
    "SignatureStatus",
    "Verifier",
    "load_signer",
    "sign_manifest",
    "signed_bytes",
    "signer_from_secret",
]
