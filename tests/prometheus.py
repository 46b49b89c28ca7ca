"""Debian's Prometheus on loopback for the tests: started and stopped by the test itself, by its PID.

`Prometheus(workdir, files=[...])` writes a configuration that scrapes every target of the given file_sd files
(the Lab writes `<lab dir>/prometheus-targets.json`; a test can write its own) every second, re-reading the files
every second, and keeps its database under `workdir`. `start()` waits for `/-/ready`; `stop()` ends the process
group it started (SIGTERM, then SIGKILL), never anything found by name.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

from lab.procs import free_port
from tests.tools import system_tool

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Prometheus:
    def __init__(self, workdir: Path, files: Sequence[Path], *, job: str = "mcms") -> None:
        self.workdir = workdir
        self.files = list(files)
        self.job = job
        self.binary = system_tool("prometheus")
        self.port = free_port("127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "prometheus.log"

    def config(self) -> str:
        # JSON is YAML: no YAML library needed to write it.
        return json.dumps(
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": self.job,
                        "file_sd_configs": [
                            {"files": [str(f) for f in self.files], "refresh_interval": "1s"}
                        ],
                    }
                ],
            },
            indent=2,
        )

    def start(self, timeout: float = 30.0) -> Prometheus:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for f in self.files:
            f.parent.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(self.config(), encoding="utf-8")
        argv = [
            self.binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with _DIRECT.open(f"{self.url}/-/ready", timeout=1.0) as reply:
                    if reply.status == 200:
                        return self
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"prometheus did not become ready within {timeout:g} s: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def query(self, promql: str) -> Any:
        """The query API's `data` for an instant query (for the tests' own waiting)."""
        with _DIRECT.open(f"{self.url}/api/v1/query?{urlencode({'query': promql})}", timeout=5.0) as reply:
            return json.loads(reply.read())["data"]

    def wait_for(self, promql: str, timeout: float = 20.0) -> list[Any]:
        """Wait until an instant query returns a non-empty vector; its result."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(promql)["result"]
            if result:
                return list(result)
            time.sleep(0.2)
        raise AssertionError(
            f"{promql} returned nothing within {timeout:g} s; prometheus log: {self.log_tail()}"
        )

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)  # the group this test started (start_new_session)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def write_targets(path: Path, targets: dict[str, str]) -> None:
    """A file_sd file: one target per slot label (slot -> host:port), written atomically."""
    data = [{"targets": [address], "labels": {"slot": slot}} for slot, address in targets.items()]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)
