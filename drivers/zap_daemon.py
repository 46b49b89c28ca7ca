"""The `zap` scan engine of DR-ZAP: a real ZAP daemon, the zap-baseline way, through drivers.zap_client.

It connects to `[zap] api_url` with the API key, or, when nothing answers there and `[zap] path` is set, starts
`zap.sh -daemon` (`zap.bat` on Windows), waits (bounded) until its API answers and stops it by PID afterwards.
Then: new session, access the target, spider it for at most `spider_minutes`, wait (bounded, polled) until the
passive scan queue is empty, fetch the alerts for the target's base URL and ZAP's own HTML report. Also PRE's
tool check, `check_zap_available`. It registers itself as engine "zap" of drivers.zap.SCANNERS.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from drivers.base import plain_error, quoted
from drivers.commands import CommandError, CommandMissing, kill_tree, resolve_program, start_process
from drivers.config import Zap
from drivers.zap import SCANNERS, Scanner, ScannerMissing, ZapError, ZapNotAnswering, ZapUnreachable
from drivers.zap_alerts import AlertInstance, ScanResult, ZapAlert, confidence_code, group_alerts, risk_code
from drivers.zap_client import ZapClient


def _api_key(settings: Zap, environ: Mapping[str, str]) -> str:
    return settings.api_key or environ.get("ZAP_API_KEY", "")


def _port(api_url: str) -> int:
    parts = urlsplit(api_url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def _no_zap(settings: Zap, why: str) -> str:
    """No daemon answers and none can be started: what the operator can do about it."""
    return (
        f"no ZAP daemon answers at {settings.api_url} ({why}) and [zap] path is not set: start one "
        f"(zap.sh -daemon -host 127.0.0.1 -port {_port(settings.api_url)} -config api.key=$ZAP_API_KEY, or "
        "ZAP's container image), or install ZAP (https://www.zaproxy.org/download/) and set [zap] path to "
        'zap.sh / zap.bat, or use engine = "builtin"'
    )


def _not_zap(exc: ZapNotAnswering) -> str:
    """Something accepts connections at [zap] api_url but does not answer as ZAP: what to check."""
    return f"{exc}: is something other than ZAP listening there? Check [zap] api_url"


def _zap_executable(settings: Zap) -> Path:
    path = Path(settings.path).expanduser()
    if path.is_dir():  # the ZAP installation directory
        path = path / ("zap.bat" if sys.platform == "win32" else "zap.sh")
    if not path.is_file():
        raise ScannerMissing(
            f"[zap] path {settings.path}: no such file (expected zap.sh, zap.bat or ZAP's directory; "
            "ZAP: https://www.zaproxy.org/download/)"
        )
    return path


def check_zap_available(
    settings: Zap, *, timeout_s: float = 2.0, environ: Mapping[str, str] | None = None
) -> str | None:
    """PRE's tool check for DR-ZAP: why the scan could not run, in the operator's words, or None.

    builtin needs nothing. zap: a daemon answers at [zap] api_url (asked for its version, bounded by
    `timeout_s`), or, when nothing answers there, [zap] path names a ZAP to start. Nothing is started here.
    """
    if settings.engine != "zap":
        return None
    environ = os.environ if environ is None else environ
    problem: str | None = None
    try:
        client = ZapClient(settings.api_url, _api_key(settings, environ), timeout_s)
        _value("core/view/version", client.core.version)
    except ImportError:
        problem = (
            "the ZAP API client (PyPI zaproxy) is not installed: pip install -r requirements.txt, "
            'or use [zap] engine = "builtin"'
        )
    except ZapUnreachable as exc:
        problem = _no_zap(settings, str(exc)) if not settings.path else _zap_path_problem(settings)
    except ZapNotAnswering as exc:
        problem = _not_zap(exc)
    except ZapError as exc:
        problem = str(exc)
    return problem


def _zap_path_problem(settings: Zap) -> str | None:
    """Why the ZAP of [zap] path could not be started, or None."""
    try:
        executable = _zap_executable(settings)
        resolve_program(str(executable), cwd=executable.parent, what="[zap] path")
    except (ScannerMissing, CommandMissing) as exc:
        return f"no ZAP daemon answers at {settings.api_url} and {exc}"
    return None


def _value(call: str, value: Any) -> Any:
    """zapv2 returns the first value of ZAP's JSON object; a wrong shape means it was not ZAP that answered."""
    if value is None:
        raise ZapError(f"ZAP API {call}: empty answer")
    return value


@dataclass
class _Daemon:
    """A ZAP this scan started: stopped by its PID (and the processes it started) when the scan ends."""

    proc: subprocess.Popen[bytes]
    executable: Path
    log: Path
    key: str

    def tail(self, lines: int = 8) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no output)"
        return " | ".join(text.strip().splitlines()[-lines:]) or "(no output)"

    def stop(self, client: ZapClient | None) -> None:
        if self.proc.poll() is None and client is not None:
            client.timeout_s = 5.0
            try:
                client.core.shutdown()  # a clean exit first: ZAP closes its session database
            except ZapError:
                pass  # not answering (never became ready): nothing to wait for, stop it by PID below
            else:
                _wait(self.proc, 15.0)
        if self.proc.poll() is None:
            # zap.sh / zap.bat start Java as a child: stop the whole tree of the PID we started, nothing else.
            kill_tree(self.proc)


def _wait(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout_s)


@SCANNERS.register("zap")
class ZapDaemonScanner(Scanner):
    """A ZAP daemon through its API, the zap-baseline way (spider, then passive scan only: no attacks)."""

    engine = "zap"
    API_TIMEOUT_S = 120.0  # alerts and the HTML report of a large site take a while
    PROBE_TIMEOUT_S = 5.0  # "is a ZAP there?" must not hang the run
    ALERTS_PAGE = 1000
    MAX_ALERT_PAGES = 200

    def describe(self, result: ScanResult | None = None) -> str:
        version = result.engine_version if result and result.engine_version else "ZAP"
        s = self.settings
        return (
            f"zap: {version} daemon at {s.api_url} (zap-baseline style: new session, spider up to "
            f"{s.spider_minutes:g} min, then ZAP's passive scan rules as enabled in that daemon; no active scan)."
        )

    def _api_key(self) -> str:
        return _api_key(self.settings, self.environ)

    def _scan(self, target: str) -> ScanResult:
        with self._session() as (client, version, notes):
            result = self._baseline(client, target)
            result.engine_version = f"ZAP {version}"
            result.notes[:0] = notes
            return result

    @contextmanager
    def _session(self) -> Iterator[tuple[ZapClient, str, list[str]]]:
        """A client for a daemon that answers: the one at api_url, or one started from [zap] path."""
        s = self.settings
        client = ZapClient(s.api_url, self._api_key(), self.PROBE_TIMEOUT_S)
        version = ""
        daemon: _Daemon | None = None
        try:
            version = str(_value("core/view/version", client.core.version))
        except ZapUnreachable as exc:
            if not s.path:
                raise ScannerMissing(_no_zap(s, str(exc))) from None
            daemon = self._start_daemon()
        except ZapNotAnswering as exc:
            raise ZapError(_not_zap(exc)) from None
        if daemon is None:
            client.timeout_s = self.API_TIMEOUT_S
            yield client, version, []
            return
        client = ZapClient(s.api_url, daemon.key, self.PROBE_TIMEOUT_S)
        try:
            version = self._wait_ready(client, daemon)
            client.timeout_s = self.API_TIMEOUT_S
            started = f"started ZAP {version} from {daemon.executable} (PID {daemon.proc.pid}); stopped after the scan"
            yield client, version, [started]
        finally:
            daemon.stop(client)

    def _port(self) -> int:
        return _port(self.settings.api_url)

    def _executable(self) -> Path:
        return _zap_executable(self.settings)

    def _start_daemon(self) -> _Daemon:
        executable = self._executable()
        host = urlsplit(self.settings.api_url).hostname or "127.0.0.1"
        # A daemon we start gets a key even when none is configured: its API must never run open.
        key = self._api_key() or secrets.token_urlsafe(24)
        argv = [
            str(executable),
            "-daemon",
            "-host",
            host,
            "-port",
            str(self._port()),
            "-config",
            f"api.key={key}",
        ]
        workdir = self.workdir or Path.cwd()
        workdir.mkdir(parents=True, exist_ok=True)
        log = workdir / "zap-daemon.log"
        with log.open("ab") as out:
            out.write(
                f"starting {executable} -daemon -host {host} -port {self._port()} (API key not shown)\n".encode()
            )
            out.flush()
            try:
                proc = start_process(
                    argv,
                    cwd=executable.parent,
                    env=None,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    what="[zap] path",
                )
            except CommandError as exc:  # "[zap] path: cannot start .../zap.sh: Permission denied"
                raise ZapError(str(exc)) from None
        return _Daemon(proc, executable, log, key)

    def _wait_ready(self, client: ZapClient, daemon: _Daemon) -> str:
        timeout = self.settings.start_timeout_s
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            code = daemon.proc.poll()
            if code is not None:
                raise ZapError(
                    f"ZAP started from {daemon.executable} exited with code {code} before its API answered at "
                    f"{self.settings.api_url}; its output: {daemon.tail()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ZapError(
                    f"ZAP started from {daemon.executable} (PID {daemon.proc.pid}) did not answer its API at "
                    f"{self.settings.api_url} within {timeout:g} s ([zap] start_timeout_s); last: {last}; "
                    f"its output: {daemon.tail()}"
                )
            client.timeout_s = max(0.2, min(self.PROBE_TIMEOUT_S, remaining))
            try:
                return str(_value("core/view/version", client.core.version))
            except (ZapUnreachable, ZapNotAnswering) as exc:
                last = str(exc)
            time.sleep(max(0.0, min(0.5, deadline - time.monotonic())))

    def _baseline(self, client: ZapClient, target: str) -> ScanResult:
        s = self.settings
        try:
            client.core.new_session()
            client.core.access_url(url=target, followredirects=True)
            pages, stopped = [target], False
            if s.spider_minutes > 0:
                pages, stopped = self._spider(client, target)
            self._wait_passive(client)
            raw = self._alerts(client, target)
            report = client.core.htmlreport()
        except (ValueError, TypeError, KeyError) as exc:
            raise ZapError(f"unexpected answer from ZAP at {s.api_url}: {plain_error(exc)}") from None
        notes = [f"spider stopped at [zap] spider_minutes = {s.spider_minutes:g}"] if stopped else []
        return ScanResult(
            "zap", target, group_alerts(_from_api(a) for a in raw), pages,
            report_html=str(report), notes=notes, spider_stopped=stopped,
        )  # fmt: skip

    def _spider(self, client: ZapClient, target: str) -> tuple[list[str], bool]:
        scan_id = str(
            _value("spider/action/scan", client.spider.scan(url=target, recurse=True, subtreeonly=True))
        )
        if not scan_id.isdigit():
            raise ZapError(f"ZAP did not start its spider on {target}: {scan_id}")
        deadline = time.monotonic() + self.settings.spider_minutes * 60
        stopped = False
        while int(client.spider.status(scan_id)) < 100:
            if time.monotonic() >= deadline:
                client.spider.stop(scan_id)
                stopped = True
                break
            time.sleep(max(0.0, min(self.poll_s, deadline - time.monotonic())))
        results = client.spider.results(scan_id)
        return ([str(u) for u in results] if isinstance(results, list) else [target]), stopped

    def _wait_passive(self, client: ZapClient) -> None:
        timeout = self.settings.passive_timeout_s
        deadline = time.monotonic() + timeout
        while (left := int(client.pscan.records_to_scan)) > 0:
            if time.monotonic() >= deadline:
                raise ZapError(
                    f"ZAP's passive scan still had {left} records to scan after {timeout:g} s "
                    "([zap] passive_timeout_s): the alerts would be incomplete, so the gate cannot pass"
                )
            time.sleep(max(0.0, min(self.poll_s, deadline - time.monotonic())))

    def _alerts(self, client: ZapClient, target: str) -> list[Mapping[str, Any]]:
        alerts: list[Mapping[str, Any]] = []
        for page in range(self.MAX_ALERT_PAGES):
            batch = client.core.alerts(baseurl=target, start=page * self.ALERTS_PAGE, count=self.ALERTS_PAGE)
            if not isinstance(batch, list):
                raise ZapError(f"ZAP API core/view/alerts: expected a list, got {quoted(str(batch)[:80])}")
            alerts.extend(batch)
            if len(batch) < self.ALERTS_PAGE:
                return alerts
        raise ZapError(
            f"more than {self.ALERTS_PAGE * self.MAX_ALERT_PAGES} alerts for {target}: not a baseline"
        )


def _from_api(raw: Mapping[str, Any]) -> ZapAlert:
    """One alert of ZAP's API (core/view/alerts: one per instance, strings) as a ZapAlert."""
    plugin_id = str(raw.get("pluginId", ""))
    instance = AlertInstance(
        uri=str(raw.get("url", "")),
        method=str(raw.get("method", "")),
        param=str(raw.get("param", "")),
        attack=str(raw.get("attack", "")),
        evidence=str(raw.get("evidence", "")),
        otherinfo=str(raw.get("other", "")),
    )
    return ZapAlert(
        plugin_id=plugin_id,
        alert_ref=str(raw.get("alertRef") or plugin_id),
        name=str(raw.get("name") or raw.get("alert", "")),
        riskcode=risk_code(str(raw.get("risk", ""))),
        confidence=confidence_code(str(raw.get("confidence", ""))),
        desc=str(raw.get("description", "")),
        solution=str(raw.get("solution", "")),
        reference=str(raw.get("reference", "")),
        cweid=int(raw.get("cweid") or -1),
        wascid=int(raw.get("wascid") or -1),
        instances=(instance,),
    )
