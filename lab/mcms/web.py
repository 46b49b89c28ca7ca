"""MCMS portal and API in one process, the way Kestrel serves both behind IIS.

Run from an unzipped release: ``python <release>/mcms/web.py --host 127.0.0.1 --port N --data DATA_DIR``.
The version it serves and the release faults it plays come from ``<release>/release.json``.
"""

from __future__ import annotations

import argparse
import hmac
import json
import re
import secrets
import signal
import socket
import socketserver
import sqlite3
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

if __name__ == "__main__" and not __package__:
    # Started as a script from a release directory: make the release root importable (PEP 366).
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "mcms"

from . import metrics, pages, store

RELEASE_ROOT = Path(__file__).resolve().parent.parent
STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}

DEMO_USER = "operator"
DEMO_PASSWORD = "operator-lab"  # noqa: S105 - the Lab's published demo account
SESSION_COOKIE = "mcms_session"
CSRF_COOKIE = "mcms_csrf"
HEARTBEAT_MAX_AGE_S = 10.0
SYNC_MAX_AGE_S = 30.0
DEGRADED_DELAY_S = 0.3
ROUTER_VIA = "mcms-lab-router"  # the Lab router's Via token: a request that came through the public address
MAX_BODY = 64 * 1024
MAX_NAME = 100
BACKLOG_JOBS_PER_S = 10.0  # queue-backlog-after-routed: jobs added to the node's own queue per second
BACKLOG_CAP = 5000  # ... up to this many, so a Lab kept running with the fault does not grow without end

HTML = "text/html; charset=utf-8"
JSON = "application/json; charset=utf-8"

SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    # form-action and base-uri have no default-src fallback, so scanners rightly expect them spelled out.
    (
        "Content-Security-Policy",
        "default-src 'self'; base-uri 'self'; form-action 'self'; object-src 'none'; frame-ancestors 'none'",
    ),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Cross-Origin-Embedder-Policy", "require-corp"),
)

RANK = {"Healthy": 0, "Degraded": 1, "Unhealthy": 2}
ROUTES = frozenset({
    "/", "/login", "/logout", "/dashboard", "/items", "/items/new", "/health", "/swagger", "/swagger/index.html",
    "/swagger/v1/swagger.json", "/api/items", "/api/status", "/auth/negotiate", "/metrics",
})  # fmt: skip
"""The routes the request counter names (anything else is counted as path="other")."""
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


def log(message: str) -> None:
    stamp = datetime.now().astimezone().isoformat(timespec="milliseconds")
    sys.stderr.write(f"{stamp} web {message}\n")
    sys.stderr.flush()


@dataclass(frozen=True)
class Faults:
    """Release faults from release.json: a broken release is a property of the package, not of the host."""

    a11y_regression: bool = False
    insecure_headers: bool = False
    unhealthy: bool = False
    degrade_after_s: float | None = None
    degrade_after_routed_s: float | None = None
    queue_backlog_after_routed_s: float | None = None

    @classmethod
    def parse(cls, names: tuple[str, ...]) -> Faults:
        degrade: float | None = None
        routed: float | None = None
        backlog: float | None = None
        for name in names:
            if name.startswith("degrade-after:"):
                degrade = float(name.partition(":")[2])
            elif name.startswith("degrade-after-routed:"):
                routed = float(name.partition(":")[2])
            elif name.startswith("queue-backlog-after-routed:"):
                backlog = float(name.partition(":")[2])
            elif name not in ("a11y-regression", "insecure-headers", "unhealthy"):
                log(f"ignoring unknown release fault {name!r}")
        return cls(
            a11y_regression="a11y-regression" in names,
            insecure_headers="insecure-headers" in names,
            unhealthy="unhealthy" in names,
            degrade_after_s=degrade,
            degrade_after_routed_s=routed,
            queue_backlog_after_routed_s=backlog,
        )

    @property
    def routed(self) -> bool:
        """A fault that counts from the first request through the router."""
        return self.degrade_after_routed_s is not None or self.queue_backlog_after_routed_s is not None


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    cookies: dict[str, str]

    def form(self) -> dict[str, str]:
        parsed = parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)
        return {key: values[0] for key, values in parsed.items()}

    def arg(self, name: str, default: str = "") -> str:
        return self.query.get(name, [default])[0]


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = HTML
    headers: list[tuple[str, str]] = field(default_factory=list)
    cache_control: str = "no-store"


def parse_cookies(header: str) -> dict[str, str]:
    # http.cookies rejects whole headers for one odd cookie; browsers and scanners send odd cookies.
    cookies: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name:
            cookies.setdefault(name, value.strip('"'))
    return cookies


def json_response(status: int, data: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    body = json.dumps(data, indent=2).encode("utf-8") + b"\n"
    return Response(status, body, JSON, headers or [])


def safe_next(path: str) -> str:
    """Only local paths: a login form must not become an open redirect."""
    if path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path
    return "/dashboard"


class Portal:
    def __init__(self, release: store.Release, data_dir: Path, shared_dir: Path | None, node: str) -> None:
        self.release = release
        self.version = release.version
        self.faults = Faults.parse(release.faults)
        self.data_dir = data_dir
        self.shared_dir = shared_dir
        self.node = node
        self.started = time.monotonic()
        self.started_at = time.time()
        self.routed_since: float | None = None  # first request through the router (the *-after-routed faults)
        self.http = metrics.HttpMetrics()
        self.spec = pages.openapi(release.version)
        self.routes: dict[str, dict[str, Callable[[Request], Response]]] = {
            "/": {"GET": self.home},
            "/login": {"GET": self.login_form, "POST": self.login},
            "/logout": {"GET": self.logout, "POST": self.logout},
            "/dashboard": {"GET": self.dashboard},
            "/items": {"GET": self.items},
            "/items/new": {"GET": self.new_item_form, "POST": self.new_item},
            "/health": {"GET": self.health},
            "/swagger": {"GET": self.swagger_redirect},
            "/swagger/index.html": {"GET": self.swagger_index},
            "/swagger/v1/swagger.json": {"GET": self.swagger_json},
            "/api/items": {"GET": self.api_list, "POST": self.api_create},
            "/api/status": {"GET": self.api_status},
            "/auth/negotiate": {"GET": self.negotiate},
            "/metrics": {"GET": self.metrics},
        }

    # -- plumbing

    def note_routed(self, req: Request) -> None:
        """The first request that came through the router (``Via: 1.1 mcms-lab-router``) starts the clock of
        the *-after-routed faults, so a slot verified on its own address fails only once traffic is switched
        to it."""
        if self.routed_since is not None or not self.faults.routed:
            return
        if ROUTER_VIA not in req.headers.get("via", ""):
            return
        self.routed_since = time.monotonic()
        faults = self.faults
        if faults.degrade_after_routed_s is not None:
            log(f"first request through the router: degrading in {faults.degrade_after_routed_s:g} s")
        if faults.queue_backlog_after_routed_s is not None:
            log(
                f"first request through the router: queue backlog in {faults.queue_backlog_after_routed_s:g} s"
            )

    def degraded(self, req: Request) -> bool:
        """degrade-after:<s> counts from the start; degrade-after-routed:<s> from the first request that came
        through the router. Once degraded, every request fails, direct ones too."""
        now = time.monotonic()
        faults = self.faults
        if faults.degrade_after_s is not None and now - self.started >= faults.degrade_after_s:
            return True
        if faults.degrade_after_routed_s is None or self.routed_since is None:
            return False
        return now - self.routed_since >= faults.degrade_after_routed_s

    def start_background(self) -> None:
        """queue-backlog-after-routed:<s>: <s> seconds after the first request through the router, this release
        keeps adding jobs to its node's own queue, which its worker never drains (lab/mcms/worker.py): the
        queue depth climbs while /health and every page stay 200 and fast. Only the metrics show it."""
        if self.faults.queue_backlog_after_routed_s is not None:
            threading.Thread(target=self._backlog, name="queue-backlog", daemon=True).start()

    def _backlog(self) -> None:
        after = self.faults.queue_backlog_after_routed_s or 0.0
        added = 0
        while added < BACKLOG_CAP:
            time.sleep(1 / BACKLOG_JOBS_PER_S)
            since = self.routed_since
            if since is None or time.monotonic() - since < after:
                continue
            if added == 0:
                log(
                    f"queue backlog: {BACKLOG_JOBS_PER_S:g} jobs/s onto node {self.node}'s queue, not drained"
                )
            try:
                with store.database(self.data_dir) as conn:
                    store.enqueue_node_job(conn, self.node)
                added += 1
            except sqlite3.Error as exc:
                log(f"queue backlog: {exc}")

    def handle(self, req: Request) -> Response:
        self.note_routed(req)
        if req.path == "/metrics":
            # The metrics endpoint answers even when the release is degraded: it is how one sees that it is.
            return self.route(req)
        if self.degraded(req):
            time.sleep(DEGRADED_DELAY_S)
            if self._wants_json(req.path):
                return json_response(500, {"error": "service degraded"})
            return self.page(
                500, pages.message("Service error", "The service could not complete the request.")
            )
        return self.route(req)

    def route(self, req: Request) -> Response:
        methods = self._methods_for(req.path)
        if methods is None:
            return self.not_found(req)
        handler = methods.get("GET" if req.method == "HEAD" else req.method)
        if handler is None:
            allowed = sorted({*methods, "HEAD"} if "GET" in methods else set(methods))
            return self._not_allowed(req, allowed)
        return handler(req)

    def _methods_for(self, path: str) -> dict[str, Callable[[Request], Response]] | None:
        if path.startswith("/static/"):
            return {"GET": self.static}
        match = re.fullmatch(r"/api/items/(\d{1,18})", path)
        if match:
            item_id = int(match.group(1))
            return {"GET": lambda _req: self.api_get(item_id)}
        return self.routes.get(path)

    @staticmethod
    def _wants_json(path: str) -> bool:
        return path.startswith(("/api/", "/health", "/auth/", "/swagger/v1/"))

    def _not_allowed(self, req: Request, allowed: list[str]) -> Response:
        headers = [("Allow", ", ".join(allowed))]
        if self._wants_json(req.path):
            return json_response(405, {"error": f"method {req.method} not allowed"}, headers)
        resp = self.page(405, pages.message("Method not allowed", f"{req.method} is not allowed here."))
        resp.headers.extend(headers)
        return resp

    def page(self, status: int, page: pages.Page, user: str | None = None) -> Response:
        html = pages.layout(page, version=self.version, user=user)
        return Response(status, html.encode("utf-8"))

    def cookie(self, name: str, value: str, *, same_site: str = "Lax", max_age: int | None = None) -> str:
        parts = [f"{name}={value}", "Path=/"]
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        if not self.faults.insecure_headers:
            parts += ["HttpOnly", f"SameSite={same_site}"]
        return "; ".join(parts)

    def user(self, req: Request) -> str | None:
        token = req.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        with store.database(self.data_dir) as conn:
            return store.session_user(conn, token)

    def csrf(self, req: Request) -> tuple[str, list[tuple[str, str]]]:
        """Double-submit token: the same random value in an HttpOnly cookie and in a hidden form field."""
        token = req.cookies.get(CSRF_COOKIE, "")
        if re.fullmatch(r"[A-Za-z0-9_-]{32,64}", token):
            return token, []
        token = secrets.token_urlsafe(32)
        return token, [("Set-Cookie", self.cookie(CSRF_COOKIE, token, same_site="Strict"))]

    @staticmethod
    def csrf_ok(req: Request, form: dict[str, str]) -> bool:
        cookie = req.cookies.get(CSRF_COOKIE, "")
        sent = form.get(pages.CSRF_FIELD, "")
        return bool(cookie) and hmac.compare_digest(cookie.encode(), sent.encode())

    def csrf_failed(self, user: str | None) -> Response:
        text = "The form has expired. Reload the page and submit it again."
        return self.page(400, pages.message("Form expired", text), user)

    def login_required(self, req: Request) -> Response:
        return Response(302, headers=[("Location", f"/login?next={quote(req.path)}")])

    # -- portal

    def home(self, req: Request) -> Response:
        return self.page(200, pages.home(a11y_regression=self.faults.a11y_regression), self.user(req))

    def login_form(self, req: Request, error: str | None = None) -> Response:
        token, headers = self.csrf(req)
        next_path = safe_next(req.arg("next", "/dashboard"))
        resp = self.page(200, pages.login(csrf=token, next_path=next_path, error=error), self.user(req))
        resp.headers.extend(headers)
        return resp

    def login(self, req: Request) -> Response:
        form = req.form()
        if not self.csrf_ok(req, form):
            return self.csrf_failed(None)
        user_ok = hmac.compare_digest(form.get("user", "").encode(), DEMO_USER.encode())
        password_ok = hmac.compare_digest(form.get("password", "").encode(), DEMO_PASSWORD.encode())
        if not (user_ok and password_ok):
            req.query["next"] = [form.get("next", "/dashboard")]
            return self.login_form(req, error="The user name or password is not correct.")
        token = secrets.token_urlsafe(32)
        with store.database(self.data_dir) as conn:
            store.create_session(conn, token, DEMO_USER)
        return Response(
            303,
            headers=[
                ("Location", safe_next(form.get("next", "/dashboard"))),
                ("Set-Cookie", self.cookie(SESSION_COOKIE, token)),
            ],
        )

    def logout(self, req: Request) -> Response:
        token = req.cookies.get(SESSION_COOKIE)
        if token:
            with store.database(self.data_dir) as conn:
                store.end_session(conn, token)
        return Response(
            303, headers=[("Location", "/"), ("Set-Cookie", self.cookie(SESSION_COOKIE, "", max_age=0))]
        )

    def dashboard(self, req: Request) -> Response:
        user = self.user(req)
        if user is None:
            return self.login_required(req)
        snap = self.snapshot()
        with store.database(self.data_dir) as conn:
            all_items = store.list_items(conn)
        page = pages.dashboard(
            version=self.version,
            worker_status=snap["components"]["worker"]["status"],
            queue_depth=snap["components"]["worker"]["queue_depth"],
            sync_age=snap["components"]["shared_drive"]["sync_age_s"],
            items_total=len(all_items),
            items_processed=sum(1 for i in all_items if i.status == "processed"),
            a11y_regression=self.faults.a11y_regression,
        )
        return self.page(200, page, user)

    def items(self, req: Request) -> Response:
        user = self.user(req)
        if user is None:
            return self.login_required(req)
        with store.database(self.data_dir) as conn:
            rows = [(i.id, i.name, i.status) for i in store.list_items(conn)]
        return self.page(200, pages.items(rows), user)

    def new_item_form(self, req: Request) -> Response:
        user = self.user(req)
        if user is None:
            return self.login_required(req)
        token, headers = self.csrf(req)
        resp = self.page(200, pages.new_item(csrf=token, error=None), user)
        resp.headers.extend(headers)
        return resp

    def new_item(self, req: Request) -> Response:
        user = self.user(req)
        if user is None:
            return self.login_required(req)
        form = req.form()
        if not self.csrf_ok(req, form):
            return self.csrf_failed(user)
        name = form.get("name", "").strip()
        if not 1 <= len(name) <= MAX_NAME:
            token, headers = self.csrf(req)
            error = f"Enter an item name of 1 to {MAX_NAME} characters."
            resp = self.page(400, pages.new_item(csrf=token, error=error, name=name[:MAX_NAME]), user)
            resp.headers.extend(headers)
            return resp
        with store.database(self.data_dir) as conn:
            store.create_item(conn, name)
        return Response(303, headers=[("Location", "/items")])

    def not_found(self, req: Request) -> Response:
        if self._wants_json(req.path):
            return json_response(404, {"error": f"no resource at {req.path}"})
        return self.page(404, pages.message("Page not found", "There is no page at this address."), None)

    def static(self, req: Request) -> Response:
        name = req.path.removeprefix("/static/")
        path = STATIC_DIR / name
        if not re.fullmatch(r"[a-z0-9-]+\.(css|svg)", name) or not path.is_file():
            return self.not_found(req)
        return Response(
            200, path.read_bytes(), STATIC_TYPES[path.suffix], cache_control="public, max-age=3600"
        )

    # -- service

    def _last_sync(self, shared_dir: Path | None) -> float | None:
        if shared_dir is None:
            return None
        marker = shared_dir / store.SYNC_MARKER
        try:
            text = marker.read_text(encoding="utf-8").strip()
            return datetime.fromisoformat(text).timestamp()
        except ValueError:
            return marker.stat().st_mtime
        except OSError:
            return None

    def snapshot(self) -> dict[str, Any]:
        now = time.time()
        web: dict[str, Any] = {"status": "Healthy"}
        if self.faults.unhealthy:
            web = {"status": "Unhealthy", "description": "start-up self-check failed"}
        worker: dict[str, Any] = {"status": "Unhealthy", "queue_depth": 0, "last_heartbeat": None}
        worker |= {"heartbeat_age_s": None, "pid": None}
        beat: store.Heartbeat | None = None
        try:
            with store.database(self.data_dir) as conn:
                beat = store.heartbeat(conn, self.node)
                worker["queue_depth"] = store.queue_depth(conn)
        except sqlite3.Error as exc:
            web = {"status": "Unhealthy", "description": f"database unavailable: {exc}"}
        if beat is not None:
            age = max(0.0, now - beat.beat_at)
            fresh = beat.state == "running" and age <= HEARTBEAT_MAX_AGE_S
            worker |= {
                "status": "Healthy" if fresh else "Unhealthy",
                "last_heartbeat": store.iso(beat.beat_at),
                "heartbeat_age_s": round(age, 3),
                "pid": beat.pid,
            }
            if beat.state != "running":
                worker["description"] = f"worker {beat.state}"
        shared_dir = self.shared_dir
        if shared_dir is None and beat is not None and beat.shared_dir:
            shared_dir = Path(beat.shared_dir)
        last_sync = self._last_sync(shared_dir)
        sync_age = None if last_sync is None else round(max(0.0, now - last_sync), 3)
        shared = {
            "status": "Healthy" if sync_age is not None and sync_age <= SYNC_MAX_AGE_S else "Degraded",
            "last_sync": None if last_sync is None else store.iso(last_sync),
            "sync_age_s": sync_age,
        }
        components = {"web": web, "worker": worker, "shared_drive": shared}
        overall = max((c["status"] for c in components.values()), key=RANK.__getitem__)
        return {"status": overall, "version": self.version, "components": components}

    def health(self, req: Request) -> Response:
        snap = self.snapshot()
        return json_response(503 if snap["status"] == "Unhealthy" else 200, snap)

    def api_status(self, req: Request) -> Response:
        snap = self.snapshot()
        comps = snap["components"]
        return json_response(
            200,
            {
                "version": self.version,
                "node": self.node,
                "status": snap["status"],
                "queue_depth": comps["worker"]["queue_depth"],
                "worker": comps["worker"],
                "shared_drive": comps["shared_drive"],
            },
        )

    @staticmethod
    def path_label(path: str) -> str:
        """The route a request went to, for the request counter: never the raw URL (its cardinality is the
        client's to choose)."""
        if path.startswith("/static/"):
            return "/static/"
        if re.fullmatch(r"/api/items/\d{1,18}", path):
            return "/api/items/{id}"
        return path if path in ROUTES else "other"

    def metrics(self, req: Request) -> Response:
        """Prometheus text format: requests and their duration, the worker queue depth, the app pool state."""
        state, age, depth, pending = "Unknown", None, float("nan"), float("nan")
        try:
            with store.database(self.data_dir) as conn:
                beat = store.heartbeat(conn, self.node)
                depth = store.node_queue_depth(conn, self.node)
                pending = store.queue_depth(conn)
        except sqlite3.Error:
            beat = None
        if beat is not None:
            age = max(0.0, time.time() - beat.beat_at)
            if beat.state != "running":
                state = "Stopped"
            elif age <= HEARTBEAT_MAX_AGE_S:
                state = "Started"
        m = metrics
        lines = m.family("mcms_build_info", "gauge", "The release this process serves.",
                         [({"version": self.version, "node": self.node}, 1)])  # fmt: skip
        lines += self.http.render()
        lines += m.family(
            "mcms_worker_queue_depth", "gauge",
            "Jobs waiting for this node's worker: the shared queue, the node's own queue and jobs in progress.",
            [({}, depth)],
        )  # fmt: skip
        lines += m.family("mcms_jobs_pending", "gauge", "Jobs queued or in progress in the whole shared queue.",
                          [({}, pending)])  # fmt: skip
        lines += m.family(
            "mcms_app_pool_state", "gauge",
            "The app pool (worker process) state, one series per state: 1 for the current one.",
            [({"state": s}, 1 if s == state else 0) for s in ("Started", "Stopped", "Unknown")],
        )  # fmt: skip
        lines += m.family("mcms_app_pool_up", "gauge", "1 when the app pool (worker process) is started.",
                          [({}, 1 if state == "Started" else 0)])  # fmt: skip
        if age is not None:
            lines += m.family("mcms_worker_heartbeat_age_seconds", "gauge",
                              "Seconds since the worker's last heartbeat.", [({}, round(age, 3))])  # fmt: skip
        lines += m.family("process_start_time_seconds", "gauge", "Start time of the process since the epoch.",
                          [({}, round(self.started_at, 3))])  # fmt: skip
        return Response(200, ("\n".join(lines) + "\n").encode("utf-8"), m.CONTENT_TYPE)

    def swagger_redirect(self, req: Request) -> Response:
        return Response(301, headers=[("Location", "/swagger/index.html")])

    def swagger_index(self, req: Request) -> Response:
        return self.page(200, pages.swagger_index(self.spec), self.user(req))

    def swagger_json(self, req: Request) -> Response:
        return json_response(200, self.spec)

    def negotiate(self, req: Request) -> Response:
        scheme, _, token = req.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "negotiate" and token.strip():
            # A lab stands in for Kerberos: any SPNEGO token is accepted.
            return json_response(200, {"authenticated": True, "scheme": "Negotiate", "user": "LAB\\operator"})
        return json_response(401, {"error": "authentication required"}, [("WWW-Authenticate", "Negotiate")])

    def api_list(self, req: Request) -> Response:
        with store.database(self.data_dir) as conn:
            return json_response(200, [i.to_json() for i in store.list_items(conn)])

    def api_get(self, item_id: int) -> Response:
        with store.database(self.data_dir) as conn:
            item = store.get_item(conn, item_id)
        if item is None:
            return json_response(404, {"error": f"item {item_id} not found"})
        return json_response(200, item.to_json())

    def api_create(self, req: Request) -> Response:
        if not req.headers.get("content-type", "").lower().startswith("application/json"):
            return json_response(415, {"error": "send the item as application/json"})
        try:
            data = json.loads(req.body or b"null")
        except ValueError:
            return json_response(400, {"error": "the body is not valid JSON"})
        if not isinstance(data, dict) or set(data) != {"name"} or not isinstance(data["name"], str):
            return json_response(400, {"error": 'expected {"name": string}'})
        name = data["name"].strip()
        if not 1 <= len(name) <= MAX_NAME:
            return json_response(400, {"error": f"name must have 1 to {MAX_NAME} characters"})
        with store.database(self.data_dir) as conn:
            item = store.create_item(conn, name)
        return json_response(201, item.to_json(), [("Location", f"/api/items/{item.id}")])


class PortalServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default 5 drops connections when 50 clients arrive through the router
    # On Windows SO_REUSEADDR lets a second server steal a bound port; exclusive use is the safe equivalent.
    allow_reuse_address = sys.platform != "win32"

    def __init__(self, address: tuple[str, int], portal: Portal) -> None:
        self.portal = portal
        super().__init__(address, PortalHandler)

    def server_bind(self) -> None:
        if sys.platform == "win32":
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        # HTTPServer.server_bind resolves the FQDN, which can stall start-up for seconds on a corporate DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])


class PortalHandler(BaseHTTPRequestHandler):
    server: PortalServer
    server_version = "MCMS"
    sys_version = ""

    def version_string(self) -> str:
        # No Python or OS version in the Server header: scanners rightly report that as a leak.
        return self.server_version

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle's algorithm the body of every keep-alive response
    # waited for the client's delayed ACK of the headers (about 40 ms on Linux).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_OPTIONS(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        started = time.perf_counter()
        portal = self.server.portal
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._write(Response(411, b"", JSON), started)
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self._write(json_response(413, {"error": f"body limited to {MAX_BODY} bytes"}), started)
            return
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        req = Request(
            method=self.command,
            path=split.path or "/",
            query=parse_qs(split.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            cookies=parse_cookies(self.headers.get("Cookie", "")),
        )
        try:
            resp = portal.handle(req)
        except Exception:  # noqa: BLE001 - a failing handler is a 500 page, never a dropped connection
            log("error handling request:\n" + traceback.format_exc().rstrip())
            resp = portal.page(
                500, pages.message("Service error", "The service could not complete the request.")
            )
        self._write(resp, started)

    def _write(self, resp: Response, started: float) -> None:
        portal = self.server.portal
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        self.send_header("Cache-Control", resp.cache_control)
        if portal.faults.insecure_headers:
            if resp.content_type == HTML:
                self.send_header("Set-Cookie", "mcms_pref=compact; Path=/")
        else:
            for name, value in SECURITY_HEADERS:
                self.send_header(name, value)
        for name, value in resp.headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)
        elapsed_s = time.perf_counter() - started
        path = urlsplit(getattr(self, "path", "") or "").path or "/"
        if path != "/metrics":
            method = self.command if self.command in HTTP_METHODS else "other"
            portal.http.observe(method, portal.path_label(path), resp.status, elapsed_s)
        self.log_message('"%s" %d %d %.1fms', self.requestline, resp.status, len(resp.body), elapsed_s * 1000)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Protocol errors (bad request line, oversized headers) get the security headers too.
        text = message or HTTPStatus(code).phrase
        self.close_connection = True
        self._write(self.server.portal.page(code, pages.message(f"Error {code}", text)), time.perf_counter())

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Requests are logged once, with their duration, by _write."""

    def log_message(self, format: str, *args: Any) -> None:
        log(f"{self.address_string()} {format % args}")


class _Shutdown(BaseException):
    """Raised by the stop signal handler. A BaseException, like KeyboardInterrupt: socketserver's
    ``except Exception`` around request handling would otherwise swallow a signal that lands mid-accept."""


def _raise_shutdown(signum: int, frame: FrameType | None) -> None:
    raise _Shutdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="MCMS portal and API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--data", type=Path, required=True, help="data directory (database), kept across releases"
    )
    parser.add_argument("--shared", type=Path, help="shared drive; default: the one the worker reports")
    parser.add_argument("--node", default="default", help="node name, pairs the portal with its worker")
    args = parser.parse_args(argv)
    release = store.read_release(RELEASE_ROOT)
    store.init(args.data)
    portal = Portal(release, args.data, args.shared, args.node)
    portal.start_background()
    try:
        server = PortalServer((args.host, args.port), portal)
    except OSError as exc:
        log(f"cannot listen on {args.host}:{args.port}: {exc}")
        return 2
    for name in ("SIGTERM", "SIGINT", "SIGBREAK"):
        signum = getattr(signal, name, None)
        if signum is not None:
            signal.signal(signum, _raise_shutdown)
    faults = ", ".join(release.faults) or "none"
    where = f"http://{args.host}:{args.port}"
    log(f"MCMS {release.version} listening on {where} (node {args.node}, faults: {faults})")
    try:
        server.serve_forever(poll_interval=0.5)
    except (_Shutdown, KeyboardInterrupt):
        log("stopping")
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
