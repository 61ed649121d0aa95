"""`atomiclab run|evaluate|verify|history --help`: a plain one-paragraph description (no RST markup)."""

from __future__ import annotations

import pytest

from harness.cli import main


@pytest.mark.parametrize("command", ["run", "evaluate", "verify", "history"])
def test_help_description_is_plain(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    description = text.split("\n\n")[1]  # usage, description, options
    assert description.strip() and "``" not in text and "options:" not in description
    assert len(description.split()) > 12
