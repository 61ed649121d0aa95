"""Hostile text made safe to show: terminal control characters escaped, XML-invalid characters out.

Event fields, atomic names and rule output are attacker-controlled: an ESC sequence in a command
line can repaint or hide what a terminal shows, a lone UTF-16 surrogate cannot be encoded at all,
and a control character makes XML 1.0 invalid. Every console line and every XML text atomiclab
writes goes through one of these functions. They are pure and cheap (``str.translate``).

* ``for_terminal(text)``: C0 controls (``\\t`` and ``\\n`` kept only when asked), DEL, C1 controls,
  lone surrogates and the bidirectional overrides (Trojan Source, CVE-2021-42574) become visible
  ``\\xNN`` / ``\\uNNNN`` text.
* ``for_json_line(line)``: the same characters as JSON ``\\uNNNN`` escapes, for JSON text printed to
  a console (``json.dumps(..., ensure_ascii=False)`` leaves C1 and bidi controls raw).
* ``storable(text)``: lone surrogates as U+FFFD, for what must be stored as UTF-8 (SQLite).
* ``for_xml(text)``: characters XML 1.0 cannot hold (C0 but tab/LF/CR, surrogates, U+FFFE/U+FFFF)
  plus DEL/C1 and ESC-like controls become visible ``\\xNN`` / ``\\uNNNN`` text.
"""

from __future__ import annotations

from types import MappingProxyType

_BIDI = (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)
_CONTROLS = (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), *range(0xD800, 0xE000), *_BIDI)


def _visible(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _table(codes: tuple[int, ...], keep: str, *, json_style: bool = False) -> MappingProxyType[int, str]:
    kept = {ord(c) for c in keep}
    return MappingProxyType(
        {c: f"\\u{c:04x}" if json_style else _visible(c) for c in codes if c not in kept}
    )


_TERMINAL = _table(_CONTROLS, "")
_TERMINAL_MULTILINE = _table(_CONTROLS, "\n\t")
_JSON = _table((0x7F, *range(0x80, 0xA0), *range(0xD800, 0xE000), *_BIDI), "", json_style=True)
_XML = _table((*_CONTROLS, 0xFFFE, 0xFFFF), "\n\t")


def for_terminal(text: str, *, multiline: bool = False) -> str:
    """``text`` with every terminal control character shown as ``\\xNN``/``\\uNNNN`` (``multiline``
    keeps newlines and tabs)."""
    return text.translate(_TERMINAL_MULTILINE if multiline else _TERMINAL)


def for_json_line(line: str) -> str:
    """A JSON text printed to a console: DEL, C1, surrogates and bidi controls as ``\\uNNNN``
    (the JSON stays equal once decoded, but lone surrogates become their escape, still valid JSON)."""
    return line.translate(_JSON)


def for_xml(text: str) -> str:
    """``text`` that XML 1.0 can hold and a terminal can show: controls as ``\\xNN``/``\\uNNNN``
    (newlines and tabs kept; CR shown, as XML would normalize it away)."""
    return text.translate(_XML)


def storable(text: str) -> str:
    """``text`` that UTF-8 can encode: each lone surrogate (a YAML ``"\\ud800"``, say) as U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


__all__ = ["for_json_line", "for_terminal", "for_xml", "storable"]
