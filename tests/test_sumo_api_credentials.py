"""harness.credentials.get_secret: environment first, then keyring; clear error naming what to set."""

from __future__ import annotations

import logging

import pytest

from harness.credentials import get_secret
from harness.errors import CredentialError


def test_environment_wins_over_keyring() -> None:
    calls: list[tuple[str, str]] = []

    def lookup(service: str, user: str) -> str | None:
        calls.append((service, user))
        return "from-keyring"

    assert get_secret("SUMO_ACCESS_KEY", environ={"SUMO_ACCESS_KEY": "from-env"}, keyring_lookup=lookup) == "from-env"
    assert calls == []


def test_keyring_used_when_env_missing_or_empty() -> None:
    seen: list[tuple[str, str]] = []

    def lookup(service: str, user: str) -> str | None:
        seen.append((service, user))
        return "kr-secret"

    assert get_secret("WINRM_PASSWORD", environ={"WINRM_PASSWORD": ""}, keyring_lookup=lookup) == "kr-secret"
    assert get_secret("WINRM_PASSWORD", service="lab", username="vagrant", environ={}, keyring_lookup=lookup) == "kr-secret"
    assert seen == [("atomiclab", "WINRM_PASSWORD"), ("lab", "vagrant")]


def test_missing_secret_names_variable_and_keyring_entry(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(CredentialError) as ei:
        get_secret("SUMO_ACCESS_KEY", username="me", environ={}, keyring_lookup=lambda s, u: None)
    msg = str(ei.value)
    assert "SUMO_ACCESS_KEY" in msg and "keyring set atomiclab me" in msg
    assert "\n" not in msg


def test_system_keyring_failure_is_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    import keyring
    from keyring.errors import NoKeyringError

    def boom(service: str, user: str) -> str:
        raise NoKeyringError("no backend")

    monkeypatch.setattr(keyring, "get_password", boom)
    monkeypatch.delenv("ATOMICLAB_TEST_SECRET", raising=False)
    with pytest.raises(CredentialError, match="ATOMICLAB_TEST_SECRET"):
        get_secret("ATOMICLAB_TEST_SECRET")


def test_system_keyring_value_is_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    import keyring

    monkeypatch.setattr(keyring, "get_password", lambda s, u: "stored" if (s, u) == ("atomiclab", "X_SECRET") else None)
    monkeypatch.delenv("X_SECRET", raising=False)
    assert get_secret("X_SECRET") == "stored"
