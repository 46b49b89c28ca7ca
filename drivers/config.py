"""The environment file (environments/NAME.toml): schema, loading and validation.

Plain Python, no pytest: the plugins validate the whole file with it before any system is touched, and the
drivers read their sections from the typed result. Every problem is a `ConfigError` naming the file, the key
and what was expected. `${NAME}` values come from the process environment; their values are collected in
`Environment.secrets` so that every evidence writer can redact them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from drivers import phases

__all__ = [
    "ConfigError",
    "ConfigProblems",
    "Environment",
    "available_environments",
    "load_environment",
]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(ValueError):
    """A usage error in an environment file: names the file, the key and what was expected."""

    def __init__(self, source: str, key: str, expected: str) -> None:
        self.source, self.key, self.expected = source, key, expected
        where = f"{source}: {key}: " if key else f"{source}: "
        super().__init__(where + expected)


class ConfigProblems(ConfigError):
    """Every problem found in one environment file, reported at once (one usage error, not one per run)."""

    def __init__(self, problems: list[ConfigError], env: Environment | None = None) -> None:
        self.problems = problems
        # What could be read, with defaults where a value was bad: lets preflight report the file's problems
        # together with those of the run.
        self.env = env
        first = problems[0]
        if len(problems) == 1:
            super().__init__(first.source, first.key, first.expected)
        else:
            ValueError.__init__(self, "\n".join(str(p) for p in problems))
            self.source, self.key, self.expected = first.source, first.key, first.expected


_FILE_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _choice(*allowed: str) -> dict[str, Any]:
    return {"choices": allowed}


@dataclass(frozen=True)
class Service:
    base_url: str = ""  # filled in by the embedded Lab when kind = "lab"
    health_path: str = "/health"
    swagger_path: str = "/swagger/index.html"
    kerberos_path: str = "/auth/negotiate"
    timeout_s: float = field(default=5.0, metadata={"min": 0.1})
    retries: int = field(default=2, metadata={"min": 0})
    ca_file: str = ""  # a corporate CA bundle for https probes; empty = the system store


@dataclass(frozen=True)
class Slots:
    blue: str = ""
    green: str = ""
    # BG-5: blue stays running as a warm standby at least until monitoring ends, plus standby_s; then it is
    # kept (the default: an operator releases it deliberately) or released (stopped).
    standby_s: float = field(default=0.0, metadata={"min": 0})
    standby_then: str = field(default="keep", metadata=_choice("keep", "release"))


@dataclass(frozen=True)
class Packages:
    dir: str = "artifacts/offline"
    previous_stable: str = ""  # empty = the highest version below the latest package


@dataclass(frozen=True)
class Drivers:
    # Driver names are checked against the driver registries by preflight, for the flows that use them.
    deploy: str = "lab"
    router: str = "lab"
    start_timeout_s: float = field(default=30.0, metadata={"min": 0.1})
    # How long one [drivers.command] verb may run before its whole process tree is killed; per verb in
    # [drivers.timeouts] (e.g. deploy = 900), else command_timeout_s.
    command_timeout_s: float = field(default=600.0, metadata={"min": 0.1})
    timeouts: dict[str, float] = field(default_factory=dict)
    command: dict[str, list[str]] = field(default_factory=dict)

    def timeout_for(self, verb: str) -> float:
        return self.timeouts.get(verb, self.command_timeout_s)


@dataclass(frozen=True)
class RouterNginx:
    """[router.nginx]: the nginx router driver. The live slot's upstream lives in an include file that the driver
    rewrites (temp file + rename), then tests (`nginx -t`) and reloads; a failed test puts the old include back."""

    include: str = ""  # the include file holding the upstream block, e.g. /etc/nginx/mcms-live.conf
    nginx: str = "nginx"  # the nginx binary (a name on PATH or a path)
    prefix: str = ""  # nginx -p PREFIX; empty = nginx's compiled-in prefix
    conf: str = ""  # nginx -c CONF; empty = nginx's compiled-in configuration file
    reload: list[str] = field(default_factory=list)  # reload argv; empty = nginx [-p] [-c] -s reload
    upstream: str = "mcms_live"  # the name of the upstream block the include defines
    blue: str = ""  # host:port nginx sends blue's traffic to; empty = host and port of [slots] blue
    green: str = ""  # host:port for green; empty = host and port of [slots] green
    timeout_s: float = field(default=30.0, metadata={"min": 0.1})  # for nginx -t and the reload


@dataclass(frozen=True)
class Router:
    nginx: RouterNginx = field(default_factory=RouterNginx)


@dataclass(frozen=True)
class Notify:
    webhook_url: str = ""
    format: str = "generic"  # a name of drivers.notify.FORMATS, checked by preflight
    timeout_s: float = field(default=5.0, metadata={"min": 0.1})
    retries: int = field(default=3, metadata={"min": 0})


@dataclass(frozen=True)
class MetricQuery:
    """[monitor.metrics.queries.NAME]: one PromQL query and its threshold (a breach when the value is above
    `max` or below `min`). `{slot}` and `{env}` in the query are the slot under watch and the environment."""

    query: str = ""
    max: float = math.inf
    min: float = -math.inf
    unit: str = ""  # for the report's chart, e.g. "ms", "ratio", "requests"
    no_data: str = field(default="fail", metadata=_choice("fail", "pass"))  # an empty result


@dataclass(frozen=True)
class MonitorMetrics:
    """[monitor.metrics]: a Prometheus-compatible query API (/api/v1/query) evaluated every monitor interval."""

    url: str = ""  # e.g. http://prometheus.corp.example:9090; empty = no metric checks
    bearer_token: str = ""  # usually "${PROMETHEUS_TOKEN}"; sent as Authorization: Bearer
    timeout_s: float = field(default=5.0, metadata={"min": 0.1})
    # "No data" in the first seconds after the switch is not yet a failure (Prometheus discovers and scrapes the
    # slot, a rate() window fills); a value out of threshold or a failed query counts from the first evaluation.
    no_data_grace_s: float = field(default=0.0, metadata={"min": 0})
    queries: dict[str, MetricQuery] = field(default_factory=dict)


@dataclass(frozen=True)
class Monitor:
    duration_s: float = field(default=300.0, metadata={"min": 0})
    interval_s: float = field(default=5.0, metadata={"min": 0.05})
    sla_p95_ms: float = field(default=800.0, metadata={"min": 1})
    max_error_rate: float = field(default=0.01, metadata={"min": 0, "max": 1})
    alert_after_failures: int = field(default=2, metadata={"min": 1})
    metrics: MonitorMetrics = field(default_factory=MonitorMetrics)


@dataclass(frozen=True)
class Axe:
    pages: list[str] = field(default_factory=lambda: ["/", "/login", "/dashboard"])
    fail_on: list[str] = field(
        default_factory=lambda: ["critical", "serious"],
        metadata=_choice("critical", "serious", "moderate", "minor"),
    )
    # axe-core rule tags to run: WCAG 2 A/AA plus best practices by default.
    tags: list[str] = field(
        default_factory=lambda: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
    )
    script: str = ""  # a newer axe.min.js; empty = the axe-core that axe-selenium-python carries
    baseline: str = ""  # accepted findings: TSV rule<TAB>page<TAB>expires (YYYY-MM-DD)<TAB>reason
    login: bool = (
        True  # log in first (with [e2e] username/password) so that pages behind the login are scanned
    )


@dataclass(frozen=True)
class Browser:
    # chrome: Chromium or Google Chrome with chromedriver; edge: Microsoft Edge with msedgedriver (drivers.browser)
    kind: str = field(default="chrome", metadata=_choice("chrome", "edge"))
    # Empty = found on PATH: chromium / chromium-browser / google-chrome (edge: msedge / microsoft-edge).
    chrome: str = ""  # browser binary
    chromedriver: str = ""  # driver binary: chromedriver (edge: msedgedriver); never downloaded
    remote: str = ""  # a Selenium Grid URL (remote WebDriver) instead of a local browser
    # Extra browser arguments, for local and remote sessions (a Grid node running as root needs --no-sandbox
    # and the other root-safe flags README "Selenium Grid" lists).
    args: list[str] = field(default_factory=list)
    page_timeout_s: float = field(default=30.0, metadata={"min": 1})
    window: str = "1280x1024"


@dataclass(frozen=True)
class Zap:
    engine: str = "builtin"  # a name of drivers.zap.SCANNERS, checked by preflight
    api_url: str = "http://127.0.0.1:8090"
    api_key: str = ""  # usually "${ZAP_API_KEY}"
    path: str = ""  # zap.sh / zap.bat to start a daemon when none answers at api_url
    rules: str = ""  # zap-baseline rules file: id<TAB>IGNORE|INFO|WARN|FAIL<TAB>comment, OUTOFSCOPE lines
    fail_on: list[str] = field(
        default_factory=lambda: ["High", "Medium"], metadata=_choice("High", "Medium", "Low", "Informational")
    )
    spider_minutes: float = field(default=1.0, metadata={"min": 0})
    max_pages: int = field(default=50, metadata={"min": 1})
    max_depth: int = field(default=3, metadata={"min": 0})
    start_timeout_s: float = field(default=120.0, metadata={"min": 1})
    passive_timeout_s: float = field(default=300.0, metadata={"min": 1})


@dataclass(frozen=True)
class E2E:
    flows: list[str] = field(default_factory=list, metadata=_choice("portal"))  # Selenium page-object flows
    username: str = ""
    password: str = ""  # usually "${MCMS_E2E_PASSWORD}"
    command: list[str] = field(default_factory=list)  # e.g. ["npm", "run", "test:regression"]
    command_timeout_s: float = field(default=900.0, metadata={"min": 1})
    junit: str = ""  # a JUnit XML the command writes, read into the report


@dataclass(frozen=True)
class Matrix:
    # The rows whose check may never be skipped: a skip ("not configured", tool missing) fails the gate.
    required: list[str] = field(
        default_factory=lambda: list(phases.ROWS),
        metadata=_choice(*phases.ROWS),
    )


@dataclass(frozen=True)
class Approval:
    required: bool = True


@dataclass(frozen=True)
class Scope:
    allowed_hosts: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Paths:
    # Playbook §3.4: the log collection paths that must exist (relative to the project root, or to the
    # Lab's directory for the embedded Lab).
    log_dirs: list[str] = field(default_factory=lambda: ["artifacts/offline/logs", "logs/deploy", "logs/app"])
    timeline_dir: str = "logs/deploy"


@dataclass(frozen=True)
class Retention:
    # Playbook §7: how long the evidence directory keeps what runs wrote, in whole days. When a run's bundle
    # starts, older bundles (and their .zip) and notification files of the evidence directory are pruned.
    reports_days: int = field(default=14, metadata={"min": 1})
    notifications_days: int = field(default=30, metadata={"min": 1})


@dataclass(frozen=True)
class LabSettings:
    dir: str = ".lab"
    start_timeout_s: float = field(default=15.0, metadata={"min": 0.1})
    # The Lab's public address: its built-in reverse proxy, or a real nginx (Debian's) in front of the slots;
    # without an nginx binary the Lab falls back to the built-in router and says so.
    router: str = field(default="builtin", metadata=_choice("builtin", "nginx"))


@dataclass(frozen=True)
class Environment:
    """A validated environment file."""

    name: str
    kind: str
    source: Path
    protect: bool = False  # destructive flows also need --confirm-env NAME
    service: Service = field(default_factory=Service)
    slots: Slots = field(default_factory=Slots)
    packages: Packages = field(default_factory=Packages)
    drivers: Drivers = field(default_factory=Drivers)
    router: Router = field(default_factory=Router)
    notify: Notify = field(default_factory=Notify)
    monitor: Monitor = field(default_factory=Monitor)
    axe: Axe = field(default_factory=Axe)
    browser: Browser = field(default_factory=Browser)
    zap: Zap = field(default_factory=Zap)
    e2e: E2E = field(default_factory=E2E)
    matrix: Matrix = field(default_factory=Matrix)
    approval: Approval = field(default_factory=Approval)
    scope: Scope = field(default_factory=Scope)
    paths: Paths = field(default_factory=Paths)
    retention: Retention = field(default_factory=Retention)
    lab: LabSettings = field(default_factory=LabSettings)
    # The sections that the file actually wrote; "Sections a run does not use may be left out".
    present: frozenset[str] = frozenset()
    # Values that came from ${VAR}: redacted from every report, journal and log.
    secrets: frozenset[str] = frozenset()
    # "[section] key" -> VAR for ${VAR} not set in the process environment: an error only for a run that
    # uses that section (a smoke-only run must not need the webhook's secret).
    unset: Mapping[str, str] = field(default_factory=dict)

    SECTIONS: ClassVar[dict[str, type]] = {}

    def __repr__(self) -> str:
        # The dataclass repr would print substituted ${VAR} values into tracebacks and logs.
        return f"Environment(name={self.name!r}, kind={self.kind!r}, source={str(self.source)!r})"

    @property
    def is_lab(self) -> bool:
        return self.kind == "lab"

    def with_lab_endpoints(
        self,
        base_url: str,
        slots: Mapping[str, str],
        webhook_url: str,
        packages_dir: Path,
        *,
        router: str | None = None,
        nginx: Mapping[str, Any] | None = None,
    ) -> Environment:
        """The same environment with the addresses the embedded Lab chose at start.

        `router` is what serves the Lab's public address ("builtin" or "nginx"; None without a router). Behind
        nginx, `nginx` holds the [router.nginx] keys of the Lab's nginx (include, nginx, prefix, conf, upstream,
        blue, green), filled in here. In the Lab the router driver follows what serves the public address: behind
        the built-in router (the Lab fell back to it: no nginx binary) a file that says [drivers] router =
        "nginx" is driven by the "lab" router driver, and behind nginx (a kept Lab) "lab" becomes "nginx".
        """
        drivers, routers = self.drivers, self.router
        if nginx is not None:
            routers = dataclasses.replace(self.router, nginx=dataclasses.replace(self.router.nginx, **nginx))
        if router == "builtin" and self.drivers.router == "nginx":
            drivers = dataclasses.replace(self.drivers, router="lab")
        elif router == "nginx" and self.drivers.router == "lab":
            drivers = dataclasses.replace(self.drivers, router="nginx")
        return dataclasses.replace(
            self,
            service=dataclasses.replace(self.service, base_url=base_url),
            slots=dataclasses.replace(
                self.slots,
                blue=slots.get("blue", self.slots.blue),
                green=slots.get("green", self.slots.green),
            ),
            notify=dataclasses.replace(self.notify, webhook_url=webhook_url),
            packages=dataclasses.replace(self.packages, dir=str(packages_dir)),
            drivers=drivers,
            router=routers,
        )

    def redact(self, text: str) -> str:
        """Replace every secret, and any fragment of its sensitive part (a truncated repr shows fragments)."""
        return redact_text(text, self.secrets)

    def sections_used(self, flow: str, rows: frozenset[str]) -> set[str]:
        used = {"service", "scope", "lab", "paths", "matrix"}
        if flow in phases.CHANGING_FLOWS:
            used |= {"packages", "drivers", "notify"}
        if flow == phases.BLUEGREEN:
            used |= {"slots", "monitor", "approval", "router"}
        used |= {s for row in rows for s in (*phases.BY_ID[row].sections, *phases.BY_ID[row].extra_sections)}
        if "DR-AXE" in rows and self.axe.login:
            used.add("e2e")  # the login for pages behind it comes from [e2e] username / password
        return used

    def row_configured(self, row: str) -> bool:
        """Whether the environment file configures this matrix row (DR-SMOKE needs only [service])."""
        if row == "DR-E2E":
            return "e2e" in self.present and bool(self.e2e.flows or self.e2e.command)
        return all(section in self.present for section in phases.BY_ID[row].sections)

    def require(self, flow: str, rows: frozenset[str]) -> None:
        """Raise ConfigProblems when a run of `flow` with matrix `rows` lacks what it needs."""
        problems = self.problems(flow, rows)
        if problems:
            raise ConfigProblems(problems)

    def problems(self, flow: str, rows: frozenset[str]) -> list[ConfigError]:
        """Every section or value a run of `flow` with matrix `rows` needs and does not have, at once."""
        src = str(self.source)
        used = self.sections_used(flow, rows)
        found: list[ConfigError] = []
        for label, var in sorted(self.unset.items()):
            section = label.split("]")[0].strip("[").split(".")[0]
            if section in used:
                found.append(
                    ConfigError(
                        src,
                        label,
                        f"${{{var}}} is not set in the process environment (set {var} before the run)",
                    )
                )
        if not self.is_lab:
            if "service" not in self.present or not self.service.base_url:
                found.append(
                    ConfigError(src, "[service] base_url", "required: the public address of the service")
                )
            if flow in ("rollback", "bluegreen"):
                if not self.notify.webhook_url and "[notify] webhook_url" not in self.unset:
                    found.append(ConfigError(src, "[notify] webhook_url", f"required for the {flow} flow"))
                if "paths" not in self.present:
                    found.append(
                        ConfigError(
                            src,
                            "[paths]",
                            f"required for the {flow} flow outside the Lab: log_dirs (playbook §3.4) and "
                            "timeline_dir (§9) on this machine",
                        )
                    )
            if flow == "bluegreen":
                for slot in ("blue", "green"):
                    if not getattr(self.slots, slot):
                        found.append(ConfigError(src, f"[slots] {slot}", "required for the bluegreen flow"))
        if "DR-AXE" in rows and not self.axe.pages:
            found.append(ConfigError(src, "[axe] pages", "at least one page path for DR-AXE"))
        return found


_SECTION_TYPES: dict[str, type] = {
    "service": Service,
    "slots": Slots,
    "packages": Packages,
    "drivers": Drivers,
    "router": Router,
    "notify": Notify,
    "monitor": Monitor,
    "axe": Axe,
    "browser": Browser,
    "zap": Zap,
    "e2e": E2E,
    "matrix": Matrix,
    "approval": Approval,
    "scope": Scope,
    "paths": Paths,
    "retention": Retention,
    "lab": LabSettings,
}
Environment.SECTIONS = _SECTION_TYPES


_FRAGMENT = 8  # characters of a secret's sensitive part that are already too many to show


def _sensitive_part(secret: str) -> str:
    # For a URL (a webhook's whole address sits in one variable) the scheme and host are not secret; the
    # path and query carry the token.
    parts = urlsplit(secret)
    if parts.scheme in ("http", "https") and parts.netloc:
        return secret[len(f"{parts.scheme}://{parts.netloc}") :]
    return secret


_SHORT_SECRET = 4  # shorter secrets are hidden where they stand alone, not inside every word that holds them


def redact_text(text: str, secrets: frozenset[str] | set[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) < _SHORT_SECRET:
            # Replacing every "k" would destroy the evidence ("***eep_lab") and still not protect a one-letter
            # key; it is hidden wherever it stands as a value of its own.
            text = re.sub(rf"(?<![A-Za-z0-9_]){re.escape(secret)}(?![A-Za-z0-9_])", "***", text)
        else:
            text = text.replace(secret, "***")
    windows = {
        part[i : i + _FRAGMENT]
        for part in map(_sensitive_part, secrets)
        if len(part) >= _FRAGMENT
        for i in range(len(part) - _FRAGMENT + 1)
    }
    if not windows or len(text) < _FRAGMENT:
        return text
    hidden = bytearray(len(text))
    for i in range(len(text) - _FRAGMENT + 1):
        if text[i : i + _FRAGMENT] in windows:
            hidden[i : i + _FRAGMENT] = b"\x01" * _FRAGMENT
    if not any(hidden):
        return text
    out, i = [], 0
    while i < len(text):
        if hidden[i]:
            out.append("***")
            while i < len(text) and hidden[i]:
                i += 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def available_environments(directory: Path) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.toml"))


def load_environment(path: Path, environ: Mapping[str, str] | None = None) -> Environment:
    """Read, substitute and validate an environment file; raise ConfigProblems listing every problem."""
    environ = os.environ if environ is None else environ
    src = str(path)
    try:
        raw_text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(src, "", f"cannot read the environment file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(src, "", "not UTF-8 text (save the file as UTF-8)") from None
    try:
        raw = tomllib.loads(raw_text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(src, "", f"not valid TOML: {exc}") from None

    secrets: set[str] = set()
    unset: dict[str, str] = {}
    loader = _Loader(src, environ, secrets, unset)
    known_top = {"name", "kind", "protect", *_SECTION_TYPES}
    for key in raw:
        if key not in known_top:
            loader.problem(key, f"unknown key (known: {', '.join(sorted(known_top))})")
    name = loader.scalar("name", raw.get("name"), str, required=True)
    if isinstance(name, str) and not _FILE_SAFE_NAME.fullmatch(name):
        loader.problem(
            "name",
            "expected a name of 1 to 64 letters, digits, '.', '_' or '-' starting with a letter or digit "
            f"(it names the evidence bundle and the timeline), got {json.dumps(name, ensure_ascii=False)}",
        )
    kind = loader.scalar("kind", raw.get("kind", "remote"), str)
    if kind not in ("lab", "remote", _BAD):
        loader.problem("kind", f'expected "lab" or "remote", got {json.dumps(kind, ensure_ascii=False)}')
    protect = loader.scalar("protect", raw.get("protect", False), bool)
    sections: dict[str, Any] = {}
    for section, cls in _SECTION_TYPES.items():
        if section in raw:
            if not isinstance(raw[section], dict):
                loader.problem(section, f"expected a table [{section}], got {_type_name(raw[section])}")
                continue
            sections[section] = loader.section(section, cls, raw[section])
    env = Environment(
        name=name if isinstance(name, str) else "",
        kind=kind if kind in ("lab", "remote") else "remote",
        protect=protect is True,
        source=path,
        present=frozenset(sections),
        secrets=frozenset(s for s in secrets if s),
        unset=unset,
        **sections,
    )
    loader.problems.extend(_check_urls(env))
    if loader.problems:
        raise ConfigProblems(loader.problems, env)
    return env


def _strip_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


def _origin(url: str) -> tuple[str, str, int | None, str]:
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        port = None
    return parts.scheme, (parts.hostname or "").lower(), port, parts.path.rstrip("/")


def _check_urls(env: Environment) -> list[ConfigError]:
    # Addresses of the service itself: a query or fragment would be dropped or misread when a path is
    # appended (DR-SMOKE would probe another URL and pass). A webhook URL keeps its query (it carries the
    # signature of Teams workflows).
    service_urls = {
        "[service] base_url": env.service.base_url,
        "[slots] blue": env.slots.blue,
        "[slots] green": env.slots.green,
    }
    urls = {
        **service_urls,
        "[notify] webhook_url": env.notify.webhook_url,
        "[zap] api_url": env.zap.api_url,
        "[browser] remote": env.browser.remote,
        "[monitor.metrics] url": env.monitor.metrics.url,
    }
    found: list[ConfigError] = []
    for key, url in urls.items():
        if url:
            found.extend(_url_problems(env, key, url, service=key in service_urls))
    found.extend(_distinct_addresses(str(env.source), service_urls))
    found.extend(_lab_addresses(env))
    found.extend(_metric_queries(env))
    return found


def _metric_queries(env: Environment) -> list[ConfigError]:
    src, metrics = str(env.source), env.monitor.metrics
    found: list[ConfigError] = []
    if metrics.queries and not metrics.url:
        found.append(
            ConfigError(
                src, "[monitor.metrics] url", "required when queries are set: the query API's address"
            )
        )
    for name, q in metrics.queries.items():
        label = f"[monitor.metrics.queries.{name}]"
        if not q.query.strip():
            found.append(ConfigError(src, f"{label} query", "required: a PromQL expression"))
        if math.isinf(q.max) and math.isinf(q.min):
            found.append(
                ConfigError(src, label, "expected a threshold: max (breach above) and/or min (breach below)")
            )
        elif q.min > q.max:
            found.append(
                ConfigError(src, label, f"min ({q.min:g}) is above max ({q.max:g}): every value would breach")
            )
    return found


def _url_problems(env: Environment, key: str, url: str, *, service: bool) -> list[ConfigError]:
    src = str(env.source)
    shown = "${...}" if url in env.secrets else repr(env.redact(_strip_userinfo(url)))
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        return [ConfigError(src, key, f"expected an http(s) URL with a host and a numeric port, got {shown}")]
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [ConfigError(src, key, f"expected an http(s) URL with a host, got {shown}")]
    found: list[ConfigError] = []
    if "@" in parts.netloc:
        found.append(
            ConfigError(
                src,
                key,
                "must not carry a user name or password (user:password@host): it would reach every "
                f"evidence file and the name resolver; got {shown}",
            )
        )
    if service and (parts.query or parts.fragment or url.endswith(("?", "#"))):
        found.append(
            ConfigError(
                src,
                key,
                f"must not have a query (?...) or fragment (#...): paths are appended to it; got {shown}",
            )
        )
    return found


def _distinct_addresses(src: str, service_urls: Mapping[str, str]) -> list[ConfigError]:
    found: list[ConfigError] = []
    seen: dict[tuple[str, str, int | None, str], str] = {}
    for key, url in service_urls.items():
        if not url:
            continue
        origin = _origin(url)
        if origin in seen:
            found.append(
                ConfigError(
                    src,
                    key,
                    f"is the same address as {seen[origin]}: blue, green and the public address must be "
                    "three distinct addresses (a slot checked on its own address must not be the live one)",
                )
            )
        else:
            seen[origin] = key
    return found


def _lab_addresses(env: Environment) -> list[ConfigError]:
    if not env.is_lab:
        return []
    found: list[ConfigError] = []
    for key in ("service", "slots", "notify"):
        if key not in env.present:
            continue
        section = getattr(env, key)
        for f in dataclasses.fields(section):
            if f.name in ("base_url", "blue", "green", "webhook_url") and getattr(section, f.name):
                found.append(
                    ConfigError(
                        str(env.source),
                        f"[{key}] {f.name}",
                        'must be left out when kind = "lab": the embedded Lab chooses its own addresses',
                    )
                )
    return found


class _Bad:
    """A value that failed validation: its problem is recorded, and the key keeps its default."""

    def __repr__(self) -> str:
        return "invalid"


_BAD: Any = _Bad()


class _Loader:
    def __init__(
        self, src: str, environ: Mapping[str, str], secrets: set[str], unset: dict[str, str]
    ) -> None:
        self.src, self.environ, self.secrets, self.unset = src, environ, secrets, unset
        self.problems: list[ConfigError] = []

    def problem(self, label: str, expected: str) -> Any:
        self.problems.append(ConfigError(self.src, label, expected))
        return _BAD

    def section(self, name: str, cls: type, table: dict[str, Any]) -> Any:
        """One table; `name` is its dotted TOML name ("monitor.metrics"). A field whose type is a dataclass is
        a sub-table ([router.nginx]); a dict of dataclasses is a table of named sub-tables
        ([monitor.metrics.queries.NAME])."""
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in table.items():
            label = f"[{name}] {key}"
            if name == "drivers" and key in ("command", "timeouts"):
                label = f"[drivers.{key}]"
            if key not in fields:
                self.problem(label, f"unknown key (known: {', '.join(fields)})")
                continue
            hint = hints[key]
            if isinstance(hint, type) and dataclasses.is_dataclass(hint):
                if not isinstance(value, dict):
                    self.problem(label, f"expected a table [{name}.{key}], got {_type_name(value)}")
                    continue
                values[key] = self.section(f"{name}.{key}", hint, value)
                continue
            item = typing.get_args(hint)[1] if typing.get_origin(hint) is dict else None
            if isinstance(item, type) and dataclasses.is_dataclass(item):
                if not isinstance(value, dict):
                    self.problem(label, f"expected tables [{name}.{key}.NAME], got {_type_name(value)}")
                    continue
                named: dict[str, Any] = {}
                for sub, sub_table in value.items():
                    if not isinstance(sub_table, dict):
                        self.problem(
                            f"[{name}.{key}] {sub}",
                            f"expected a table [{name}.{key}.{sub}], got {_type_name(sub_table)}",
                        )
                        continue
                    named[sub] = self.section(f"{name}.{key}.{sub}", item, sub_table)
                values[key] = named
                continue
            checked = self.value(label, value, hint, fields[key].metadata)
            if not _contains_bad(checked):
                values[key] = checked
        return cls(**values)

    def value(self, label: str, value: Any, hint: Any, meta: Mapping[str, Any]) -> Any:
        origin = typing.get_origin(hint)
        if origin is list:
            (item,) = typing.get_args(hint)
            if not isinstance(value, list):
                return self.problem(
                    label, f"expected a list of {_type_label(item)}s, got {_type_name(value)}"
                )
            return [self.value(f"{label}[{i}]", v, item, meta) for i, v in enumerate(value)]
        if origin is dict:
            _, item = typing.get_args(hint)
            if not isinstance(value, dict):
                return self.problem(label, f"expected a table, got {_type_name(value)}")
            return {k: self.value(f"{label} {k}", v, item, meta) for k, v in value.items()}
        if isinstance(hint, types.UnionType):
            raise TypeError(hint)  # pragma: no cover - the schema uses "" for "not set"
        return self.scalar(label, value, hint, meta=meta)

    def scalar(  # noqa: PLR0911 - one early return per kind of problem, flat on purpose
        self,
        label: str,
        value: Any,
        hint: type,
        *,
        required: bool = False,
        meta: Mapping[str, Any] | None = None,
    ) -> Any:
        meta = meta or {}
        if value is None:
            if required:
                return self.problem(label, f"required: expected a {_type_label(hint)}")
            return None
        if hint is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if hint is str and isinstance(value, str):
            value = self.substitute(label, value)
        if not isinstance(value, hint) or (hint is not bool and isinstance(value, bool)):
            shown = redact_text(repr(value), self.secrets)
            return self.problem(label, f"expected a {_type_label(hint)}, got {_type_name(value)} {shown}")
        if isinstance(value, float) and not math.isfinite(value):
            return self.problem(label, f"expected a finite number, got {value!r}")
        if "choices" in meta and value not in meta["choices"]:
            shown = redact_text(repr(value), self.secrets)
            return self.problem(
                label, f"expected one of {', '.join(map(repr, meta['choices']))}, got {shown}"
            )
        if "min" in meta and value < meta["min"]:
            return self.problem(label, f"expected a number >= {meta['min']}, got {value!r}")
        if "max" in meta and value > meta["max"]:
            return self.problem(label, f"expected a number <= {meta['max']}, got {value!r}")
        return value

    def substitute(self, label: str, text: str) -> str:
        def repl(match: re.Match[str]) -> str:
            var = match.group(1)
            if var not in self.environ or self.environ[var] == "":
                if not label.startswith("["):
                    self.problem(
                        label, f"${{{var}}} is not set in the process environment (set {var} before the run)"
                    )
                    return ""
                self.unset[label] = var
                return ""
            self.secrets.add(self.environ[var])
            return self.environ[var]

        return _VAR.sub(repl, text)


def _contains_bad(value: Any) -> bool:
    if value is _BAD:
        return True
    if isinstance(value, list):
        return any(_contains_bad(v) for v in value)
    if isinstance(value, dict):
        return any(_contains_bad(v) for v in value.values())
    return False


def _type_label(hint: type) -> str:
    return {str: "string", int: "whole number", float: "number", bool: "boolean (true or false)"}.get(
        hint, hint.__name__
    )


def _type_name(value: Any) -> str:
    return {
        str: "a string",
        int: "a whole number",
        float: "a number",
        bool: "a boolean",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)
