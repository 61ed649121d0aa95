"""Secrets for atomiclab: from the environment first, then the OS keyring.

Contract: ``get_secret(env_var)`` returns the secret or raises ``CredentialError`` whose message
names the environment variable and the keyring entry to set. The secret itself never appears in
an exception, a log record or a return value other than the one from ``get_secret``. Nothing is
cached at module level: callers keep the value only as long as they need it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping

from harness.errors import CredentialError

log = logging.getLogger(__name__)

#: Looks a secret up in a keyring: (service, username) -> secret or None. Injected for tests.
KeyringLookup = Callable[[str, str], "str | None"]

#: Looks a secret up by environment-variable name; ``get_secret`` is the default everywhere.
SecretLookup = Callable[[str], str]


def _system_keyring(service: str, username: str) -> str | None:
    """The OS keyring via the ``keyring`` package; any backend failure counts as "not there"."""
    try:
        import keyring
        from keyring.errors import KeyringError
    except ImportError:  # keyring is a declared dependency; be explicit if an install lacks it
        return None
    try:
        value = keyring.get_password(service, username)
    except KeyringError as exc:
        # No usable backend (headless CI, locked store): fall through to the clear error below.
        log.debug("keyring lookup %s/%s failed: %s", service, username, type(exc).__name__)
        return None
    except Exception as exc:  # third-party backends raise arbitrary errors; never crash on lookup
        log.debug("keyring backend error for %s/%s: %s", service, username, type(exc).__name__)
        return None
    return value if isinstance(value, str) else None


def get_secret(
    env_var: str,
    *,
    service: str = "atomiclab",
    username: str | None = None,
    environ: Mapping[str, str] | None = None,
    keyring_lookup: KeyringLookup | None = None,
) -> str:
    """The secret named ``env_var``: ``$env_var`` if set and non-empty, else keyring
    ``(service, username or env_var)``.

    ``environ`` and ``keyring_lookup`` default to ``os.environ`` and the system keyring; tests pass
    their own. Raises ``CredentialError`` naming the variable and the keyring entry when neither
    source has a value.
    """
    env = os.environ if environ is None else environ
    value = env.get(env_var)
    if value:
        return value
    user = username or env_var
    lookup = _system_keyring if keyring_lookup is None else keyring_lookup
    stored = lookup(service, user)
    if stored:
        return stored
    raise CredentialError(
        f"secret {env_var} is not set",
        hint=(
            f"export {env_var}=... or store it with "
            f"`keyring set {service} {user}`; it is never read from a command line"
        ),
    )


__all__ = ["KeyringLookup", "SecretLookup", "get_secret"]
