"""Small Jira and GitHub servers on loopback that follow the documented APIs, with faults to inject.

Each is a real ``ThreadingHTTPServer`` on ``127.0.0.1:0`` in a thread: the collectors talk HTTP
to it exactly as to the vendor. What they implement, and what they do not:

- Jira Cloud: ``GET /rest/api/3/search/jql`` (enhanced search: opaque ``nextPageToken``,
  ``isLast``, no ``total``; ``nextPageToken`` absent on the last page, as JRACLOUD-92184 reports),
  ``POST /rest/api/3/search/approximate-count``, ``GET /rest/api/3/issue/{key}/changelog``
  (``startAt``/``maxResults``/``total``/``isLast``/``values``). Search embeds at most
  ``EMBEDDED_HISTORIES`` changelog histories, as Cloud caps them. Basic auth.
- Jira Data Center: ``GET /rest/api/2/search`` (``startAt``/``maxResults``/``total``),
  ``GET /rest/api/2/issue/{key}?expand=changelog``. Bearer auth.
- GitHub REST: pulls (closed, sorted by updated desc, ``page``/``per_page`` with a ``Link``
  header), a pull, its reviews (a dismissed one as ``DISMISSED``, its ``submitted_at`` kept), the
  issue timeline (commits, reviews, ``review_dismissed`` with the dismissal time, the merge),
  required status checks of branch protection, check runs,
  combined status, deployments, and ``/search/issues`` counting ``is:pr is:merged`` with an
  ``updated:`` or ``merged:`` range; ``x-ratelimit-*`` headers on every response.
  Both: ``GET /rest/api/{3,2}/myself`` with the user's ``timeZone``, and the JQL's date clauses
  (``updated >= "2026-11-01 00:00"``; ``created``, ``updated``, ``resolved``) applied as Jira
  applies them: the literal is a minute in the user's time zone, and an issue whose field is
  empty (no ``resolutiondate``) does not match.
- Gaps, named: the rest of the JQL is recorded but not evaluated (every issue matches it), and
  GitHub's search understands only the qualifiers the collector sends.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from zoneinfo import ZoneInfo


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class Reply:
    status: int = 200
    json: Any = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    truncate: bool = False


@dataclass
class Fault:
    when: Callable[[Request], bool]
    reply: Reply
    times: int


class FakeApi:
    """A loopback HTTP server answering with ``self.route(request)``, unless a fault matches first."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                api._handle(self, "GET")

            def do_POST(self):
                api._handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def fault(self, when: Callable[[Request], bool], reply: Reply, times: int = 1) -> None:
        """Answer the next ``times`` requests matching ``when`` with ``reply`` (``times=-1``: always)."""
        self.faults.append(Fault(when, reply, times))

    def route(self, request: Request) -> Reply:  # pragma: no cover - subclasses answer
        raise NotImplementedError

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw_body = handler.rfile.read(length) if length else b""
        request = Request(
            method,
            parts.path,
            {key: values[0] for key, values in parse_qs(parts.query).items()},
            {key.lower(): value for key, value in handler.headers.items()},
            json.loads(raw_body) if raw_body else None,
        )
        with self._lock:
            self.requests.append(request)
            reply = None
            for fault in self.faults:
                if fault.times != 0 and fault.when(request):
                    fault.times -= 1
                    reply = fault.reply
                    break
        reply = reply or self.route(request)
        if reply.delay:
            time.sleep(reply.delay)
        body = reply.raw if reply.raw is not None else json.dumps(reply.json).encode()
        handler.send_response(reply.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        try:
            if reply.truncate:
                handler.wfile.write(body[: len(body) // 2])
                handler.close_connection = True
            else:
                handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            handler.close_connection = True


# --- Jira -----------------------------------------------------------------------------------------

EMBEDDED_HISTORIES = 2


def jira_user(name: str) -> dict[str, Any]:
    return {"accountId": f"acc-{name}", "displayName": name.title(), "active": True}


def jira_issue(number: int, *, author="alice", approver="bob", merged=True, extra_histories=0, project="CHG") -> dict:
    """A change ticket: created, approved by ``approver``, moved to Done; ``extra_histories`` comments before."""
    created = datetime(2026, 11, 20, 8, tzinfo=UTC) + timedelta(minutes=number)
    histories = [
        {
            "id": f"{number}-c{index}",
            "author": jira_user(author),
            "created": (created + timedelta(seconds=index + 1)).strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
            "items": [{"field": "labels", "fieldtype": "jira", "fromString": "", "toString": f"l{index}"}],
        }
        for index in range(extra_histories)
    ]
    moves = [(approver, "Open", "Approved", 60)] + ([(author, "Approved", "Done", 120)] if merged else [])
    for who, before, after, minutes in moves:
        histories.append(
            {
                "id": f"{number}-{after}",
                "author": jira_user(who),
                "created": (created + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
                "items": [{"field": "status", "fieldtype": "jira", "fromString": before, "toString": after}],
            }
        )
    return {
        "id": str(10_000 + number),
        "key": f"{project}-{number}",
        "fields": {
            "summary": f"Change {number}",
            "status": {"name": "Done" if merged else "Approved"},
            "issuetype": {"name": "Change", "subtask": False},
            "reporter": jira_user(author),
            "assignee": jira_user("dave"),
            "created": created.strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
            "updated": (created + timedelta(minutes=120)).strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
            "resolutiondate": None,
            "issuelinks": [],
            "customfield_10102": {"value": "Normal"},
            "customfield_10101": {"value": "production"},
        },
        "_histories": histories,
    }


# A JQL date clause: field, operator, a "yyyy-MM-dd HH:mm" literal in the user's zone.
JQL_DATE_CLAUSE = re.compile(r'\b(created|updated|resolved)\s*(>=|<=|>|<)\s*"(\d{4}-\d\d-\d\d \d\d:\d\d)"')
JQL_FIELDS = {"created": "created", "updated": "updated", "resolved": "resolutiondate"}
JQL_OPERATORS = {">=": datetime.__ge__, "<=": datetime.__le__, ">": datetime.__gt__, "<": datetime.__lt__}


def jql_matches(jql: str, issue: dict, zone: ZoneInfo) -> bool:
    """Whether ``issue`` meets every date clause of ``jql``, each literal read in ``zone`` as Jira reads it."""
    for name, operator, literal in JQL_DATE_CLAUSE.findall(jql):
        value = issue["fields"].get(JQL_FIELDS[name])
        if not value:
            return False
        moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")
        bound = datetime.strptime(literal, "%Y-%m-%d %H:%M").replace(tzinfo=zone)
        if not JQL_OPERATORS[operator](moment, bound):
            return False
    return True


class FakeJira(FakeApi):
    """Jira Cloud (``deployment="cloud"``) or Data Center, serving the ``issues`` that meet the JQL's date clauses."""

    def __init__(
        self,
        issues: list[dict],
        *,
        deployment: str = "cloud",
        login="bot@example.com",
        token="t0ken",  # noqa: S107 - the fake's own
        time_zone: str = "UTC",
    ):
        super().__init__()
        self.issues, self.deployment, self.time_zone = issues, deployment, time_zone
        if deployment == "cloud":
            self.auth = "Basic " + base64.b64encode(f"{login}:{token}".encode()).decode()
        else:
            self.auth = f"Bearer {token}"
        self.by_key = {issue["key"]: issue for issue in issues}

    def matching(self, jql: str) -> list[dict]:
        return [issue for issue in self.issues if jql_matches(jql, issue, ZoneInfo(self.time_zone))]

    def route(self, request: Request) -> Reply:
        if request.headers.get("authorization") != self.auth:
            return Reply(401, {"errorMessages": ["You are not authenticated. Authentication required."]})
        if request.path == f"/rest/api/{3 if self.deployment == 'cloud' else 2}/myself":
            return Reply(json={"accountId": "acc-bot", "displayName": "Evidence bot", "timeZone": self.time_zone})
        if self.deployment == "cloud":
            if request.path == "/rest/api/3/search/approximate-count" and request.method == "POST":
                return Reply(json={"count": len(self.matching(request.body["jql"]))})
            if request.path == "/rest/api/3/search/jql":
                return self._cloud_search(request)
            match = re.fullmatch(r"/rest/api/3/issue/([^/]+)/changelog", request.path)
            if match:
                return self._cloud_changelog(match[1], request)
        else:
            if request.path == "/rest/api/2/search":
                return self._dc_search(request)
            match = re.fullmatch(r"/rest/api/2/issue/([^/]+)", request.path)
            if match and match[1] in self.by_key:
                return Reply(json=self._issue(self.by_key[match[1]], embedded=None))
        return Reply(404, {"errorMessages": [f"No such resource {request.path}"]})

    def _issue(self, issue: dict, embedded: int | None) -> dict:
        histories = issue["_histories"]
        shown = histories if embedded is None else histories[:embedded]
        body = {key: value for key, value in issue.items() if key != "_histories"}
        body["changelog"] = {"startAt": 0, "maxResults": len(shown), "total": len(histories), "histories": shown}
        return body

    def page_slice(self, start: int, size: int, jql: str = "") -> list[dict]:
        return [self._issue(issue, EMBEDDED_HISTORIES) for issue in self.matching(jql)[start : start + size]]

    def _cloud_search(self, request: Request) -> Reply:
        size = min(int(request.query.get("maxResults", 50)), 100)
        token = request.query.get("nextPageToken")
        start = int(base64.urlsafe_b64decode(token).decode().split(":")[1]) if token else 0
        jql = request.query.get("jql", "")
        issues = self.page_slice(start, size, jql)
        body: dict[str, Any] = {"issues": issues, "isLast": start + size >= len(self.matching(jql))}
        if not body["isLast"]:
            body["nextPageToken"] = base64.urlsafe_b64encode(f"offset:{start + size}".encode()).decode()
        return Reply(json=body)

    def _cloud_changelog(self, key: str, request: Request) -> Reply:
        histories = self.by_key[key]["_histories"]
        start, size = int(request.query.get("startAt", 0)), min(int(request.query.get("maxResults", 100)), 3)
        values = histories[start : start + size]
        return Reply(
            json={
                "startAt": start,
                "maxResults": size,
                "total": len(histories),
                "isLast": start + size >= len(histories),
                "values": values,
            }
        )

    def _dc_search(self, request: Request) -> Reply:
        size = min(int(request.query.get("maxResults", 50)), 100)
        start = int(request.query.get("startAt", 0))
        jql = request.query.get("jql", "")
        return Reply(
            json={
                "expand": "schema,names",
                "startAt": start,
                "maxResults": size,
                "total": len(self.matching(jql)),
                "issues": self.page_slice(start, size, jql),
            }
        )


def cloud_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


# --- GitHub ---------------------------------------------------------------------------------------


def gh_user(login: str) -> dict[str, Any]:
    return {"login": login, "id": abs(hash(login)) % 10**6, "type": "User"}


def github_pull(
    number: int,
    *,
    merged_at: datetime | None,
    author="alice",
    merger=None,
    title=None,
    branch=None,
    labels=(),
    reviews=(),
    dismissed: dict[int, datetime] | None = None,
    body="",
    updated_at: datetime | None = None,
) -> dict[str, Any]:
    """A pull request; ``reviews`` are ``(login, state, time)``, ``dismissed`` their dismissal times by index.

    As GitHub does, a dismissed review is listed with state DISMISSED and its own submission time;
    only its timeline's ``review_dismissed`` event says when, and what it was before.
    """
    created = (merged_at or updated_at) - timedelta(hours=5)
    dismissed = dismissed or {}
    reviews = [(index, *review) for index, review in enumerate(reviews)]
    events = [(created, {"event": "committed", "sha": f"{number:040x}", "message": "a commit"})]
    events += [
        (
            moment,
            {"event": "reviewed", "id": number * 100 + i, "state": state.lower(), "submitted_at": _gh_time(moment)},
        )
        for i, _, state, moment in reviews
    ]
    events += [
        (
            dismissed[i],
            {
                "event": "review_dismissed",
                "id": 900_000 + number * 100 + i,
                "actor": gh_user("admin"),
                "created_at": _gh_time(dismissed[i]),
                "dismissed_review": {
                    "state": state.lower(),
                    "review_id": number * 100 + i,
                    "dismissal_message": "Stale after new commits",
                    "dismissal_commit_id": None,
                },
            },
        )
        for i, _, state, _ in reviews
        if i in dismissed
    ]
    if merged_at:
        events.append((merged_at, {"event": "merged", "id": 800_000 + number, "created_at": _gh_time(merged_at)}))
    return {
        "number": number,
        "html_url": f"https://github.example/acme/app/pull/{number}",
        "state": "closed",
        "title": title if title is not None else f"CHG-{number} change {number}",
        "body": body,
        "user": gh_user(author),
        "labels": [{"name": label} for label in labels],
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "updated_at": (updated_at or merged_at).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "merged_at": merged_at.strftime("%Y-%m-%dT%H:%M:%SZ") if merged_at else None,
        "merge_commit_sha": f"{number + 5000:040x}" if merged_at else None,
        "head": {"ref": branch or f"feature/{number}", "sha": f"{number:040x}"},
        "base": {"ref": "main", "repo": {"full_name": "acme/app"}},
        "_merged_by": (merger or author) if merged_at else None,
        "_reviews": [
            {
                "id": number * 100 + index,
                "user": gh_user(login),
                "state": "DISMISSED" if index in dismissed else state,
                "submitted_at": _gh_time(moment),
            }
            for index, login, state, moment in reviews
        ],
        "_timeline": [
            {"node_id": f"TE_{number}_{position}", **event}
            for position, (_, event) in enumerate(sorted(events, key=lambda pair: pair[0]))
        ],
    }


def _gh_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeGitHub(FakeApi):
    """GitHub's REST API for one repository ``acme/app``; ``required`` checks on ``main`` (None: unprotected)."""

    REPO = "acme/app"

    def __init__(self, pulls: list[dict], *, token="ghp_test", required=("ci/build",), deployments=None):  # noqa: S107
        super().__init__()
        self.pulls = sorted(pulls, key=lambda pull: pull["updated_at"], reverse=True)
        self.token, self.required = token, required
        self.deployments = deployments or {}
        self.check_conclusions: dict[int, str] = {}
        self.remaining = 5000

    def route(self, request: Request) -> Reply:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return Reply(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
        if request.headers.get("x-github-api-version") != "2022-11-28":
            return Reply(400, {"message": "missing X-GitHub-Api-Version"})
        reply = self._route(request)
        self.remaining -= 1
        reply.headers = {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-reset": str(int(NOW.timestamp()) + 3600),  # an hour after the collectors' clock
            "x-ratelimit-resource": "core",
            **reply.headers,
        }
        return reply

    def _route(self, request: Request) -> Reply:
        prefix = f"/repos/{self.REPO}"
        path = request.path
        by_number = {pull["number"]: pull for pull in self.pulls}
        if path == "/search/issues":
            return Reply(
                json={"total_count": self._count(request.query["q"]), "incomplete_results": False, "items": []}
            )
        if path == f"{prefix}/pulls":
            return self._paged(request, [self._listed(pull) for pull in self.pulls])
        match = re.fullmatch(rf"{prefix}/pulls/(\d+)(/reviews)?", path)
        if match and int(match[1]) in by_number:
            pull = by_number[int(match[1])]
            if match[2]:
                return self._paged(request, pull["_reviews"])
            merged_by = pull["_merged_by"]
            return Reply(json={**self._listed(pull), "merged_by": gh_user(merged_by) if merged_by else None})
        match = re.fullmatch(rf"{prefix}/issues/(\d+)/timeline", path)
        if match and int(match[1]) in by_number:
            return self._paged(request, by_number[int(match[1])]["_timeline"])
        if path == f"{prefix}/branches/main/protection/required_status_checks":
            if self.required is None:
                return Reply(404, {"message": "Branch not protected"})
            return Reply(
                json={
                    "strict": True,
                    "contexts": list(self.required),
                    "checks": [{"context": c} for c in self.required],
                }
            )
        match = re.fullmatch(rf"{prefix}/commits/([0-9a-f]+)/(check-runs|status)", path)
        if match:
            number = int(match[1], 16)
            conclusion = self.check_conclusions.get(number, "success")
            if match[2] == "status":
                return Reply(json={"state": "success", "statuses": [], "total_count": 0})
            runs = [
                {
                    "id": number * 10 + i,
                    "name": name,
                    "status": "completed",
                    "conclusion": conclusion,
                    "head_sha": match[1],
                }
                for i, name in enumerate(self.required or ())
            ]
            return self._paged(request, runs, wrap="check_runs")
        if path == f"{prefix}/deployments":
            sha = request.query.get("sha")
            return self._paged(request, self.deployments.get(sha, []))
        return Reply(404, {"message": "Not Found"})

    def _listed(self, pull: dict) -> dict:
        return {key: value for key, value in pull.items() if not key.startswith("_")}

    def _paged(self, request: Request, items: list, wrap: str | None = None) -> Reply:
        size = min(int(request.query.get("per_page", 30)), 100)
        page = int(request.query.get("page", 1))
        chunk = items[(page - 1) * size : page * size]
        last = max(1, -(-len(items) // size))
        links = []
        query = {key: value for key, value in request.query.items() if key != "page"}
        if page < last:
            links.append(f'<{self.url}{request.path}?{urlencode({**query, "page": page + 1})}>; rel="next"')
            links.append(f'<{self.url}{request.path}?{urlencode({**query, "page": last})}>; rel="last"')
        headers = {"Link": ", ".join(links)} if links else {}
        body = {"total_count": len(items), wrap: chunk} if wrap else chunk
        return Reply(json=body, headers=headers)

    def _count(self, query: str) -> int:
        match = re.search(r"(updated|merged):(\S+)\.\.(\S+)", query)
        assert match and f"repo:{self.REPO}" in query and "is:pr is:merged" in query, query
        first, last = (datetime.fromisoformat(value.replace("Z", "+00:00")) for value in (match[2], match[3]))
        count = 0
        for pull in self.pulls:
            if not pull["merged_at"]:
                continue
            moment = datetime.fromisoformat(pull[f"{match[1]}_at"].replace("Z", "+00:00"))
            count += first <= moment <= last
        return count


# --- running a collector as the extract task does ------------------------------------------------

NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


@dataclass
class Connection:
    """What ``BaseHook.get_connection`` returns, as far as the collectors read it."""

    host: str | None = None
    login: str | None = None
    password: str | None = None
    schema: str | None = None
    port: int | None = None
    extra_dejson: dict = field(default_factory=dict)


def run_collector(
    kind: str,
    options: dict,
    staging: Path,
    *,
    connections: dict[str, Connection] | None = None,
    params: dict | None = None,
    watermark: bytes | None = None,
    now: datetime = NOW,
    logical_date: datetime = NOW,
    sleeps: list[float] | None = None,
    resolve_path=Path,
    source: str = "tickets-src",
):
    """Collect like ``pipeline.extract_source`` (finish only on success), recording sleeps instead of sleeping."""
    from conftest import bundle_writer
    from soc2_evidence.collectors import CollectContext, collector_for, source_config
    from soc2_evidence.core.credentials import Credentials
    from soc2_evidence.core.evidence import RunContext
    from soc2_evidence.core.redaction import Redactor

    collector = collector_for(kind)
    run = RunContext("evidence_tickets", f"scheduled__{logical_date.isoformat()}", logical_date)
    writer = bundle_writer(
        staging,
        run,
        family="tickets",
        source=source,
        kind=kind,
        collector=collector.__name__,
        collector_version=collector.VERSION,
        redactor=Redactor(b"test-key"),
        now=lambda: now,
    )
    recorded = sleeps if sleeps is not None else []
    context = CollectContext(
        resolve_path=resolve_path,
        credentials=Credentials(lambda conn_id: (connections or {})[conn_id]),
        params=params or {},
        last_committed_item=lambda name: watermark if name == "watermark.json" else None,
        sleep=recorded.append,
        now=lambda: now,
    )
    configured = source_config(source, kind, options)
    try:
        collector.collect(configured, writer, context)
    except Exception:
        assert not (writer.directory / "bundle.json").exists()
        raise
    return writer.finish()


def items(bundle, name: str) -> Any:
    staged = next(staged for staged in bundle.items if staged.item.name == name)
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in staged.path.read_text().splitlines()]
    return json.loads(staged.path.read_bytes())
