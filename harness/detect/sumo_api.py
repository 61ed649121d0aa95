"""Remote Sumo Logic engine: run a Log Search query in a real tenant through the Search Job API.

Protocol (Sumo Logic docs, docs/api/search-job.md):

1. ``POST /api/v1/search/jobs`` with ``query``, ``from``/``to`` (epoch ms here), ``timeZone: UTC``,
   ``byReceiptTime: false`` -> 202 and ``{"id": ...}``;
2. ``GET /api/v1/search/jobs/{id}`` until the state is ``DONE GATHERING RESULTS`` (or
   ``FORCE PAUSED``: the non-aggregate result limit was hit; what was gathered is returned). The API
   cancels a job not polled for about 20-30 s, so the poll interval is capped well below that;
3. ``GET .../records`` (aggregate queries) or ``.../messages`` with ``offset``/``limit`` (<= 10,000);
   a non-aggregate query answers ``400 no.records.not.an.aggregation.query`` on ``records``, which
   is how the two are told apart without parsing the query;
4. ``DELETE /api/v1/search/jobs/{id}`` always, in a ``finally``.

Basic auth with the access id/key (environment ``SUMO_ACCESS_ID``/``SUMO_ACCESS_KEY`` or the keyring,
via ``harness.credentials.get_secret``), cookies kept for the job's lifetime (one ``httpx.Client``),
``429`` answered by waiting ``Retry-After`` (else exponential back-off), a bounded number of times.
Every failure is a ``RemoteSearchError`` carrying the API's own message; the access key is never put
in an error, a log record or a result.

Because the rows come from the tenant, ``SumoApiDetector.evaluate`` uses only the time window (or,
without one, the span of the given events); the events themselves are only counted.
"""

from __future__ import annotations

import base64
import enum
import ipaddress
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from harness.credentials import get_secret
from harness.detect.base import DetectionResult, Engine, TimeWindow
from harness.errors import CredentialError, DetectionError, RemoteSearchError
from harness.telemetry.event import Event

log = logging.getLogger(__name__)

API_PATH = "/api/v1/search/jobs"
#: The API cancels a job that is not polled for 20-30 s; stay far below.
MAX_POLL_INTERVAL_S = 15.0
MAX_PAGE = 10_000
ACCESS_ID_VAR = "SUMO_ACCESS_ID"
ACCESS_KEY_VAR = "SUMO_ACCESS_KEY"  # the variable's name, not a secret
ENDPOINT_VAR = "SUMO_API_ENDPOINT"


class JobState(enum.StrEnum):
    """Search job states as the API spells them."""

    NOT_STARTED = "NOT STARTED"
    GATHERING_RESULTS = "GATHERING RESULTS"
    FORCE_PAUSED = "FORCE PAUSED"
    DONE_GATHERING_RESULTS = "DONE GATHERING RESULTS"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True, slots=True)
class SumoCredentials:
    """An access id/key pair. ``repr`` and ``str`` never show the key."""

    access_id: str
    access_key: str = field(repr=False)

    @classmethod
    def from_environment(cls) -> SumoCredentials:
        """``SUMO_ACCESS_ID``/``SUMO_ACCESS_KEY`` from the environment, else the keyring
        (service ``atomiclab``); CredentialError naming what to set when missing."""
        return cls(get_secret(ACCESS_ID_VAR), get_secret(ACCESS_KEY_VAR))

    def __str__(self) -> str:
        return f"SumoCredentials(access_id={self.access_id!r})"


def resolve_endpoint(endpoint: str) -> str:
    """``us2`` -> ``https://api.us2.sumologic.com``; ``us1``/``prod`` -> ``https://api.sumologic.com``;
    a full URL is kept (without a trailing ``/`` or ``/api/v1``). Plain ``http`` is accepted only
    for loopback hosts, so credentials are never sent in clear over a network."""
    value = endpoint.strip().rstrip("/")
    if not value:
        raise DetectionError(
            "no Sumo Logic API endpoint configured",
            hint=f"pass a deployment such as us2 or a URL, or set {ENDPOINT_VAR}",
        )
    if "://" not in value:
        dep = value.lower()
        if dep in {"us1", "prod"}:
            return "https://api.sumologic.com"
        if not dep.replace("-", "").isalnum():
            raise DetectionError(f"{endpoint!r} is not a Sumo Logic deployment name or URL",
                                 hint="use e.g. us2, eu, au or https://api.<deployment>.sumologic.com")
        return f"https://api.{dep}.sumologic.com"
    parts = urlsplit(value)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise DetectionError(f"{endpoint!r} is not an http(s) URL",
                             hint="use https://api.<deployment>.sumologic.com")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise DetectionError(f"{endpoint!r}: plain http would send the access key in clear",
                             hint="use https (http is accepted for 127.0.0.1/localhost only)")
    base = value
    if base.endswith("/api/v1"):
        base = base[: -len("/api/v1")]
    return base


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class SumoApiSettings:
    """Tunables of the job life cycle. Tests shrink the intervals; production keeps defaults."""

    poll_interval_s: float = 2.0
    job_timeout_s: float = 600.0
    page_limit: int = MAX_PAGE
    max_retries: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    http_timeout_s: float = 30.0
    by_receipt_time: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.poll_interval_s <= MAX_POLL_INTERVAL_S:
            raise ValueError(f"poll_interval_s must be in (0, {MAX_POLL_INTERVAL_S}] (the API expires unpolled jobs)")
        if not 1 <= self.page_limit <= MAX_PAGE:
            raise ValueError(f"page_limit must be in [1, {MAX_PAGE}]")
        if self.max_retries < 0 or self.backoff_s < 0 or self.job_timeout_s <= 0:
            raise ValueError("max_retries, backoff_s must be >= 0 and job_timeout_s > 0")


def _epoch_ms(t: datetime) -> int:
    return int(t.astimezone(UTC).timestamp() * 1000)


class SumoApiDetector:
    """One Sumo Logic Log Search query, evaluated in a tenant (implements ``Detector``).

    Collaborators are passed in: ``credentials`` (default: environment/keyring, read at evaluate
    time so loading a rule needs no secret), ``sleep`` and ``clock`` (tests pass fast ones).
    """

    def __init__(
        self,
        query: str,
        *,
        rule_id: str,
        endpoint: str,
        credentials: SumoCredentials | Callable[[], SumoCredentials] | None = None,
        settings: SumoApiSettings | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not query.strip():
            raise DetectionError(f"{rule_id}: the Sumo query is empty")
        self._query = query
        self._rule_id = rule_id
        self._endpoint = resolve_endpoint(endpoint)
        self._credentials = credentials
        self._settings = settings or SumoApiSettings()
        self._sleep = sleep
        self._clock = clock

    @classmethod
    def from_file(
        cls,
        path: Path,
        *,
        endpoint: str | None = None,
        environ: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> SumoApiDetector:
        """The query in a ``.sumo`` file; ``rule_id`` is the file stem. ``endpoint`` defaults to
        ``$SUMO_API_ENDPOINT`` (a deployment such as ``us2`` or a URL)."""
        path = Path(path)
        from harness.detect.sumo.detector import read_rule_text

        query = read_rule_text(path, what="Sumo rule")
        if endpoint is None:
            endpoint = (environ if environ is not None else os.environ).get(ENDPOINT_VAR, "")
        return cls(query, rule_id=path.stem, endpoint=endpoint, **kwargs)

    @property
    def rule_id(self) -> str:
        return self._rule_id

    @property
    def engine(self) -> Engine:
        return Engine.SUMO_API

    @property
    def endpoint(self) -> str:
        return self._endpoint

    # --- Detector ---------------------------------------------------------------------------

    def evaluate(self, events: Iterable[Event], window: TimeWindow | None = None) -> DetectionResult:
        """Run the query in the tenant over ``window`` (closed sides required, or taken from the span
        of ``events``). ``events`` are only counted: the tenant's own data is searched. Rows are the
        API's ``map`` objects (field names lower-case, values strings) in the order returned."""
        wall = time.perf_counter()
        times: list[datetime] = []
        count = 0
        for ev in events:
            count += 1
            times.append(ev.time)
        start, end = self._range(window, times)
        rows = self.search(start, end)
        return DetectionResult(
            rule_id=self._rule_id,
            engine=Engine.SUMO_API,
            rows=tuple(rows),
            events_in=count,
            elapsed_s=time.perf_counter() - wall,
        )

    def _range(self, window: TimeWindow | None, times: Sequence[datetime]) -> tuple[datetime, datetime]:
        start = window.start if window else None
        end = window.end if window else None
        if start is None and times:
            start = min(times)
        if end is None and times:
            end = max(times) + timedelta(milliseconds=1)  # the window is half-open
        if start is None or end is None:
            raise DetectionError(
                f"{self._rule_id}: the Sumo API engine needs a time window",
                hint="pass a TimeWindow with start and end, or events to take the span from",
            )
        if end <= start:
            raise DetectionError(f"{self._rule_id}: empty time window {start.isoformat()} .. {end.isoformat()}")
        return start, end

    # --- the job life cycle --------------------------------------------------------------------

    def search(self, start: datetime, end: datetime) -> list[dict[str, str]]:
        """Create the job, poll it to completion, page its results, delete it. Rows as returned."""
        creds = self._resolve_credentials()
        scrub = _Scrubber(creds)
        with httpx.Client(
            base_url=self._endpoint,
            auth=httpx.BasicAuth(creds.access_id, creds.access_key),
            timeout=self._settings.http_timeout_s,
            headers={"Accept": "application/json"},
            follow_redirects=False,  # a redirect means another deployment: say so, resend nothing
        ) as client:
            body = {
                "query": self._query,
                "from": _epoch_ms(start),
                "to": _epoch_ms(end),
                "timeZone": "UTC",
                "byReceiptTime": self._settings.by_receipt_time,
            }
            created = self._request(client, scrub, "POST", API_PATH, json=body, expect=(200, 202))
            job_id = str(created.get("id") or "")
            if not job_id:
                raise RemoteSearchError(f"{self._endpoint}: the API created a search job without an id")
            log.debug("sumo search job %s created for %s", job_id, self._rule_id)
            try:
                status = self._wait(client, scrub, job_id)
                return self._results(client, scrub, job_id, status)
            finally:
                self._delete(client, scrub, job_id)

    def _resolve_credentials(self) -> SumoCredentials:
        creds = self._credentials
        try:
            if creds is None:
                return SumoCredentials.from_environment()
            if callable(creds):
                return creds()
        except CredentialError as exc:
            raise RemoteSearchError(f"{self._rule_id}: no Sumo Logic access key: {exc}") from exc
        return creds

    def _wait(self, client: httpx.Client, scrub: _Scrubber, job_id: str) -> Mapping[str, Any]:
        deadline = self._clock() + self._settings.job_timeout_s
        while True:
            status = self._request(client, scrub, "GET", f"{API_PATH}/{job_id}", job_id=job_id)
            state = str(status.get("state", ""))
            errors = status.get("pendingErrors") or []
            if errors:
                raise RemoteSearchError(
                    f"{self._endpoint}: search job {job_id} failed: {scrub('; '.join(map(str, errors)))}"
                )
            log.debug("sumo search job %s: %s (%s messages, %s records)", job_id, state,
                      status.get("messageCount"), status.get("recordCount"))
            if state == JobState.DONE_GATHERING_RESULTS:
                return status
            if state == JobState.FORCE_PAUSED:
                log.warning("sumo search job %s was force-paused at the result limit; results are partial", job_id)
                return status
            if state == JobState.CANCELLED:
                raise RemoteSearchError(f"{self._endpoint}: search job {job_id} was cancelled by the service")
            if state not in (JobState.NOT_STARTED, JobState.GATHERING_RESULTS):
                raise RemoteSearchError(f"{self._endpoint}: search job {job_id} is in unknown state {state!r}")
            if self._clock() >= deadline:
                raise RemoteSearchError(
                    f"{self._endpoint}: search job {job_id} did not finish within "
                    f"{self._settings.job_timeout_s:g} s (last state {state})",
                    hint="narrow the time range or raise job_timeout_s",
                )
            self._sleep(self._settings.poll_interval_s)

    def _results(
        self, client: httpx.Client, scrub: _Scrubber, job_id: str, status: Mapping[str, Any]
    ) -> list[dict[str, str]]:
        records = int(status.get("recordCount") or 0)
        messages = int(status.get("messageCount") or 0)
        if records > 0:
            return self._page(client, scrub, job_id, "records", records)
        if messages == 0:
            return []
        # Messages exist but no records: either a plain search (page messages) or an aggregation
        # that produced nothing. The API tells the two apart on /records.
        try:
            self._request(client, scrub, "GET", f"{API_PATH}/{job_id}/records",
                          params={"offset": 0, "limit": 1}, job_id=job_id)
        except _NotAggregate:
            return self._page(client, scrub, job_id, "messages", messages)
        return []

    def _page(
        self, client: httpx.Client, scrub: _Scrubber, job_id: str, kind: str, total: int
    ) -> list[dict[str, str]]:
        rows: list[dict[str, str]] = []
        offset = 0
        while offset < total:
            limit = min(self._settings.page_limit, total - offset)
            page = self._request(client, scrub, "GET", f"{API_PATH}/{job_id}/{kind}",
                                 params={"offset": offset, "limit": limit}, job_id=job_id)
            items = page.get(kind) or []
            if not isinstance(items, list):
                raise RemoteSearchError(f"{self._endpoint}: {kind} page of job {job_id} is not a list")
            for item in items:
                mapping = item.get("map") if isinstance(item, dict) else None
                if not isinstance(mapping, dict):
                    raise RemoteSearchError(f"{self._endpoint}: {kind} entry of job {job_id} has no map")
                rows.append({str(k): "" if v is None else str(v) for k, v in mapping.items()})
            if not items:
                break  # fewer than announced (e.g. a force-paused job): stop rather than loop
            offset += len(items)
        return rows

    def _delete(self, client: httpx.Client, scrub: _Scrubber, job_id: str) -> None:
        try:
            self._request(client, scrub, "DELETE", f"{API_PATH}/{job_id}", job_id=job_id)
            log.debug("sumo search job %s deleted", job_id)
        except RemoteSearchError as exc:
            # The job expires on its own; a failed delete must not mask the search outcome.
            log.warning("could not delete sumo search job %s: %s", job_id, exc)

    # --- one HTTP exchange ---------------------------------------------------------------------

    def _request(
        self,
        client: httpx.Client,
        scrub: _Scrubber,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, int] | None = None,
        expect: tuple[int, ...] = (200,),
        job_id: str | None = None,
    ) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                resp = client.request(method, path, json=json, params=params)
            except httpx.HTTPError as exc:
                raise RemoteSearchError(
                    f"{self._endpoint}: {method} {path} failed: {scrub(type(exc).__name__ + ': ' + str(exc))}",
                    hint="check the endpoint and the network",
                ) from None
            if resp.status_code in (429, 503) and attempt < self._settings.max_retries:
                delay = self._retry_delay(resp, attempt)
                attempt += 1
                log.info("sumo API answered %s to %s %s; retrying in %.2f s (%d/%d)",
                         resp.status_code, method, path, delay, attempt, self._settings.max_retries)
                self._sleep(delay)
                continue
            break
        if resp.status_code in expect or (method == "DELETE" and resp.status_code in (200, 202, 204)):
            if method == "DELETE" or not resp.content:
                return {}
            return self._json(resp, scrub, method, path)
        raise self._error(resp, scrub, method, path, job_id, attempt)

    def _retry_delay(self, resp: httpx.Response, attempt: int) -> float:
        header = resp.headers.get("Retry-After")
        if header is not None:
            try:
                return min(max(float(header), 0.0), self._settings.max_backoff_s)
            except ValueError:
                pass  # an HTTP-date: fall back to our own back-off
        return float(min(self._settings.backoff_s * (2**attempt), self._settings.max_backoff_s))

    def _json(self, resp: httpx.Response, scrub: _Scrubber, method: str, path: str) -> dict[str, Any]:
        try:
            data = resp.json()
        except ValueError:
            raise RemoteSearchError(
                f"{self._endpoint}: {method} {path} answered {resp.status_code} with non-JSON "
                f"{scrub(resp.text[:200])!r}"
            ) from None
        if not isinstance(data, dict):
            raise RemoteSearchError(f"{self._endpoint}: {method} {path} answered JSON that is not an object")
        return data

    def _error(
        self, resp: httpx.Response, scrub: _Scrubber, method: str, path: str, job_id: str | None, retries: int
    ) -> Exception:
        code, message = "", resp.text[:300]
        try:
            data = resp.json()
            if isinstance(data, dict):
                code = str(data.get("code") or "")
                message = str(data.get("message") or message)
        except ValueError:
            pass
        message = scrub(message)
        status = resp.status_code
        where = f"{self._endpoint}: {method} {path}"
        if status == 400 and code == "no.records.not.an.aggregation.query":
            return _NotAggregate(message)
        if status in (401, 403):
            return RemoteSearchError(
                f"{where}: access refused ({status} {code}): {message}".replace(" ()", ""),
                hint=f"check {ACCESS_ID_VAR}/{ACCESS_KEY_VAR} (or the keyring) and the deployment endpoint",
            )
        if status == 400 and code == "parse.error":
            return RemoteSearchError(f"{self._rule_id}: Sumo Logic rejected the query (parse.error): {message}",
                                     hint="run `atomiclab lint` on the rule")
        if status == 404 and job_id is not None:
            return RemoteSearchError(
                f"{where}: search job {job_id} is gone ({code or 'not found'}): {message}",
                hint="the API cancels jobs that are not polled every 20-30 s",
            )
        if status in (301, 302, 307, 308):
            return RemoteSearchError(
                f"{where}: the API redirected to {scrub(resp.headers.get('Location', '?'))}",
                hint="the account lives in another deployment; set the endpoint to that host",
            )
        if status == 429:
            return RemoteSearchError(f"{where}: rate limited (429) after {retries} retries: {message}",
                                     hint="the API allows 4 requests/s per user and 10 concurrent per key")
        return RemoteSearchError(f"{where}: HTTP {status}{' ' + code if code else ''}: {message}")


class _NotAggregate(RemoteSearchError):
    """Internal: /records answered that the query is not an aggregation."""


class _Scrubber:
    """Removes the access key (and its Basic-auth encoding) from any text that leaves this module."""

    def __init__(self, creds: SumoCredentials) -> None:
        token = base64.b64encode(f"{creds.access_id}:{creds.access_key}".encode()).decode()
        self._secrets = [s for s in (creds.access_key, token) if s]

    def __call__(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text


__all__ = [
    "ACCESS_ID_VAR",
    "ACCESS_KEY_VAR",
    "ENDPOINT_VAR",
    "JobState",
    "SumoApiDetector",
    "SumoApiSettings",
    "SumoCredentials",
    "resolve_endpoint",
]
