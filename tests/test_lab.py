"""The embedded Lab, tested with real processes on loopback: no mocks, every PID accounted for."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from lab import (
    CURRENT,
    LAB_FAULTS,
    PREVIOUS_STABLE,
    Lab,
    LabError,
    build_package,
    httpc,
    procs,
    read_sha256_file,
    sha256_of,
)
from lab.mcms import pages

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.lab


# -- helpers ---------------------------------------------------------------------------------------


class Markup(HTMLParser):
    """Collects start tags with their attributes and the text of ids, enough to check page structure."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.by_id: dict[str, str] = {}
        self._open: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        ident = dict(attrs).get("id")
        if ident:
            self.by_id[ident] = ""
            self._open.append(ident)
        elif tag not in ("img", "input", "meta", "link", "br"):
            self._open.append("")

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for ident in self._open:
            if ident:
                self.by_id[ident] += data

    def find(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for t, attrs in self.tags if t == tag]


def cookies_from(reply: httpc.HttpReply) -> dict[str, str]:
    """name -> full Set-Cookie value, to check attributes."""
    return {value.split("=", 1)[0]: value for value in reply.header_all("Set-Cookie")}


def cookie_header(*replies: httpc.HttpReply) -> str:
    jar: dict[str, str] = {}
    for reply in replies:
        for name, value in cookies_from(reply).items():
            jar[name] = value.split(";", 1)[0].split("=", 1)[1]
    return "; ".join(f"{k}={v}" for k, v in jar.items())


def csrf_of(reply: httpc.HttpReply) -> str:
    fields = [a for a in Markup(reply.text).find("input") if a.get("name") == pages.CSRF_FIELD]
    assert fields, "form without an anti-CSRF token"
    return str(fields[0]["value"])


def post_form(url: str, form: dict[str, str], cookie: str) -> httpc.HttpReply:
    from urllib.parse import urlencode

    return httpc.request(
        "POST",
        url,
        body=urlencode(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie},
    )


def log_in(base: str) -> str:
    """Sign in as the demo operator; return the Cookie header of the session."""
    form = httpc.get(f"{base}/login")
    cookie = cookie_header(form)
    done = post_form(
        f"{base}/login",
        {
            pages.CSRF_FIELD: csrf_of(form),
            "user": "operator",
            "password": "operator-lab",
            "next": "/dashboard",
        },
        cookie,
    )
    assert done.status == 303, done.text
    return cookie_header(form, done)


def refused(url: str) -> bool:
    try:
        httpc.get(url, timeout=5.0)  # Windows takes about 2 s to report a refused loopback connect
    except ConnectionRefusedError:
        return True
    return False


def wait_until(check: Any, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def all_pids(lab: Lab) -> list[int]:
    state = json.loads(lab.state_path.read_text(encoding="utf-8"))
    pids = [state["sink"]["pid"]] if state["sink"] else []
    if (state.get("router") or {}).get("process"):
        pids.append(state["router"]["process"]["pid"])
    for node in state["nodes"].values():
        pids += [p["pid"] for p in node["processes"].values()]
    return pids


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One Lab shared by the read-mostly tests; tests that stop or redeploy start their own."""
    shared = Lab(tmp_path_factory.mktemp("lab"))
    shared.start()
    yield shared
    shared.stop()


@pytest.fixture
def fresh_lab(tmp_path: Path) -> Iterator[Lab]:
    own = Lab(tmp_path / "lab")
    own.start()
    yield own
    own.stop()


# -- life cycle ------------------------------------------------------------------------------------


def test_start_then_stop_leaves_no_process(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    lab.start()
    try:
        pids = all_pids(lab)
        assert len(pids) == 3  # web, worker, webhook sink
        assert all(procs.pid_alive(p) for p in pids)
        assert lab.public_url == lab.node("blue").url
        assert set(lab.urls()) == {"public", "blue", "webhook"}
        assert lab.packages_dir == tmp_path.resolve() / "artifacts" / "offline"
        for version in (PREVIOUS_STABLE, CURRENT):
            assert (lab.packages_dir / f"MCMS_Setup_{version}.zip").is_file()
            assert (lab.packages_dir / f"MCMS_Setup_{version}.zip.sha256").is_file()
        assert all(d.is_dir() for d in [*lab.log_dirs, lab.notifications_log_dir])
    finally:
        lab.stop()
    assert not [p for p in pids if procs.pid_alive(p)]
    state = json.loads(lab.state_path.read_text(encoding="utf-8"))
    assert state["status"] == "stopped"
    assert state["sink"] is None
    assert all(not n["processes"] for n in state["nodes"].values())
    assert refused(lab.public_url)
    lab.stop()  # idempotent


def test_unknown_fault_is_rejected_with_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="green-unhealthy") as info:
        Lab(tmp_path, faults=["disk-full"])
    assert "disk-full" in str(info.value)
    assert all(f in str(info.value) for f in LAB_FAULTS)


def test_attach_finds_a_kept_lab_started_by_another_process(tmp_path: Path) -> None:
    root = tmp_path / "kept"
    code = f"from pathlib import Path; from lab import Lab; Lab(Path({str(root)!r})).start()"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
    lab = Lab.attach(root)
    assert lab is not None
    pids = all_pids(lab)
    try:
        assert httpc.get(f"{lab.public_url}/health").json()["version"] == CURRENT
        assert lab.node().deployed_version() == CURRENT
        assert lab.node().is_running()
    finally:
        # Not our children: these stops go through the recorded-argv check.
        lab.stop()
    assert not [p for p in pids if procs.pid_alive(p)]
    assert Lab.attach(root) is None


def test_a_pid_that_is_no_longer_ours_is_never_signalled(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert not procs.stop_pid(sleeper.pid, 1.0)  # unknown PID without argv: left alone
        assert not procs.stop_pid(sleeper.pid, 1.0, argv=[sys.executable, "web.py", "--port", "1"])
        assert sleeper.poll() is None
        # A kept Lab whose recorded PID now belongs to this unrelated program.
        fake = {"pid": sleeper.pid, "argv": [sys.executable, "sink.py"], "log": "x.log", "started_at": 0.0}
        state = {"status": "running", "faults": [], "host": "127.0.0.1", "webhook_port": 1}
        state |= {"sink": fake | {"name": "webhook-sink"}, "nodes": {}}
        (tmp_path / "state.json").write_text(json.dumps(state), encoding="utf-8")
        assert Lab.attach(tmp_path) is None
        lab = Lab(tmp_path, faults=["service-stopped"])
        lab.start()  # stops leftovers of the previous state.json first
        lab.stop()
        assert sleeper.poll() is None
        if sys.platform.startswith("linux"):
            assert procs.stop_pid(
                sleeper.pid, 5.0, argv=[sys.executable, "-c", "import time; time.sleep(60)"]
            )
    finally:
        sleeper.kill()
        sleeper.wait()


class OfferedPorts:
    """Stands in for the socket module in lab.procs: the first ``forced`` binds to port 0 are offered
    ``port`` (as if the OS had picked it), later ones get whatever the OS really picks."""

    AF_INET, AF_INET6, SOCK_STREAM = socket.AF_INET, socket.AF_INET6, socket.SOCK_STREAM

    def __init__(self, port: int, forced: int) -> None:
        self.port, self.forced = port, forced
        self.offered: list[int] = []

    def socket(self, *args: Any) -> socket.socket:
        stub = self

        class Offered(socket.socket):
            def getsockname(self) -> Any:
                name = super().getsockname()
                if len(stub.offered) < stub.forced:
                    name = (name[0], stub.port, *name[2:])
                stub.offered.append(int(name[1]))
                return name

        return Offered(*args)


def test_free_port_skips_2024_when_the_os_offers_it(monkeypatch: pytest.MonkeyPatch) -> None:
    offers = OfferedPorts(2024, forced=1)
    monkeypatch.setattr(procs, "socket", offers)
    port = procs.free_port()
    assert offers.offered[0] == 2024
    assert port != 2024
    assert port == offers.offered[-1], offers.offered
    assert len(offers.offered) == 2, offers.offered

    # An OS that offers nothing but 2024 gets a LabError, never 2024.
    monkeypatch.setattr(procs, "socket", OfferedPorts(2024, forced=10_000))
    with pytest.raises(LabError, match=r"no free port found on 127\.0\.0\.1"):
        procs.free_port()


def test_free_port_never_hands_out_the_same_port_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    first = procs.free_port()
    offers = OfferedPorts(first, forced=1)  # the OS offers it again once it is free
    monkeypatch.setattr(procs, "socket", offers)
    second = procs.free_port()
    assert offers.offered[0] == first
    assert second not in (first, 2024)


# -- the service -----------------------------------------------------------------------------------


def test_health_reports_version_and_components(lab: Lab) -> None:
    reply = httpc.get(f"{lab.public_url}/health")
    assert reply.status == 200
    assert "python" not in (reply.header("Server") or "x").lower()
    health = reply.json()
    assert health["status"] == "Healthy"
    assert health["version"] == CURRENT == lab.node().deployed_version()
    comps = health["components"]
    assert comps["web"]["status"] == "Healthy"
    assert comps["worker"]["status"] == "Healthy"
    assert comps["worker"]["heartbeat_age_s"] < 10
    assert isinstance(comps["worker"]["queue_depth"], int)
    datetime.fromisoformat(comps["worker"]["last_heartbeat"])
    assert comps["shared_drive"]["status"] == "Healthy"
    assert comps["shared_drive"]["sync_age_s"] < 30
    datetime.fromisoformat(comps["shared_drive"]["last_sync"])


@pytest.mark.parametrize("path", ["/", "/login", "/swagger/index.html", "/no-such-page"])
def test_pages_are_accessible_and_send_security_headers(lab: Lab, path: str) -> None:
    reply = httpc.get(lab.public_url + path)
    assert reply.status == (404 if path == "/no-such-page" else 200)
    assert reply.header("Content-Type") == "text/html; charset=utf-8"
    csp = reply.header("Content-Security-Policy") or ""
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert reply.header("X-Frame-Options") == "DENY"
    assert reply.header("X-Content-Type-Options") == "nosniff"
    assert reply.header("Referrer-Policy")
    assert reply.header("Cache-Control") == "no-store"
    page = Markup(reply.text)
    assert page.find("html")[0].get("lang") == "en"
    assert len(page.find("h1")) == 1
    assert page.find("title")
    assert {"header", "nav", "main", "footer"} <= {t for t, _ in page.tags}
    assert page.find("a")[0].get("href") == "#main"
    assert page.find("main")[0].get("id") == "main"
    assert all(img.get("alt") is not None for img in page.find("img"))
    assert not [a for _, attrs in page.tags for a in attrs if a.startswith("on")]
    assert "style=" not in reply.text
    assert "<script" not in reply.text
    labelled = {a.get("for") for a in page.find("label")}
    assert all(i.get("id") in labelled for i in page.find("input") if i.get("type") != "hidden")
    assert "fault-low-contrast" not in reply.text


def test_login_dashboard_and_item_form(lab: Lab) -> None:
    base = lab.public_url
    anonymous = httpc.get(f"{base}/dashboard")
    assert anonymous.status == 302
    assert anonymous.header("Location") == "/login?next=/dashboard"
    form = httpc.get(f"{base}/login")
    bad = post_form(
        f"{base}/login",
        {pages.CSRF_FIELD: csrf_of(form), "user": "operator", "password": "wrong"},
        cookie_header(form),
    )
    assert bad.status == 200
    assert 'role="alert"' in bad.text
    forged = post_form(f"{base}/login", {"user": "operator", "password": "operator-lab"}, cookie_header(form))
    assert forged.status == 400

    good = post_form(
        f"{base}/login",
        {
            pages.CSRF_FIELD: csrf_of(form),
            "user": "operator",
            "password": "operator-lab",
            "next": "/dashboard",
        },
        cookie_header(form),
    )
    assert good.status == 303
    assert good.header("Location") == "/dashboard"
    session = cookies_from(good)["mcms_session"]
    assert all(flag in session for flag in ("HttpOnly", "SameSite=Lax", "Path=/"))
    cookie = cookie_header(form, good)

    dash = httpc.get(f"{base}/dashboard", headers={"Cookie": cookie})
    assert dash.status == 200
    assert dash.header("Cache-Control") == "no-store"
    ids = Markup(dash.text).by_id
    assert ids["served-version"] == CURRENT
    assert ids["worker-status"] == "Healthy"
    assert ids["queue-depth"].isdigit()
    assert "sync-age" in ids

    new = httpc.get(f"{base}/items/new", headers={"Cookie": cookie})
    created = post_form(f"{base}/items/new", {pages.CSRF_FIELD: csrf_of(new), "name": "Form item"}, cookie)
    assert created.status == 303
    assert created.header("Location") == "/items"
    listing = httpc.get(f"{base}/items", headers={"Cookie": cookie})
    assert 'id="items-table"' in listing.text
    assert re.search(r"Form item</td><td[^>]*>(queued|processed)<", listing.text)

    out = httpc.get(f"{base}/logout", headers={"Cookie": cookie})
    assert out.status == 303
    assert httpc.get(f"{base}/dashboard", headers={"Cookie": cookie}).status == 302


def test_worker_processes_an_item_and_mirrors_it_to_the_shared_drive(lab: Lab) -> None:
    created = httpc.request("POST", f"{lab.public_url}/api/items", json_body={"name": "Invoice 42"})
    assert created.status == 201
    item = created.json()
    assert item["status"] == "queued"
    assert item["name"] == "Invoice 42"
    assert created.header("Location") == f"/api/items/{item['id']}"

    def processed() -> bool:
        return bool(httpc.get(f"{lab.public_url}/api/items/{item['id']}").json()["status"] == "processed")

    assert wait_until(processed), "the worker did not process the item"
    name = f"item-{item['id']:06d}.json"
    assert (lab.data_dir / "outbox" / name).is_file()
    mirrored = wait_until((lab.shared_dir / name).is_file)
    assert mirrored, "the outbox was not mirrored to the shared drive"
    assert json.loads((lab.shared_dir / name).read_text(encoding="utf-8"))["status"] == "processed"
    marker = datetime.fromisoformat((lab.shared_dir / ".sync_marker").read_text(encoding="utf-8").strip())
    assert time.time() - marker.timestamp() < 5
    status = httpc.get(f"{lab.public_url}/api/status").json()
    assert status["version"] == CURRENT
    assert status["queue_depth"] == 0
    assert status["shared_drive"]["sync_age_s"] < 5
    listed = httpc.get(f"{lab.public_url}/api/items").json()
    assert any(i["id"] == item["id"] for i in listed)
    assert httpc.get(f"{lab.public_url}/api/items/999999").status == 404
    bad = httpc.request("POST", f"{lab.public_url}/api/items", json_body={"name": ""})
    assert bad.status == 400


def test_negotiate_challenges_then_accepts(lab: Lab) -> None:
    challenge = httpc.get(f"{lab.public_url}/auth/negotiate")
    assert challenge.status == 401
    assert challenge.header("WWW-Authenticate") == "Negotiate"
    accepted = httpc.get(f"{lab.public_url}/auth/negotiate", headers={"Authorization": "Negotiate YIIFAKE="})
    assert accepted.status == 200
    assert accepted.json()["authenticated"] is True


def test_swagger_is_a_valid_openapi_3_document(lab: Lab) -> None:
    reply = httpc.get(f"{lab.public_url}/swagger/v1/swagger.json")
    assert reply.status == 200
    assert (reply.header("Content-Type") or "").startswith("application/json")
    spec = reply.json()
    assert re.fullmatch(r"3\.0\.\d", spec["openapi"])
    assert spec["info"]["title"]
    assert spec["info"]["version"] == CURRENT
    assert {"/api/items", "/api/items/{id}", "/api/status", "/health"} <= set(spec["paths"])
    assert set(spec["paths"]["/api/items"]) == {"get", "post"}
    operation_ids = []
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            assert method in {"get", "post", "put", "delete", "patch"}
            assert op["responses"], f"{method} {path} has no responses"
            operation_ids.append(op["operationId"])
            for name in re.findall(r"{(\w+)}", path):
                assert any(p["name"] == name and p["in"] == "path" for p in op["parameters"])
    assert len(operation_ids) == len(set(operation_ids))

    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                yield from ([value] if key == "$ref" else refs(value))
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(spec):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in spec["components"]["schemas"], ref
    index = httpc.get(f"{lab.public_url}/swagger/index.html")
    assert index.status == 200
    for path in spec["paths"]:
        assert f"<code>{path}</code>" in index.text


def test_webhook_sink_records_a_post(lab: Lab) -> None:
    assert httpc.get(lab.webhook_url.rsplit("/", 1)[0] + "/").status == 200
    body = {"event_type": "Deployed", "environment": "Lab", "version": CURRENT}
    reply = httpc.request(
        "POST",
        lab.webhook_url,
        json_body=body,
        headers={"X-Event-Type": "Deployed", "Authorization": "secret"},
    )
    assert reply.status == 200
    assert reply.json() == {"ok": True}
    files = list(lab.notifications_log_dir.glob("notifications_*.jsonl"))
    (log,) = files
    line = json.loads(log.read_text(encoding="utf-8").splitlines()[-1])
    # Named after the day the sink received it (its own timestamp), not "now": no failure at midnight.
    assert log.name == f"notifications_{datetime.fromisoformat(line['received_at']):%Y-%m-%d}.jsonl"
    assert line["body"] == body
    assert line["path"] == "/webhook"
    assert line["headers"]["x-event-type"] == "Deployed"
    assert "authorization" not in line["headers"]
    datetime.fromisoformat(line["received_at"])
    received = httpc.get(lab.webhook_url.rsplit("/", 1)[0] + "/received").json()
    assert received[-1]["body"] == body
    assert httpc.request("POST", lab.webhook_url, body=b"not json").status == 400


# -- rollback drill building blocks --------------------------------------------------------------


def test_stop_deploy_previous_stable_and_start_serves_it(fresh_lab: Lab) -> None:
    node = fresh_lab.node("blue")
    public = fresh_lab.public_url
    with pytest.raises(LabError, match="stop it before deploying"):
        node.deploy(fresh_lab.package(PREVIOUS_STABLE))
    steps = node.stop()
    assert [(s.name, s.result) for s in steps] == [("stop site", "stopped"), ("recycle app pool", "stopped")]
    assert all(s.pid and s.duration_s < 5 for s in steps)
    assert [s.result for s in node.stop()] == ["already stopped", "already stopped"]
    assert refused(public)
    assert not node.is_running()
    assert node.deployed_version() == CURRENT  # still laid out while stopped

    release = node.deploy(fresh_lab.package(PREVIOUS_STABLE))
    assert release == fresh_lab.root / "releases" / f"blue-{PREVIOUS_STABLE}-1"
    assert json.loads((release / "release.json").read_text(encoding="utf-8"))["version"] == PREVIOUS_STABLE
    assert node.deployed_version() == PREVIOUS_STABLE
    assert node.start() > 0
    # The public address does not move: the address used before the stop serves the new release, and
    # state.json (what a later session attaches to) still names it.
    health = httpc.get(f"{public}/health").json()
    assert health["version"] == PREVIOUS_STABLE
    assert health["status"] == "Healthy"
    attached = Lab.attach(fresh_lab.root)
    assert attached is not None
    assert attached.public_url == public
    assert httpc.get(f"{attached.public_url}/health").json()["version"] == PREVIOUS_STABLE
    state = json.loads(fresh_lab.state_path.read_text(encoding="utf-8"))
    assert state["nodes"]["blue"]["version"] == PREVIOUS_STABLE
    assert state["nodes"]["blue"]["release_dir"] == str(release)


def test_failed_node_start_reports_the_log_tail(fresh_lab: Lab) -> None:
    import socket

    node = fresh_lab.node()
    node.stop()
    with socket.socket() as squatter:
        # Bound, not listening: the web cannot bind, and probes are refused rather than left hanging.
        squatter.bind((fresh_lab.host, node.port))
        with pytest.raises(LabError, match="cannot listen"):
            node.start(timeout=10)
    assert not node.is_running()
    node.start()  # the port is free again: LabError within its own timeout otherwise
    assert httpc.get(f"{node.url}/health").json()["status"] == "Healthy"


# -- Lab faults ------------------------------------------------------------------------------------


def test_service_stopped_leaves_the_public_port_refusing(tmp_path: Path) -> None:
    lab = Lab(tmp_path, faults=["service-stopped"])
    lab.start()
    try:
        assert refused(f"{lab.public_url}/health")
        assert refused(f"{lab.public_url}/swagger/index.html")
        node = lab.node()
        assert node.deployed_version() == CURRENT
        assert not node.is_running()
        assert httpc.get(lab.webhook_url.rsplit("/", 1)[0] + "/").status == 200
    finally:
        lab.stop()


def test_bad_package_hash_and_webhook_down(tmp_path: Path) -> None:
    lab = Lab(tmp_path, faults=["bad-package-hash", "webhook-down"])
    lab.start()
    try:
        stable = lab.package(PREVIOUS_STABLE)
        assert read_sha256_file(stable.with_name(stable.name + ".sha256")) != sha256_of(stable)
        current = lab.package(CURRENT)
        assert read_sha256_file(current.with_name(current.name + ".sha256")) == sha256_of(current)
        assert refused(lab.webhook_url)
        assert httpc.get(f"{lab.public_url}/health").status == 200
    finally:
        lab.stop()


@pytest.mark.parametrize("fault", ["a11y-regression", "insecure-headers", "unhealthy", "degrade-after:0.5"])
def test_release_faults_change_what_the_release_serves(lab: Lab, tmp_path: Path, fault: str) -> None:
    node = lab.node()
    node.stop()
    try:
        node.deploy(build_package("9.9.9", tmp_path, faults=[fault]))
        if fault == "unhealthy":
            with pytest.raises(LabError, match="Unhealthy"):
                node.start(timeout=1)
            node.start(require_healthy=False)
            reply = httpc.get(f"{lab.public_url}/health")
            assert reply.status == 503
            assert reply.json()["status"] == "Unhealthy"
            return
        node.start()
        home = httpc.get(f"{lab.public_url}/")
        if fault == "a11y-regression":
            page = Markup(home.text)
            assert [img for img in page.find("img") if "alt" not in img]
            assert [i for i in page.find("input") if not i.get("id") and i.get("type") != "hidden"]
            assert 'class="fault-low-contrast"' in home.text
            css = httpc.get(f"{lab.public_url}/static/site.css").text
            assert re.search(r"\.fault-low-contrast \{ color: #aaa(aaa)?; background: #fff(fff)?; \}", css)
        elif fault == "insecure-headers":
            for header in (
                "Content-Security-Policy",
                "X-Frame-Options",
                "X-Content-Type-Options",
                "Referrer-Policy",
            ):
                assert home.header(header) is None
            loose = [c for c in home.header_all("Set-Cookie") if "HttpOnly" not in c and "SameSite" not in c]
            assert loose
            session = cookies_from(httpc.get(f"{lab.public_url}/login"))
            assert all("HttpOnly" not in c for c in session.values())
        else:
            time.sleep(0.5)
            started = time.monotonic()
            assert httpc.get(f"{lab.public_url}/").status == 500
            assert time.monotonic() - started >= 0.3
    finally:
        node.stop()
        node.deploy(lab.package(CURRENT))
        node.start()


def release_faults_of(package: Path) -> list[str]:
    with zipfile.ZipFile(package) as zf:
        faults: list[str] = json.loads(zf.read("release.json"))["faults"]
    return faults


def test_rollback_topology_builds_release_faults_into_the_package_it_deploys(tmp_path: Path) -> None:
    lab = Lab(tmp_path, faults=["a11y-regression", "insecure-headers", "green-unhealthy", "service-stopped"])
    lab.start()
    try:
        assert lab.drill_version == PREVIOUS_STABLE
        assert release_faults_of(lab.package(PREVIOUS_STABLE)) == ["a11y-regression", "insecure-headers"]
        assert release_faults_of(lab.package(CURRENT)) == []  # green-unhealthy: no green in this topology
        node = lab.node()
        node.deploy(lab.package(PREVIOUS_STABLE))  # what RB-3 does
        node.start()
        home = httpc.get(f"{lab.public_url}/")
        assert 'class="fault-low-contrast"' in home.text
        assert home.header("Content-Security-Policy") is None
        with pytest.raises(LabError, match="no router"):
            _ = lab.router
    finally:
        lab.stop()


def test_packages_are_deterministic_with_a_sha256sum_file(tmp_path: Path) -> None:
    first = build_package(PREVIOUS_STABLE, tmp_path / "a")
    second = build_package(PREVIOUS_STABLE, tmp_path / "b", faults=())
    assert first.name == f"MCMS_Setup_{PREVIOUS_STABLE}.zip"
    assert first.read_bytes() == second.read_bytes()
    sha_text = (tmp_path / "a" / f"{first.name}.sha256").read_text(encoding="ascii")
    assert re.fullmatch(rf"[0-9a-f]{{64}}  {re.escape(first.name)}\n", sha_text)
    assert read_sha256_file(tmp_path / "a" / f"{first.name}.sha256") == sha256_of(first)
    with zipfile.ZipFile(first) as zf:
        names = zf.namelist()
        assert names == [*sorted(names[:-1]), "release.json"]
        assert {"mcms/web.py", "mcms/worker.py", "mcms/static/site.css"} <= set(names)
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        assert json.loads(zf.read("release.json")) == {"version": PREVIOUS_STABLE, "faults": []}
        assert {info.date_time for info in zf.infolist()} == {(2020, 1, 1, 0, 0, 0)}
    with pytest.raises(ValueError, match="release fault"):
        build_package("1.0.1", tmp_path, faults=["nope"])
    with pytest.raises(ValueError, match="version"):
        build_package("../1.0.0", tmp_path)


def test_a_stopped_worker_makes_the_node_unhealthy(fresh_lab: Lab) -> None:
    worker = fresh_lab.node().processes["worker"]
    assert procs.stop_pid(worker.pid, 5.0, worker.argv)
    reply = httpc.get(f"{fresh_lab.public_url}/health")
    assert reply.status == 503
    health = reply.json()
    assert health["status"] == "Unhealthy"
    assert health["components"]["worker"]["status"] == "Unhealthy"
    assert health["components"]["web"]["status"] == "Healthy"


def test_stop_is_prompt_while_requests_arrive(lab: Lab, tmp_path: Path) -> None:
    """A stop signal landing mid-accept must not be swallowed (it once cost a full stop timeout)."""
    import threading

    from lab.supervisor import SINK_SCRIPT

    node = lab.node()
    port = procs.free_port()
    argv = procs.python_argv(SINK_SCRIPT, "--port", str(port), "--log-dir", str(tmp_path))
    sink = procs.spawn("sink", argv, tmp_path / "sink.log")
    procs.wait_http(f"http://127.0.0.1:{port}/", 10, watch=[sink])
    done = threading.Event()

    def hammer(url: str) -> None:
        while not done.is_set():
            try:
                httpc.get(url, timeout=1.0)
            except OSError:
                time.sleep(0.005)

    threads = [
        threading.Thread(target=hammer, args=(url,), daemon=True)
        for url in (f"{node.url}/health", f"http://127.0.0.1:{port}/")
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.1)
        steps = node.stop()
        started = time.monotonic()
        assert procs.stop_pid(sink.pid, 10.0)
        sink_stop_s = time.monotonic() - started
    finally:
        done.set()
        for thread in threads:
            thread.join()
    assert all(step.duration_s < 3 for step in steps), steps  # a swallowed signal costs the 10 s timeout
    assert sink_stop_s < 3
    node.start()
    assert node.is_running()


# -- Blue/Green topology ---------------------------------------------------------------------------


def bluegreen_lab(root: Path, *faults: str) -> Lab:
    lab = Lab(root, faults=faults, topology="bluegreen")
    lab.start()
    return lab


def slot_of(reply: httpc.HttpReply) -> str | None:
    return reply.header("X-Lab-Slot")


def settled_stats(lab: Lab) -> dict[str, Any]:
    """The router's counters once nothing is in flight (it counts a request just after the client has it)."""
    deadline = time.monotonic() + 5
    while True:
        stats = lab.router.stats()
        if not any(stats["in_flight"].values()) or time.monotonic() > deadline:
            return stats
        time.sleep(0.01)


def test_bluegreen_starts_blue_on_previous_stable_behind_the_router_and_green_empty(tmp_path: Path) -> None:
    lab = bluegreen_lab(tmp_path)
    try:
        pids = all_pids(lab)
        assert len(pids) == 4  # router, blue web, blue worker, webhook sink
        assert set(lab.urls()) == {"public", "blue", "green", "router_control", "webhook"}
        assert len(set(lab.urls().values())) == 5
        public = httpc.get(f"{lab.public_url}/health")
        assert public.status == 200
        assert public.json()["version"] == PREVIOUS_STABLE
        assert slot_of(public) == "blue"
        assert public.header("Via") == "1.1 mcms-lab-router"
        assert httpc.get(f"{lab.node('blue').url}/health").json()["version"] == PREVIOUS_STABLE
        green = lab.node("green")
        assert green.deployed_version() is None
        assert not green.is_running()
        assert refused(f"{green.url}/health")
        assert lab.router.active() == "blue"
        router_state = lab.router.state()
        assert router_state["generation"] == 0
        assert router_state["backends"] == {"blue": lab.node("blue").url, "green": green.url}
        state = json.loads(lab.state_path.read_text(encoding="utf-8"))
        assert state["topology"] == "bluegreen"
        assert state["router"]["port"] == lab.router_port
        assert state["router"]["control_port"] == lab.router_control_port
        assert "--state-file" in state["router"]["process"]["argv"]
        assert state["nodes"]["green"]["release_dir"] is None
        assert lab.drill_version == CURRENT
        for version in (PREVIOUS_STABLE, CURRENT):
            assert release_faults_of(lab.package(version)) == []
    finally:
        lab.stop()
    assert not [p for p in pids if procs.pid_alive(p)]
    assert refused(lab.public_url)
    assert json.loads(lab.state_path.read_text(encoding="utf-8"))["router"]["process"] is None
    lab.stop()  # idempotent


def test_bluegreen_deploy_green_switch_and_switch_back(tmp_path: Path) -> None:
    lab = bluegreen_lab(tmp_path)
    try:
        green = lab.node("green")
        release = green.deploy(lab.package(CURRENT))
        assert release.name == f"green-{CURRENT}-1"
        green.start()
        assert httpc.get(f"{green.url}/health").json()["version"] == CURRENT
        assert httpc.get(f"{lab.public_url}/health").json()["version"] == PREVIOUS_STABLE  # not switched yet

        switched = lab.router.switch("green")
        assert (switched.active, switched.previous, switched.generation) == ("green", "blue", 1)
        datetime.fromisoformat(switched.switched_at)
        reply = httpc.get(f"{lab.public_url}/health")
        assert (reply.status, reply.json()["version"], slot_of(reply)) == (200, CURRENT, "green")
        assert httpc.get(f"{lab.public_url}/api/status").json()["node"] == "green"
        assert json.loads(lab.router_state_path.read_text(encoding="utf-8"))["active"] == "green"
        assert lab.router.active() == "green"

        back = lab.router.switch("blue")
        assert (back.active, back.previous, back.generation) == ("blue", "green", 2)
        assert httpc.get(f"{lab.public_url}/health").json()["version"] == PREVIOUS_STABLE
        stats = settled_stats(lab)
        assert stats["router_errors"] == 0
        assert stats["requests"]["green"] >= 2
        assert stats["requests"]["blue"] >= 2
        pids = all_pids(lab)
        assert len(pids) == 6
    finally:
        lab.stop()
    gone = {pid: procs.pid_alive(pid) for pid in pids}
    assert not [pid for pid, alive in gone.items() if alive], gone
    # The router went first: the public address was dark before any node stopped.
    router_stop = (lab.app_log_dir / "router.log").read_text(encoding="utf-8").splitlines()[-1]
    web_stop = (lab.app_log_dir / "blue-web.log").read_text(encoding="utf-8").splitlines()[-1]
    assert router_stop.endswith("router stopping")
    assert web_stop.endswith("web stopping")
    assert router_stop.split()[0] <= web_stop.split()[0]


def test_attach_restores_the_router_and_both_slots(tmp_path: Path) -> None:
    root = tmp_path / "kept"
    code = (
        "from pathlib import Path; from lab import Lab, CURRENT; "
        f"lab = Lab(Path({str(root)!r}), topology='bluegreen'); lab.start(); "
        "green = lab.node('green'); green.deploy(lab.package(CURRENT)); green.start()"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
    lab = Lab.attach(root)
    assert lab is not None
    pids = all_pids(lab)
    try:
        assert lab.topology == "bluegreen"
        assert set(lab.slots) == {"blue", "green"}
        assert lab.node("green").deployed_version() == CURRENT
        assert lab.node("green").is_running()
        assert lab.router.active() == "blue"
        assert lab.router_process is not None
        assert lab.router_process.alive()
        # A later session switches the green that an earlier one verified.
        assert lab.router.switch("green").previous == "blue"
        assert httpc.get(f"{lab.public_url}/health").json()["version"] == CURRENT
    finally:
        lab.stop()  # not our children: every stop goes through the recorded-argv check
    assert len(pids) == 6
    assert not [p for p in pids if procs.pid_alive(p)]
    assert Lab.attach(root) is None


def test_bluegreen_faults_change_the_release_under_test(tmp_path: Path) -> None:
    lab = bluegreen_lab(
        tmp_path, "green-unhealthy", "a11y-regression", "insecure-headers", "bad-package-hash"
    )
    try:
        assert release_faults_of(lab.package(CURRENT)) == ["unhealthy", "a11y-regression", "insecure-headers"]
        assert release_faults_of(lab.package(PREVIOUS_STABLE)) == []
        current, stable = lab.package(CURRENT), lab.package(PREVIOUS_STABLE)
        assert read_sha256_file(current.with_name(current.name + ".sha256")) != sha256_of(current)
        assert read_sha256_file(stable.with_name(stable.name + ".sha256")) == sha256_of(stable)
        green = lab.node("green")
        green.deploy(current)
        green.start(require_healthy=False)
        reply = httpc.get(f"{green.url}/health")
        assert reply.status == 503
        assert reply.json()["status"] == "Unhealthy"
        home = httpc.get(f"{green.url}/")
        assert 'class="fault-low-contrast"' in home.text
        assert home.header("X-Frame-Options") is None
        public = httpc.get(f"{lab.public_url}/health")
        assert (public.status, slot_of(public)) == (200, "blue")  # the public address is untouched
        assert httpc.get(f"{lab.public_url}/").header("X-Frame-Options") == "DENY"
    finally:
        lab.stop()


def test_bluegreen_service_stopped_is_a_502_on_the_public_address(tmp_path: Path) -> None:
    lab = bluegreen_lab(tmp_path, "service-stopped", "webhook-down")
    try:
        assert not lab.node("blue").is_running()
        reply = httpc.get(f"{lab.public_url}/health")
        assert reply.status == 502
        assert reply.json() == {"error": "bad gateway", "backend": "blue"}
        assert settled_stats(lab)["router_errors"] == 1
        assert refused(lab.webhook_url)
    finally:
        lab.stop()


def test_green_degrades_only_after_traffic_is_switched_to_it(tmp_path: Path) -> None:
    lab = bluegreen_lab(tmp_path, "green-degrades-after-switch")
    try:
        assert release_faults_of(lab.package(CURRENT)) == ["degrade-after-routed:3"]
        green = lab.node("green")
        green.deploy(lab.package(CURRENT))
        green.start()
        # Verification on green's own address (BG-2) sees a healthy release, however long it takes.
        until = time.monotonic() + 4.0
        while time.monotonic() < until:
            reply = httpc.get(f"{green.url}/health")
            assert reply.status == 200, reply.text
            time.sleep(0.2)
        lab.router.switch("green")
        first_routed = time.monotonic()  # green cannot see a routed request before this
        first_500 = None
        while time.monotonic() - first_routed < 10:  # hang guard only; the onset is printed by the benchmark
            reply = httpc.get(f"{lab.public_url}/health")
            assert slot_of(reply) == "green"
            if reply.status == 500:
                first_500 = time.monotonic() - first_routed
                break
            assert reply.status == 200
            time.sleep(0.1)
        assert first_500 is not None, "green never degraded after the switch"
        assert first_500 >= 3.0, f"degraded {first_500:.2f} s after the first routed request, not 3 s"
        assert reply.json() == {"error": "service degraded"}
        assert httpc.get(f"{green.url}/health").status == 500  # degraded for everyone from then on
        lab.router.switch("blue")  # BG-5: traffic back to the warm standby
        reply = httpc.get(f"{lab.public_url}/health")
        assert (reply.status, reply.json()["version"]) == (200, PREVIOUS_STABLE)
    finally:
        lab.stop()


def test_fault_release_puts_release_faults_into_the_running_package(tmp_path: Path) -> None:
    """A matrix-only run checks what already serves: its faults go into 1.1.0, the running release."""
    lab = Lab(tmp_path / "lab", faults=["insecure-headers"], fault_release="1.1.0")
    lab.start()
    try:
        with urllib.request.urlopen(lab.public_url + "/", timeout=5) as response:
            assert response.headers.get("X-Frame-Options") is None
            assert response.headers.get("Content-Security-Policy") is None
    finally:
        lab.stop()
    clean = Lab(tmp_path / "clean", faults=["insecure-headers"])  # the rollback drill's faults go into 1.0.0
    clean.start()
    try:
        with urllib.request.urlopen(clean.public_url + "/", timeout=5) as response:
            assert response.headers.get("X-Frame-Options") == "DENY"
    finally:
        clean.stop()


def test_a_ctrl_c_between_a_spawn_and_its_record_is_delivered_after_the_record(tmp_path: Path) -> None:
    """procs.interrupts_deferred: the SIGINT is held while a process is spawned and recorded, then raised as
    pytest's KeyboardInterrupt once the record exists, so no Lab process is left that state.json does not name."""
    import os
    import signal

    from lab import procs

    done: list[str] = []

    def spawn_and_record() -> None:
        with procs.interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs here: held, not raised
            done.append("recorded")

    with pytest.raises(KeyboardInterrupt):
        spawn_and_record()
    assert done == ["recorded"], "the body ran to its end before the interrupt was delivered"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "the previous handler is back"
