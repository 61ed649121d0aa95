"""SOAP 1.2 / WS-Management envelopes as the emulated WinRM service reads and writes them.

Requests are parsed with a hardened lxml parser (no DTD, no entity resolution, no network, no huge
trees); any DOCTYPE is refused outright, as real WinRM does. Responses copy the shape of a Windows
Server 2022 WinRM reply: ``a:Action``/``a:MessageID``/``a:To``/``a:RelatesTo`` headers, faults as
``s:Fault`` with a ``w:`` subcode and an ``f:WSManFault`` detail carrying the numeric code that
clients (pypsrp, pywinrm) switch on.

Fault codes: 2150858793 (operation timed out) and 2150858843 (shell not found) are the values real
hosts send; the others name the closest documented WS-Man subcode with a Win32 code (5 access denied,
87 invalid parameter) or the WS-Man HRESULT family, and their text says so when the fault was injected.
"""

from __future__ import annotations

import base64
import enum
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

NS: dict[str, str] = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
    "cfg": "http://schemas.microsoft.com/wbem/wsman/1/config",
}
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
FAULT_ACTION = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"
SHELL_CMD_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
CONFIG_URI = "http://schemas.microsoft.com/wbem/wsman/1/config"
COMMAND_STATE_DONE = f"{SHELL_URI}/CommandState/Done"
COMMAND_STATE_RUNNING = f"{SHELL_URI}/CommandState/Running"
SOAP_CONTENT_TYPE = "application/soap+xml;charset=UTF-8"

#: Client default when a request has no MaxEnvelopeSize header (WinRM's own client default).
DEFAULT_MAX_ENVELOPE = 153600
#: Below this WinRM refuses the request (w:EncodingLimit); 8 KiB is the documented minimum.
MIN_MAX_ENVELOPE = 8192


class Action(enum.StrEnum):
    """The WS-Man actions the emulated host serves (wsa:Action URIs)."""

    CREATE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create"
    DELETE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete"
    GET = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get"
    COMMAND = f"{SHELL_URI}/Command"
    RECEIVE = f"{SHELL_URI}/Receive"
    SEND = f"{SHELL_URI}/Send"
    SIGNAL = f"{SHELL_URI}/Signal"

    @property
    def short(self) -> str:
        """``Create``, ``Receive`` ... (the last URI segment)."""
        return self.value.rsplit("/", 1)[1]

    @property
    def response(self) -> str:
        return f"{self.value}Response"


class Signal(enum.StrEnum):
    """WinRS signal codes ([MS-WSMV] 2.2.4.38)."""

    TERMINATE = f"{SHELL_URI}/signal/Terminate"
    CTRL_C = f"{SHELL_URI}/signal/ctrl_c"
    CTRL_BREAK = f"{SHELL_URI}/signal/ctrl_break"


class FaultKind(enum.Enum):
    """The faults the service sends: (SOAP code, subcode, WSManFault code, reason)."""

    TIMED_OUT = (
        "s:Receiver",
        "w:TimedOut",
        2150858793,
        "The WS-Management service cannot complete the operation within the time specified in OperationTimeout.",
    )
    SHELL_NOT_FOUND = (
        "s:Sender",
        "w:InvalidSelectors",
        2150858843,
        "The request for the Windows Remote Shell with ShellId {detail} failed because the shell was "
        "not found on the server. Possible causes are: the specified ShellId is incorrect or the shell "
        "no longer exists on the server. Provide the correct ShellId or create a new shell and retry "
        "the operation.",
    )
    COMMAND_NOT_FOUND = (
        "s:Sender",
        "w:InvalidParameter",
        87,
        "The parameter is incorrect. No command with CommandId {detail} exists in this shell.",
    )
    INVALID_PARAMETER = ("s:Sender", "w:InvalidParameter", 87, "The parameter is incorrect. {detail}")
    SCHEMA_VALIDATION = (
        "s:Sender",
        "w:SchemaValidationError",
        2150858817,
        "The WS-Management service cannot process the request because the XML is invalid. {detail}",
    )
    ACTION_NOT_SUPPORTED = (
        "s:Sender",
        "a:ActionNotSupported",
        2150858783,
        "The WS-Management service cannot process the request. The action {detail} is not supported.",
    )
    ENCODING_LIMIT = (
        "s:Sender",
        "w:EncodingLimit",
        2150858791,
        "The WS-Management service cannot process the request because the envelope size limit is "
        "too small or the request is too large. {detail}",
    )
    ACCESS_DENIED = ("s:Sender", "w:AccessDenied", 5, "Access is denied. {detail}")
    INTERNAL_ERROR = (
        "s:Receiver",
        "w:InternalError",
        2147500037,
        "The WS-Management service cannot process the request. {detail}",
    )

    @property
    def code(self) -> int:
        return int(self.value[2])


class WsmanFault(Exception):
    """A fault the service answers with (HTTP 500 and a SOAP fault body)."""

    def __init__(self, kind: FaultKind, detail: str = "") -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(self.reason)

    @property
    def reason(self) -> str:
        return str(self.kind.value[3]).format(detail=self.detail).strip()


def _q(prefix: str, local: str) -> str:
    return f"{{{NS[prefix]}}}{local}"


def _parser() -> etree.XMLParser:
    # A fresh parser per call: lxml parsers are not thread-safe and the server is threaded.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


_DURATION = re.compile(r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$")


def parse_duration(text: str) -> float:
    """Seconds of an xs:duration such as ``PT20S`` or ``PT1M30.5S`` (days and smaller units only)."""
    m = _DURATION.match(text.strip())
    if not m or text.strip() in {"P", "PT"}:
        raise WsmanFault(FaultKind.INVALID_PARAMETER, f"Invalid duration {text.strip()[:40]!r}.")
    d, h, mi, s = (m.group(g) for g in ("d", "h", "m", "s"))
    return int(d or 0) * 86400 + int(h or 0) * 3600 + int(mi or 0) * 60 + float(s or 0)


@dataclass(frozen=True)
class Request:
    """One parsed WS-Man request: the headers the service needs and the body element."""

    action: str
    message_id: str
    resource_uri: str
    operation_timeout_s: float | None
    max_envelope_size: int
    selectors: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    body: etree._Element | None = None

    def known_action(self) -> Action:
        try:
            return Action(self.action)
        except ValueError:
            raise WsmanFault(FaultKind.ACTION_NOT_SUPPORTED, self.action[:200]) from None


def peek_message_id(data: bytes) -> str | None:
    """Best-effort MessageID of a request that failed validation, so its fault can relate to it."""
    m = re.search(rb"<(?:\w+:)?MessageID[^>]*>\s*([^<\s]{1,200})\s*<", data[:8192])
    return m.group(1).decode("ascii", "replace") if m else None


def parse_request(data: bytes) -> Request:
    """Parse and validate a SOAP envelope; raise :class:`WsmanFault` (SchemaValidation) if malformed."""
    if re.search(rb"<!DOCTYPE", data[:4096], re.IGNORECASE):
        raise WsmanFault(FaultKind.SCHEMA_VALIDATION, "A DOCTYPE is not allowed.")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise WsmanFault(FaultKind.SCHEMA_VALIDATION, f"XML syntax error: {exc.msg}.") from None
    docinfo: Any = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise WsmanFault(FaultKind.SCHEMA_VALIDATION, "A DOCTYPE is not allowed.")
    if root.tag != _q("s", "Envelope"):
        raise WsmanFault(FaultKind.SCHEMA_VALIDATION, "The root element is not a SOAP 1.2 Envelope.")
    header = root.find(_q("s", "Header"))
    body = root.find(_q("s", "Body"))
    if header is None or body is None:
        raise WsmanFault(FaultKind.SCHEMA_VALIDATION, "The envelope lacks a Header or a Body.")

    def text(prefix: str, local: str) -> str | None:
        el = header.find(_q(prefix, local))
        return el.text.strip() if el is not None and el.text else None

    action = text("a", "Action")
    message_id = text("a", "MessageID")
    if not action or not message_id:
        raise WsmanFault(FaultKind.SCHEMA_VALIDATION, "The Action and MessageID headers are required.")
    timeout_text = text("w", "OperationTimeout")
    size_text = text("w", "MaxEnvelopeSize")
    try:
        max_env = int(size_text) if size_text else DEFAULT_MAX_ENVELOPE
    except ValueError:
        raise WsmanFault(FaultKind.INVALID_PARAMETER, "MaxEnvelopeSize is not a number.") from None
    if max_env < MIN_MAX_ENVELOPE:
        raise WsmanFault(FaultKind.ENCODING_LIMIT, f"MaxEnvelopeSize {max_env} is below {MIN_MAX_ENVELOPE}.")

    def name_values(set_local: str, item_local: str) -> dict[str, str]:
        out: dict[str, str] = {}
        container = header.find(_q("w", set_local))
        if container is not None:
            for item in container.findall(_q("w", item_local)):
                name = item.get("Name")
                if name:
                    out[name] = (item.text or "").strip()
        return out

    children = list(body)
    return Request(
        action=action,
        message_id=message_id,
        resource_uri=text("w", "ResourceURI") or "",
        operation_timeout_s=parse_duration(timeout_text) if timeout_text else None,
        max_envelope_size=max_env,
        selectors=name_values("SelectorSet", "Selector"),
        options=name_values("OptionSet", "Option"),
        body=children[0] if children else None,
    )


def _envelope(action: str, relates_to: str | None) -> tuple[etree._Element, etree._Element]:
    nsmap = {k: NS[k] for k in ("s", "a", "x", "w", "rsp", "p")}
    env = etree.Element(_q("s", "Envelope"), nsmap=nsmap)  # type: ignore[arg-type]
    env.set(_XML_LANG, "en-US")
    header = etree.SubElement(env, _q("s", "Header"))
    etree.SubElement(header, _q("a", "Action")).text = action
    etree.SubElement(header, _q("a", "MessageID")).text = f"uuid:{str(uuid.uuid4()).upper()}"
    etree.SubElement(header, _q("a", "To")).text = ANONYMOUS
    if relates_to:
        etree.SubElement(header, _q("a", "RelatesTo")).text = relates_to
    body = etree.SubElement(env, _q("s", "Body"))
    return env, body


def serialize(env: etree._Element) -> bytes:
    return bytes(etree.tostring(env, xml_declaration=False, encoding="utf-8"))


def response_envelope(action: str, relates_to: str) -> tuple[etree._Element, etree._Element]:
    """A reply envelope for ``action`` (the ...Response URI) and its empty Body."""
    return _envelope(action, relates_to)


def fault_envelope(fault: WsmanFault, relates_to: str | None, *, machine: str) -> bytes:
    """A complete SOAP fault as WinRM writes it (pypsrp reads Subcode, Reason and WSManFault@Code)."""
    env, body = _envelope(FAULT_ACTION, relates_to)
    code_value, subcode, code, _ = fault.kind.value
    f = etree.SubElement(body, _q("s", "Fault"))
    code_el = etree.SubElement(f, _q("s", "Code"))
    etree.SubElement(code_el, _q("s", "Value")).text = str(code_value)
    sub = etree.SubElement(code_el, _q("s", "Subcode"))
    etree.SubElement(sub, _q("s", "Value")).text = str(subcode)
    reason = etree.SubElement(f, _q("s", "Reason"))
    reason_text = etree.SubElement(reason, _q("s", "Text"))
    reason_text.set(_XML_LANG, "en-US")
    reason_text.text = fault.reason + " "
    detail = etree.SubElement(f, _q("s", "Detail"))
    wf = etree.SubElement(detail, _q("f", "WSManFault"), nsmap={"f": NS["f"]})  # type: ignore[dict-item]
    wf.set("Code", str(code))
    wf.set("Machine", machine)
    etree.SubElement(wf, _q("f", "Message")).text = fault.reason + " "
    return serialize(env)


def sub(parent: etree._Element, prefix: str, local: str, text: str | None = None, **attrs: str) -> etree._Element:
    """Append ``prefix:local`` with optional text and attributes."""
    el = etree.SubElement(parent, _q(prefix, local))
    for k, v in attrs.items():
        el.set(k, v)
    if text is not None:
        el.text = text
    return el


def qname(prefix: str, local: str) -> str:
    """Clark notation ``{uri}local`` for ``prefix:local``."""
    return _q(prefix, local)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


__all__ = [
    "ANONYMOUS",
    "COMMAND_STATE_DONE",
    "COMMAND_STATE_RUNNING",
    "CONFIG_URI",
    "DEFAULT_MAX_ENVELOPE",
    "NS",
    "SHELL_CMD_URI",
    "SHELL_URI",
    "SOAP_CONTENT_TYPE",
    "Action",
    "FaultKind",
    "Request",
    "Signal",
    "WsmanFault",
    "b64",
    "fault_envelope",
    "parse_duration",
    "parse_request",
    "peek_message_id",
    "qname",
    "response_envelope",
    "serialize",
    "sub",
]
