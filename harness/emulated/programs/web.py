"""Programs that download: curl.exe and certutil.exe, on a lab host without internet access.

A lab host resolves only itself and localhost (``HostApi.resolve_host``); a public name fails name
resolution, and these programs report that the way they do on Windows Server 2022:
- curl.exe (curl 7.x/8.x shipped in System32; curl's documented exit code 6, "Couldn't resolve
  host", https://curl.se/libcurl/c/libcurl-errors.html; the message is curl's ``curl: (6) Could not
  resolve host: NAME``; ``-s`` silences it unless ``-S`` is given, as curl's manual says).
- certutil -urlcache (WinHTTP error 12007 ERROR_WINHTTP_NAME_NOT_RESOLVED, HRESULT 0x80072ee7,
  https://learn.microsoft.com/windows/win32/winhttp/error-messages; certutil prints
  ``CertUtil: -URLCache command FAILED: 0x80072ee7 (WinHttp: 12007 ERROR_WINHTTP_NAME_NOT_RESOLVED)``
  and the message text, exit code = the HRESULT).
- certutil -encode / -decode (base64 with the CERTIFICATE armour, 64-column lines; "Input Length",
  "Output Length", "command completed successfully" as certutil prints them).
Uploads, local targets and every other form are not modelled.
"""

from __future__ import annotations

import base64
import re

from harness.emulated.filesystem import FsError, normalize
from harness.emulated.programs.common import err, not_modelled, out
from harness.emulated.tools import Ctx, ProgramProfile

_URL_HOST = re.compile(r"^(?:[a-z][a-z0-9+.-]*://)?(?:[^@/]*@)?([^/:?#\s]+)", re.IGNORECASE)
_CURL_VALUE_OPTS = {
    "-o", "--output", "-A", "--user-agent", "-H", "--header", "-m", "--max-time", "-X", "--request", "-e",
    "--referer", "-u", "--user", "-x", "--proxy", "--connect-timeout", "-w", "--write-out", "-b", "--cookie",
    "-c", "--cookie-jar", "--retry",
}  # fmt: skip
_CURL_UPLOAD_OPTS = {"-T", "--upload-file", "-F", "--form", "-d", "--data", "--data-binary", "--data-raw"}


def host_of(url: str) -> str:
    m = _URL_HOST.match(url.strip())
    return m.group(1) if m else ""


def _unresolvable(ctx: Ctx, url: str) -> str | None:
    host = host_of(url)
    if not host or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", host) or ctx.host.resolve_host(host) is not None:
        return None
    return host


def curl(ctx: Ctx, argv: list[str], profile: ProgramProfile) -> int:
    args = argv[1:]
    urls: list[str] = []
    silent = show_errors = False
    i = 0
    while i < len(args):
        a = args[i]
        if a in _CURL_UPLOAD_OPTS:
            return not_modelled(ctx, [argv[0], a])
        if a in _CURL_VALUE_OPTS:
            i += 2
            continue
        if a.startswith("--"):
            if a in ("--silent",):
                silent = True
            elif a == "--show-error":
                show_errors = True
        elif a.startswith("-") and len(a) > 1:
            # Short options may be combined (-sSL); one taking a value takes the rest of the word
            # (-m3) or, at the end of the word, the next word (-o FILE).
            for k, letter in enumerate(a[1:]):
                if letter in "TFd":
                    return not_modelled(ctx, [argv[0], "-" + letter])
                silent = silent or letter == "s"
                show_errors = show_errors or letter == "S"
                if letter in "oAHmXeuxwbc":
                    if k == len(a) - 2:
                        i += 1
                    break
        else:
            urls.append(a)
        i += 1
    if not urls:
        return not_modelled(ctx, argv, words=1)
    host = _unresolvable(ctx, urls[0])
    if host is None:
        return not_modelled(ctx, [argv[0], "to a reachable address"])
    if not silent or show_errors:
        err(ctx, f"curl: (6) Could not resolve host: {host}\n")
    return 6


def certutil(ctx: Ctx, argv: list[str], profile: ProgramProfile) -> int:
    args = [a for a in argv[1:]]
    verbs = [a.lower() for a in args if a.startswith(("-", "/"))]
    rest = [a for a in args if not a.startswith(("-", "/"))]
    if "-urlcache" in verbs and rest:
        host = _unresolvable(ctx, rest[0])
        if host is None:
            return not_modelled(ctx, [argv[0], "-urlcache to a reachable address"])
        # certutil writes its verdict lines to standard output.
        out(ctx, "CertUtil: -URLCache command FAILED: 0x80072ee7 (WinHttp: 12007 ERROR_WINHTTP_NAME_NOT_RESOLVED)\n"
                 "CertUtil: The server name or address could not be resolved\n")  # fmt: skip
        return 0x80072EE7
    if verbs in (["-encode"], ["-decode"], ["-f", "-encode"], ["-f", "-decode"]) and len(rest) == 2:
        return _codec(ctx, "-encode" in verbs, "-f" in verbs, rest[0], rest[1])
    return not_modelled(ctx, argv)


def _codec(ctx: Ctx, encode: bool, force: bool, src_raw: str, dst_raw: str) -> int:
    fs = ctx.host.fs
    src = normalize(src_raw, ctx.cwd)
    dst = normalize(dst_raw, ctx.cwd)
    verb = "-encode" if encode else "-decode"
    try:
        data = fs.read(src)
    except FsError:
        out(ctx, f"CertUtil: {verb} command FAILED: 0x80070002 (WIN32: 2 ERROR_FILE_NOT_FOUND)\n"
                 "CertUtil: The system cannot find the file specified.\n")  # fmt: skip
        return 0x80070002
    if fs.exists(dst) and not force:
        out(ctx, f"CertUtil: {verb} command FAILED: 0x80070050 (WIN32: 80 ERROR_FILE_EXISTS)\n"
                 "CertUtil: The file exists.\n")  # fmt: skip
        return 0x80070050
    if encode:
        b64 = base64.b64encode(data).decode("ascii")
        lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
        result = ("-----BEGIN CERTIFICATE-----\r\n" + "".join(x + "\r\n" for x in lines)
                  + "-----END CERTIFICATE-----\r\n").encode("ascii")  # fmt: skip
    else:
        text = data.decode("ascii", "replace")
        body = re.sub(r"-----(BEGIN|END)[^-]*-----", "", text)
        try:
            result = base64.b64decode("".join(body.split()), validate=True)
        except ValueError:
            out(ctx, "CertUtil: -decode command FAILED: 0x80090005 (-2146893819 NTE_BAD_DATA)\n"
                     "CertUtil: Bad Data.\n")  # fmt: skip
            return 0x80090005
    try:
        ctx.host.write_file(ctx.proc, dst, result)
    except FsError:
        out(ctx, f"CertUtil: {verb} command FAILED: 0x80070003 (WIN32: 3 ERROR_PATH_NOT_FOUND)\n"
                 "CertUtil: The system cannot find the path specified.\n")  # fmt: skip
        return 0x80070003
    out(ctx, f"Input Length = {len(data)}\nOutput Length = {len(result)}\nCertUtil: {verb} command completed "
             "successfully.\n")  # fmt: skip
    return 0
