"""A fake Sumo Logic Search Job API on 127.0.0.1 for tests (nothing leaves the machine).

Implements the documented endpoints and answers (docs/api/search-job.md):
POST /api/v1/search/jobs (202 + id, a session cookie that later calls must send back),
GET /api/v1/search/jobs/{id} (states NOT STARTED -> GATHERING RESULTS -> DONE GATHERING RESULTS, or a
scripted CANCELLED / FORCE PAUSED), GET .../messages and .../records with offset/limit (limit <= 10000;
records on a non-aggregate query -> 400 no.records.not.an.aggregation.query), DELETE .../{id},
Basic auth (401 unauthorized), 400 parse.error for a query with `| eval`, 429 with Retry-After on the
first N requests, and job expiry (404 jobid.invalid) when a job is not polled within ``expiry_s``.

The "tenant" holds ``messages`` (dicts whose keys the API returns lower-cased); a job returns those
whose ``_messagetime`` (epoch ms) is inside [from, to). Aggregate queries return ``records``.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

AGGREGATE = re.compile(r"\|\s*(count|count_distinct|sum|avg|min|max)\b", re.IGNORECASE)
EVAL = re.compile(r"\|\s*eval\b", re.IGNORECASE)
COOKIE = "AWSELB"


@dataclass
class FakeJob:
    id: str
    query: str
    start_ms: int
    end_ms: int
    cookie: str
    polls: int = 0
    last_touch: float = field(default_factory=time.monotonic)
    deleted: bool = False


@dataclass
class FakeSumo:
    """Scriptable tenant state. Change the attributes before the detector runs."""

    access_id: str = "suABCDEF123456"
    access_key: str = "k3y-Sup3rSecret-DoNotLeak-0123456789"
    messages: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    polls_until_done: int = 2
    final_state: str = "DONE GATHERING RESULTS"
    rate_limit_first: int = 0  # answer 429 to this many requests first
    retry_after: str | None = "0"
    expiry_s: float | None = None  # a job not polled within this many seconds is gone
    pending_errors: list[str] = field(default_factory=list)
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _to_ms(value: Any) -> int:
    if isinstance(value, int | float):
        return int(value)
    text = str(value)
    if text.isdigit():
        return int(text)
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def _handler(state: FakeSumo) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # One buffered write per answer and no Nagle: otherwise keep-alive exchanges stall on
        # delayed ACKs (about 40 ms per request).
        wbufsize = 1 << 16
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            return

        def _send(self, status: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _fail(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
            self._send(status, {"status": status, "id": "IUUQI-DGH5I-TJ045", "code": code, "message": message},
                       headers)

        def _authorized(self) -> bool:
            expected = base64.b64encode(f"{state.access_id}:{state.access_key}".encode()).decode()
            return self.headers.get("Authorization") == f"Basic {expected}"

        def _job(self, job_id: str) -> FakeJob | None:
            job = state.jobs.get(job_id)
            if job is None or job.deleted:
                return None
            if state.expiry_s is not None and time.monotonic() - job.last_touch > state.expiry_s:
                job.deleted = True  # expired: the service cancelled it
                return None
            cookie = self.headers.get("Cookie") or ""
            if f"{COOKIE}={job.cookie}" not in cookie:
                return None  # without the session cookie the request reaches a node that lacks the job
            job.last_touch = time.monotonic()
            return job

        def _common(self, method: str) -> tuple[list[str], dict[str, list[str]]] | None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            with state.lock:
                state.requests.append((method, url.path, query))
                if state.rate_limit_first > 0:
                    state.rate_limit_first -= 1
                    headers = {} if state.retry_after is None else {"Retry-After": state.retry_after}
                    self._fail(429, "rate.limit.exceeded", "Rate limit exceeded", headers)
                    return None
            if not self._authorized():
                self._fail(401, "unauthorized", "Credential could not be verified.")
                return None
            parts = [p for p in url.path.split("/") if p]
            if parts[:4] != ["api", "v1", "search", "jobs"]:
                self._fail(404, "not.found", f"no such resource {url.path}")
                return None
            return parts[4:], query

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            common = self._common("POST")
            if common is None:
                return
            rest, _ = common
            if rest:
                self._fail(405, "method.not.allowed", "POST only on /api/v1/search/jobs")
                return
            try:
                body = json.loads(raw)
                query = str(body["query"])
                start, end = _to_ms(body["from"]), _to_ms(body["to"])
            except (ValueError, KeyError, TypeError):
                self._fail(400, "bad.request", "query, from and to are required")
                return
            state.bodies.append(body)
            if EVAL.search(query):
                self._fail(400, "parse.error", "Unable to parse query: unknown operator 'eval'.")
                return
            job = FakeJob(id=uuid.uuid4().hex[:16].upper(), query=query, start_ms=start, end_ms=end,
                          cookie=uuid.uuid4().hex)
            state.jobs[job.id] = job
            self._send(202, {"id": job.id, "link": {"rel": "self", "href": f"/api/v1/search/jobs/{job.id}"}},
                       {"Set-Cookie": f"{COOKIE}={job.cookie}; Path=/"})

        def do_GET(self) -> None:
            common = self._common("GET")
            if common is None:
                return
            rest, query = common
            job = self._job(rest[0]) if rest else None
            if job is None:
                self._fail(404, "jobid.invalid", "Job ID is invalid.")
                return
            hits = self._hits(job)
            if len(rest) == 1:
                job.polls += 1
                if job.polls <= state.polls_until_done:
                    st = "NOT STARTED" if job.polls == 1 else "GATHERING RESULTS"
                else:
                    st = state.final_state
                aggregate = bool(AGGREGATE.search(job.query))
                self._send(200, {
                    "state": st,
                    "messageCount": len(hits),
                    "histogramBuckets": [],
                    "pendingErrors": list(state.pending_errors),
                    "pendingWarnings": [],
                    "recordCount": len(state.records) if aggregate and st != "NOT STARTED" else 0,
                })
                return
            offset = int(query.get("offset", ["0"])[0])
            limit = int(query.get("limit", ["0"])[0])
            if limit < 1 or limit > 10000:
                self._fail(400, "invalid.limit", "limit must be between 1 and 10000")
                return
            if rest[1] == "messages":
                page = hits[offset:offset + limit]
                self._send(200, {"fields": self._fields(page), "messages": [{"map": m} for m in page]})
            elif rest[1] == "records":
                if not AGGREGATE.search(job.query):
                    self._fail(400, "no.records.not.an.aggregation.query",
                               "There are no records because the query is not an aggregation query.")
                    return
                page = [{k.lower(): str(v) for k, v in r.items()} for r in state.records[offset:offset + limit]]
                self._send(200, {"fields": self._fields(page), "records": [{"map": r} for r in page]})
            else:
                self._fail(404, "not.found", "unknown job resource")

        def do_DELETE(self) -> None:
            common = self._common("DELETE")
            if common is None:
                return
            rest, _ = common
            job = self._job(rest[0]) if len(rest) == 1 else None
            if job is None:
                self._fail(404, "jobid.invalid", "Job ID is invalid.")
                return
            job.deleted = True
            self._send(200, {"id": job.id})

        def _hits(self, job: FakeJob) -> list[dict[str, str]]:
            out = []
            for m in state.messages:
                row = {str(k).lower(): str(v) for k, v in m.items()}
                if job.start_ms <= int(row.get("_messagetime", "0")) < job.end_ms:
                    out.append(row)
            return out

        @staticmethod
        def _fields(page: list[dict[str, str]]) -> list[dict[str, str]]:
            names: dict[str, None] = {}
            for row in page:
                names.update(dict.fromkeys(row))
            return [{"name": n, "fieldType": "string", "keyField": False} for n in names]

    return Handler


@contextmanager
def serve(state: FakeSumo | None = None) -> Iterator[tuple[str, FakeSumo]]:
    """Run the fake API on 127.0.0.1 in a thread; yields (base URL, state)."""
    state = state or FakeSumo()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host}:{port}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
