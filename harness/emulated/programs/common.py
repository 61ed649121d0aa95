"""Small helpers shared by the program models (output with CRLF, the "not modelled" note)."""

from __future__ import annotations

from harness.emulated.tools import Ctx, not_modelled_note


def out(ctx: Ctx, text: str) -> None:
    ctx.out.write(text.replace("\r\n", "\n").replace("\n", "\r\n"))


def err(ctx: Ctx, text: str) -> None:
    ctx.err.write(text.replace("\r\n", "\n").replace("\n", "\r\n"))


def not_modelled(ctx: Ctx, argv: list[str], words: int = 2) -> int:
    """Say that this form of the program is not modelled (its first ``words`` words) and succeed."""
    err(ctx, not_modelled_note(ctx, " ".join(argv[:words])))
    return 0
