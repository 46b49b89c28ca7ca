"""The browser stays inside `[scope] allowed_hosts` (issue #8 item 4), with a real Chromium and real servers.

A page server on 127.0.0.1 (the allowed host) redirects by HTTP 302, by meta refresh and by script to a second
server bound to 127.0.0.2, which counts every request and every UDP packet it gets; another page loads an image
from it, another asks WebRTC to send STUN to it. With the scope the browser sends 127.0.0.2 nothing: the
redirecting pages fail with "left scope", the image is blocked and recorded. Without the scope (the control)
the same browser reaches 127.0.0.2, which shows the counters count. Last, a DR-AXE run of the runbook against
these pages journals the blocked image as a finding and fails the redirecting page without scanning it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from drivers.base import DriverError
from drivers.browser import (
    BlockedRequest,
    BrowserSession,
    LeftScope,
    RemoteBrowser,
    ScopeGuard,
    browser_session,
    check_browser_tools,
    find_chrome,
    find_chromedriver,
)
from drivers.config import Browser
from drivers.e2e import wait_until
from plugins.journal import read_events
from tests.http_stub import Reply, Stub

if TYPE_CHECKING:
    from selenium.webdriver.chrome.options import Options as ChromeOptions

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = "127.0.0.1"
OFF_SCOPE = "127.0.0.2"
HEAD = '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>{extra}</head>'


@dataclass
class OffScopeServer:
    """HTTP (the loopback stub, tests/http_stub.py) and UDP on 127.0.0.2: every request and packet that reaches
    it is counted."""

    http: Stub
    udp: socket.socket
    packets: list[int] = field(default_factory=list)

    @property
    def base(self) -> str:
        return self.http.url

    @property
    def udp_port(self) -> int:
        return int(self.udp.getsockname()[1])

    @property
    def requests(self) -> list[str]:
        return self.http.paths()

    def reached(self) -> int:
        return len(self.requests) + len(self.packets)

    def clear(self) -> None:
        self.http.forget()
        self.packets.clear()


def _pages(off: OffScopeServer) -> dict[str, str]:
    body = "<body><main><h1>{h}</h1>{more}</main></body></html>"
    stun = f"stun:{OFF_SCOPE}:{off.udp_port}"
    return {
        "/ok": HEAD.format(title="in scope", extra="") + body.format(h="in scope", more=""),
        "/meta": HEAD.format(
            title="meta", extra=f'<meta http-equiv="refresh" content="0;url={off.base}/meta-target">'
        )
        + body.format(h="meta refresh", more=""),
        "/script": HEAD.format(title="script", extra="")
        + body.format(h="script", more=f'<script>location = "{off.base}/script-target";</script>'),
        "/link": HEAD.format(title="link", extra="")
        + body.format(h="link", more='<a id="away" href="http://localhost:{port}/by-name">away</a>'),
        "/img": HEAD.format(title="image", extra="")
        + body.format(h="image", more=f'<img id="pixel" src="{off.base}/pixel.png" alt="a pixel">'),
        "/webrtc": HEAD.format(title="webrtc", extra="")
        + body.format(
            h="webrtc",
            more="<script>window.gathered = (async () => {"
            f"const pc = new RTCPeerConnection({{iceServers: [{{urls: '{stun}'}}]}});"
            "pc.createDataChannel('x'); await pc.setLocalDescription(await pc.createOffer());"
            "await new Promise(r => { pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r();"
            " setTimeout(r, 3000); });"
            "return pc.iceGatheringState; })();</script>",
        ),
    }


@pytest.fixture(scope="module")
def off_scope() -> Iterator[OffScopeServer]:
    try:
        http = Stub(OFF_SCOPE)
    except OSError as exc:
        pytest.skip(
            f"{OFF_SCOPE} is not a loopback address on this machine ({exc}); it is on Linux and Windows"
        )
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with http, udp:
        http.otherwise(
            Reply(200, b"<!doctype html><title>off scope</title>OFF SCOPE", {"Content-Type": "text/html"})
        )
        udp.bind((OFF_SCOPE, 0))
        udp.settimeout(0.2)
        server = OffScopeServer(http, udp)

        def count_packets() -> None:
            while True:
                try:
                    data, _ = udp.recvfrom(4096)
                except TimeoutError:
                    continue
                except OSError:
                    return
                server.packets.append(len(data))

        threading.Thread(target=count_packets, daemon=True).start()
        yield server


@pytest.fixture(scope="module")
def page_server(off_scope: OffScopeServer) -> Iterator[Stub]:
    """The site under test on 127.0.0.1, the allowed host."""
    html = {"Content-Type": "text/html; charset=utf-8"}
    with Stub(ALLOWED) as server:
        server.route("/302", Reply(302, headers={"Location": f"{off_scope.base}/302-target"}))
        for path, page in _pages(off_scope).items():
            server.route(path, Reply(200, page.replace("{port}", str(server.port)).encode(), html))
        server.otherwise(Reply(404, HEAD.format(title="not found", extra="").encode(), html))
        yield server


@pytest.fixture(scope="module")
def pages(page_server: Stub) -> str:
    """The base URL of the site under test."""
    return page_server.url


@dataclass
class Confined:
    session: BrowserSession
    told: list[BlockedRequest]  # what on_blocked heard, in order


@pytest.fixture(scope="module")
def confined() -> Iterator[Confined]:
    """One browser for every case of the module, confined to 127.0.0.1."""
    told: list[BlockedRequest] = []
    with browser_session(Browser(), allowed_hosts=[ALLOWED]) as session:
        session.on_blocked = told.extend
        yield Confined(session, told)


@pytest.mark.parametrize("how", ["302", "meta", "script"])
def test_a_redirect_off_scope_fails_as_left_scope_and_sends_nothing(
    confined: Confined, pages: str, off_scope: OffScopeServer, how: str
) -> None:
    before = len(confined.told)
    target = f"{off_scope.base}/{how}-target"
    with pytest.raises(LeftScope) as failed:
        confined.session.open(f"{pages}/{how}")
    message = str(failed.value)
    assert message.startswith(f"left scope: {target} (opening {pages}/{how}; host {OFF_SCOPE} is outside")
    assert "nothing on that page was checked" in message
    assert failed.value.final_url == target
    assert off_scope.requests == []
    assert off_scope.reached() == 0
    told = confined.told[before:]
    assert [(b.url, b.resource, b.sent) for b in told] == [(target, "Document", False)]
    assert told[0].error == "net::ERR_NAME_NOT_RESOLVED"


def test_an_off_scope_image_is_blocked_and_recorded(
    confined: Confined, pages: str, off_scope: OffScopeServer
) -> None:
    before = len(confined.told)
    nav = confined.session.open(f"{pages}/img")
    assert nav.final_url == f"{pages}/img"
    assert nav.status == 200
    pixel = f"{off_scope.base}/pixel.png"
    assert [(b.url, b.resource, b.document_url, b.sent) for b in nav.blocked] == [
        (pixel, "Image", f"{pages}/img", False)
    ]
    assert nav.blocked[0].error == "net::ERR_NAME_NOT_RESOLVED"
    assert confined.told[before:] == list(nav.blocked)
    assert confined.session.driver.execute_script("return document.getElementById('pixel').naturalWidth") == 0
    assert off_scope.reached() == 0


def test_webrtc_sends_no_udp_off_scope(confined: Confined, pages: str, off_scope: OffScopeServer) -> None:
    confined.session.open(f"{pages}/webrtc")
    state = confined.session.driver.execute_async_script(
        "const done = arguments[arguments.length - 1]; window.gathered.then(done, e => done(String(e)));"
    )
    assert state == "complete"
    assert off_scope.packets == []


def test_an_off_scope_address_is_refused_before_loading(
    confined: Confined, off_scope: OffScopeServer
) -> None:
    with pytest.raises(
        DriverError,
        match=rf"host {OFF_SCOPE} is outside \[scope\] allowed_hosts \(127.0.0.1\); nothing was sent",
    ):
        confined.session.open(f"{off_scope.base}/direct")
    assert off_scope.reached() == 0


def test_a_link_to_another_name_of_the_allowed_address_is_blocked_too(
    confined: Confined, pages: str, page_server: Stub
) -> None:
    """localhost is 127.0.0.1 under another name: not an allowed host, so not resolved (the page server on
    127.0.0.1 would count the request). A click goes where it likes; check_scope says where it ended."""
    confined.session.open(f"{pages}/link")
    confined.session.driver.find_element("id", "away").click()
    away = pages.replace(ALLOWED, "localhost") + "/by-name"
    wait_until(
        lambda: (confined.session.driver.current_url == away, confined.session.driver.current_url),
        10,
        "the click",
    )
    with pytest.raises(LeftScope, match=rf"^left scope: {away} "):
        confined.session.check_scope()
    assert "/by-name" not in page_server.paths()


def test_the_scope_is_still_a_browser_that_works(confined: Confined, pages: str) -> None:
    nav = confined.session.open(f"{pages}/ok")
    assert (nav.status, nav.title, nav.blocked) == (200, "in scope", ())
    assert confined.session.check_scope() == []


def test_control_without_scope_the_same_pages_reach_the_off_scope_server(
    pages: str, off_scope: OffScopeServer
) -> None:
    """The counters count: an unconfined browser reaches 127.0.0.2 on every one of these pages."""
    try:
        with browser_session(Browser()) as session:
            for how in ("302", "meta", "script"):
                nav = session.open(f"{pages}/{how}")
                assert nav.final_url == f"{off_scope.base}/{how}-target"
            session.open(f"{pages}/img")
            session.open(f"{pages}/webrtc")
            session.driver.execute_async_script(
                "const done = arguments[arguments.length - 1]; window.gathered.then(done, done);"
            )
        reached, packets = set(off_scope.requests), len(off_scope.packets)
    finally:
        # The module's other tests assert on clean counters, whatever the order the tests run in.
        off_scope.clear()
    assert {"/302-target", "/meta-target", "/script-target", "/pixel.png"} <= reached
    assert packets > 0, "WebRTC sent no STUN packet even without the scope"


def test_scope_refuses_hosts_that_are_not_host_names() -> None:
    with pytest.raises(
        DriverError, match=r'allowed_hosts: "\*.corp.example", "mcms, evil" is not a host name'
    ):
        ScopeGuard(["*.corp.example", "mcms, evil", "ok.example"])
    guard = ScopeGuard(["MCMS.corp.example", "[::1]", "127.0.0.1"])
    assert guard.hosts == ("127.0.0.1", "::1", "mcms.corp.example")
    assert guard.args()[0] == (
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE ::1, EXCLUDE mcms.corp.example"
    )
    assert guard.allows("https://mcms.corp.example:8443/x")
    assert guard.allows("data:text/html,hi")
    assert not guard.allows("http://127.0.0.2/")


# --- a remote session: the same flags, in the capabilities ------------------------------------------
@pytest.fixture
def webdriver_endpoint(tmp_path: Path) -> Iterator[str]:
    """chromedriver on its own port: a WebDriver endpoint like a Grid's, with /status and new sessions."""
    with socket.socket() as probe:
        probe.bind((ALLOWED, 0))
        port = probe.getsockname()[1]
    log = (tmp_path / "chromedriver.log").open("wb")
    driver = subprocess.Popen([str(find_chromedriver(Browser())), f"--port={port}"], stdout=log, stderr=log)
    url = f"http://{ALLOWED}:{port}"
    try:
        wait_until(lambda: (check_browser_tools(Browser(), url).ok, url), 20, "chromedriver answers /status")
        yield url
    finally:
        driver.terminate()
        driver.wait(timeout=20)
        log.close()


def test_the_scope_travels_to_a_remote_session(
    webdriver_endpoint: str, pages: str, off_scope: OffScopeServer, tmp_path: Path
) -> None:
    profile = tmp_path / "remote-profile"

    class NodeHere(RemoteBrowser):
        """The remote backend as it is, plus what a Grid node's own settings would add on this machine."""

        def _options(self) -> ChromeOptions:
            options = super()._options()
            options.binary_location = str(find_chrome(Browser()))
            options.add_argument("--no-sandbox")  # root in this container
            options.add_argument(f"--user-data-dir={profile}")
            return options

    check = check_browser_tools(Browser(), webdriver_endpoint)
    assert (check.ok, check.problems) == (True, [])
    with NodeHere(Browser(), webdriver_endpoint, allowed_hosts=[ALLOWED]) as remote:
        with pytest.raises(LeftScope, match=rf"^left scope: {off_scope.base}/302-target "):
            remote.open(f"{pages}/302")
        nav = remote.open(f"{pages}/img")
        assert [(b.url, b.sent) for b in nav.blocked] == [(f"{off_scope.base}/pixel.png", False)]
        assert "performance_log" not in remote.info  # the log was read through the plain WebDriver command
    assert off_scope.reached() == 0


# --- the runbook: DR-AXE against these pages ---------------------------------------------------------
def test_dr_axe_journals_the_blocked_image_and_fails_the_page_that_left_scope(
    tmp_path: Path, pages: str, off_scope: OffScopeServer
) -> None:
    env_file = tmp_path / "env.toml"
    env_file.write_text(
        f'name = "ScopeDrill"\nkind = "remote"\n[service]\nbase_url = "{pages}"\n'
        '[axe]\npages = ["/img", "/302"]\n[scope]\nallowed_hosts = ["127.0.0.1"]\n'
        f'[paths]\nlog_dirs = ["{(tmp_path / "logs").as_posix()}"]\ntimeline_dir = "{(tmp_path / "logs").as_posix()}"\n',
        encoding="utf-8",
    )
    reports = tmp_path / "reports"
    environ = {**os.environ, "RUNBOOK_BROWSER_STATE_DIR": str(tmp_path / "browsers")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", f"--env-file={env_file}", f"--evidence-dir={reports}",
         "-p", "no:cacheprovider", "-m", "dr_axe", "-ra"],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False, env=environ,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    (bundle,) = reports.iterdir()
    events = read_events(bundle / "evidence.jsonl")
    outcomes = {e["phase"]: e["data"]["outcome"] for e in events if e["kind"] == "phase.end"}
    assert outcomes == {"DR-AXE": "failed"}, output
    assert f"left scope: {off_scope.base}/302-target (opening {pages}/302" in output
    failed = [ln.split(" - ")[0] for ln in output.splitlines() if ln.startswith("FAILED ")]
    assert failed == ["FAILED runbook_tests/test_dr_axe.py::test_page_has_no_major_violations[/302]"], output
    scope_findings = [e["data"] for e in events if e["kind"] == "finding" and e["data"]["tool"] == "scope"]
    assert [(f["url"], f["resource"], f["sent"], f["page"]) for f in scope_findings] == [
        (f"{off_scope.base}/pixel.png", "Image", False, f"{pages}/img"),
        (f"{off_scope.base}/302-target", "Document", False, f"{off_scope.base}/302-target"),
    ]
    assert all(e["phase"] == "DR-AXE" for e in events if e["kind"] == "finding")
    scans = [e["data"] for e in events if e["kind"] == "action" and e["data"]["name"] == "axe.scan"]
    assert [s["detail"]["page"] for s in scans] == ["/img"], "the page that left scope was scanned"
    (start,) = [e["data"] for e in events if e["kind"] == "action" and e["data"]["name"] == "browser.start"]
    assert start["detail"]["allowed_hosts"] == ["127.0.0.1"]
    assert not (bundle / "artifacts" / "axe" / "302.json").exists()
    assert (
        json.loads((bundle / "artifacts" / "axe" / "img.json").read_text(encoding="utf-8"))["url"]
        == f"{pages}/img"
    )
    assert off_scope.reached() == 0
