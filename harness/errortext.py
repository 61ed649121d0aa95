"""The first meaningful error of a command's output, as one line for a verdict's reason.

Windows shells spread one error over several lines, and the last line is the least useful:

* cmd.exe: ``'x' is not recognized as an internal or external command,`` / ``operable program or
  batch file.`` is one sentence over two lines: quoted joined;
* PowerShell 5.1 error records (the ``ErrorView = NormalView`` layout of Windows PowerShell):
  ``<command> : <message>``, then ``At line:N char:M`` / ``At <script>:N char:M``, the echoed line
  ``+ ...``, the caret line ``+ ~~~``, and ``    + CategoryInfo ...`` / ``    + FullyQualifiedErrorId
  ...``: the message line is quoted, the position and category lines are skipped;
* over WinRM, PowerShell's error stream may arrive serialized (``#< CLIXML`` then ``<S S="Error">``
  elements with ``_x000D__x000A_`` line ends): it is decoded first.

The emulated host's "not modelled" notes are not errors (the verdict names those steps itself).
Anything else: the first non-blank line of stderr, else of stdout. Control characters never reach
the reason (it is one line), and it is clipped to ``MAX_REASON`` characters.
"""

from __future__ import annotations

import html
import re

MAX_REASON = 200
_CLIXML_ERROR = re.compile(r'<S S="Error">(.*?)</S>', re.DOTALL)
_CLIXML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")
_NOISE = re.compile(
    r"^\s*(?:At line:\d+ char:\d+|At .+:\d+ char:\d+|\+ |\+$|\+\s+~|\s*\+ (?:CategoryInfo|FullyQualifiedErrorId)\b"
    r"|atomiclab-emulated: '.*' is not modelled; no effect$)"
)
_CMD_NOT_RECOGNIZED = re.compile(r"is not recognized as an internal or external command,\s*$")


def decode_clixml(text: str) -> str:
    """The error-stream text of a ``#< CLIXML`` block (other text is returned unchanged)."""
    if not text.lstrip().startswith("#< CLIXML"):
        return text
    parts = [html.unescape(m.group(1)) for m in _CLIXML_ERROR.finditer(text)]
    joined = "".join(parts)
    return _CLIXML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), joined)


def _one_line(text: str) -> str:
    flat = "".join(c if c.isprintable() else " " for c in text)
    flat = " ".join(flat.split())
    return flat if len(flat) <= MAX_REASON else flat[: MAX_REASON - 1] + "…"


def first_error(stderr: str, stdout: str = "") -> str:
    """The first meaningful error line of a command's output ("" when there is none)."""
    for stream in (decode_clixml(stderr or ""), stdout or ""):
        lines = [ln.rstrip() for ln in stream.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
        for i, line in enumerate(lines):
            if not line.strip() or _NOISE.match(line):
                continue
            if _CMD_NOT_RECOGNIZED.search(line) and i + 1 < len(lines) and lines[i + 1].strip():
                return _one_line(f"{line.strip()} {lines[i + 1].strip()}")
            return _one_line(line)
    return ""
