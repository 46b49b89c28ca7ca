"""A real Selenium Grid 4 (standalone) on loopback, for the tests and `benchmarks.axe_scan --remote`.

`Grid(root).start()` runs `java -jar selenium-server-<v>.jar standalone --host 127.0.0.1 --port P
--selenium-manager false --config grid.toml` with everything of its own in folders of its own: under `root` the
config, its log and HOME (Selenium's and Chromium's caches and crash database); TMPDIR and java.io.tmpdir
(chromedriver's profile directories) in a short folder of the system's, removed by `stop()`, because Chromium
puts its singleton socket there and a Unix socket path may not exceed 107 bytes. P is a free loopback port, and
the only one a standalone binds (its event bus is in-process; tests/test_grid.py checks it). The node offers
only Chrome: Selenium's driver detection is off, and one driver configuration names this machine's chromedriver
and, in its stereotype, the Chromium binary, which is how a node says where its browser is (a Selenium 4 node
puts its stereotype's `goog:chromeOptions.binary` into every session it starts). `start()` returns once
`/status` answers ready with that Chrome slot, within a bound.

`stop()` ends it by PID: the Java process's group and its process tree (chromedriver and Chromium descend from
it), and the processes whose command line names the Grid's own folders (Chromium's crash handler leaves the
tree: it re-parents itself to init). SIGTERM first, SIGKILL after a grace period; it returns what is still
alive (nothing, or it is a finding). Nothing is ever looked up or stopped by its name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from drivers.browser import check_browser_tools, find_chrome, find_chromedriver
from drivers.config import Browser
from tests.tools import grid_jar, system_tool

START_TIMEOUT_S = 90.0
STOP_GRACE_S = 15.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GridError(RuntimeError):
    """The Grid did not start (its log's last lines say why)."""


class Grid:
    """One standalone Grid under `root`, on 127.0.0.1:`port`."""

    def __init__(
        self,
        root: Path,
        *,
        jar: Path,
        java: str = "java",
        chrome: Path | None = None,
        chromedriver: Path | None = None,
        max_sessions: int = 2,
    ) -> None:
        self.root = root.resolve()
        self.jar = jar
        self.java = java
        self.chrome = chrome or find_chrome(Browser())
        self.chromedriver = chromedriver or find_chromedriver(Browser())
        self.max_sessions = max_sessions
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.root / "grid.log"
        self.tmp: Path | None = None  # TMPDIR and java.io.tmpdir of the Grid, removed by stop()
        self.start_s = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        stereotype = {
            "browserName": "chrome",
            "platformName": "linux",
            "goog:chromeOptions": {"binary": str(self.chrome)},
        }
        # TOML basic strings are JSON strings: the paths survive whatever they contain.
        return (
            "[node]\n"
            "detect-drivers = false\n"
            f"max-sessions = {self.max_sessions}\n"
            "session-timeout = 120\n"
            "[sessionqueue]\n"
            "session-request-timeout = 60\n"
            "[[node.driver-configuration]]\n"
            'display-name = "Chromium"\n'
            f"webdriver-executable = {json.dumps(str(self.chromedriver))}\n"
            f"max-sessions = {self.max_sessions}\n"
            f"stereotype = {json.dumps(json.dumps(stereotype))}\n"
        )

    def start(self, timeout_s: float = START_TIMEOUT_S) -> Grid:
        home = self.root / "home"
        home.mkdir(parents=True, exist_ok=True)
        # Short, in the system's temporary folder: Chromium puts its singleton socket in TMPDIR, and a Unix
        # socket's path may not be longer than 107 bytes (a deep pytest folder is; the browser then exits).
        self.tmp = Path(tempfile.mkdtemp(prefix="runbook-grid-"))
        tmp = self.tmp
        config = self.root / "grid.toml"
        config.write_text(self.config(), encoding="utf-8")
        self.port = free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
        }
        env |= {"HOME": str(home), "TMPDIR": str(tmp), "SE_AVOID_STATS": "true"}
        cmd = [
            self.java,
            f"-Djava.io.tmpdir={tmp}",
            "-jar",
            str(self.jar),
            "standalone",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--selenium-manager",
            "false",
            "--config",
            str(config),
        ]
        started = time.perf_counter()
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as a whole, never by name
            )
        deadline = time.monotonic() + timeout_s
        problems: list[str] = []
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise GridError(
                    f"the Selenium Grid exited with code {self.proc.returncode} while starting: {self.log_tail()}"
                )
            check = check_browser_tools(Browser(), self.url)
            if check.ok:
                self.start_s = time.perf_counter() - started
                return self
            problems = check.problems
            time.sleep(0.25)
        self.stop()
        raise GridError(
            f"the Selenium Grid at {self.url} was not ready within {timeout_s:g} s ({'; '.join(problems)}): "
            f"{self.log_tail()}"
        )

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "no log"
        return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())

    # --- its processes ------------------------------------------------------------------------------
    def processes(self) -> list[psutil.Process]:
        """The Java process, its process tree, and the processes whose command line names the Grid's folder."""
        found: dict[int, psutil.Process] = {}
        if self.proc is not None and self.proc.poll() is None:
            try:
                java = psutil.Process(self.proc.pid)
                found[java.pid] = java
                for child in java.children(recursive=True):
                    found[child.pid] = child
            except psutil.NoSuchProcess:
                pass
        markers = [str(self.root) + os.sep] + ([str(self.tmp) + os.sep] if self.tmp else [])
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info.get("cmdline") or []
            if proc.pid != os.getpid() and any(m in arg for arg in cmdline for m in markers):
                found.setdefault(proc.pid, proc)
        return [p for p in found.values() if _alive(p)]

    def stop(self) -> list[str]:
        """Stop the Grid and everything it started, by PID; what is still alive afterwards, in words."""
        if self.proc is None:
            return []
        procs = self.processes()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.terminate()
        _, alive = psutil.wait_procs(procs, timeout=STOP_GRACE_S)
        # Whatever started meanwhile (a browser half-way through its start) goes too.
        alive = list({p.pid: p for p in [*alive, *self.processes()]}.values())
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        psutil.wait_procs(alive, timeout=5)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        left = [f"{p.pid} {' '.join(p.cmdline())[:120]}" for p in self.processes()]
        if not left and self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return left

    def __enter__(self) -> Grid:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def new_grid(root: Path) -> Grid:
    """A Grid of this machine's Java, jar, Chromium and chromedriver (skip, or fail under CI, when one is missing)."""
    java = system_tool("java")
    jar = grid_jar()
    system_tool("chromedriver")
    return Grid(root, jar=jar, java=java)


@pytest.fixture(scope="module", name="grid")
def grid_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grid]:
    """A running Grid for the module's tests; stopped by PID afterwards, and nothing of it may be left."""
    g = new_grid(tmp_path_factory.mktemp("grid")).start()
    try:
        yield g
    finally:
        left = g.stop()
        assert not left, f"the Grid left processes running: {left}"
