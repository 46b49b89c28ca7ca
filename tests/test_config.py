"""drivers/config.py in plain Python: environment files in tmp_path, ${VAR} substitution, secrets and
the errors that name the key and what was expected."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from drivers.config import ConfigError, load_environment
from tests.driver_env import load_env, write_env


def config_error(path: Path, environ: Mapping[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_environment(path, environ={} if environ is None else environ)
    return info.value


def test_config_substitutes_vars_inside_longer_strings_and_collects_them_as_secrets(tmp_path: Path) -> None:
    path = write_env(
        tmp_path,
        'name = "Stage"\n'
        '[service]\nbase_url = "https://${MCMS_HOST}.corp.example"\n'
        '[notify]\nwebhook_url = "https://hooks.example/webhookb2/${MCMS_TOKEN}/IncomingWebhook"\n',
    )
    env = load_environment(path, environ={"MCMS_HOST": "mcms-stage", "MCMS_TOKEN": "tok-8f3a"})
    assert env.name == "Stage"
    assert env.kind == "remote"
    assert not env.is_lab
    assert env.source == path
    assert env.service.base_url == "https://mcms-stage.corp.example"
    assert env.notify.webhook_url == "https://hooks.example/webhookb2/tok-8f3a/IncomingWebhook"
    assert env.secrets == frozenset({"mcms-stage", "tok-8f3a"})
    assert env.unset == {}
    assert env.present == frozenset({"service", "notify"})
    assert env.redact(f"POST {env.notify.webhook_url} for {env.service.base_url}") == (
        "POST https://hooks.example/webhookb2/***/IncomingWebhook for https://***.corp.example"
    )


def test_config_redact_replaces_the_longest_secret_first(tmp_path: Path) -> None:
    path = write_env(
        tmp_path, 'name = "Stage"\n[service]\nca_file = "${SHORT}"\n[paths]\ntimeline_dir = "${LONG}"\n'
    )
    env = load_environment(path, environ={"SHORT": "pass", "LONG": "pass-word-42"})
    assert env.secrets == frozenset({"pass", "pass-word-42"})
    # Shortest first would leave "***-word-42" behind.
    assert env.redact("a=pass-word-42 b=pass c=none") == "a=*** b=*** c=none"


def test_config_empty_var_counts_as_unset_and_is_no_secret(tmp_path: Path) -> None:
    path = write_env(tmp_path, 'name = "Stage"\n[notify]\nwebhook_url = "${MCMS_WEBHOOK_URL}"\n')
    env = load_environment(path, environ={"MCMS_WEBHOOK_URL": ""})
    assert env.unset == {"[notify] webhook_url": "MCMS_WEBHOOK_URL"}
    assert env.secrets == frozenset()
    assert env.notify.webhook_url == ""


def test_config_unset_var_is_an_error_only_for_a_flow_that_uses_its_section(tmp_path: Path) -> None:
    path = write_env(
        tmp_path,
        'name = "Prod"\nkind = "remote"\n'
        '[service]\nbase_url = "https://mcms-prod.corp.example"\n'
        '[notify]\nwebhook_url = "${MCMS_WEBHOOK_URL}"\nformat = "teams"\n',
    )
    env = load_environment(path, environ={})
    assert env.unset == {"[notify] webhook_url": "MCMS_WEBHOOK_URL"}
    assert env.notify.webhook_url == ""
    env.require("matrix", frozenset({"DR-SMOKE"}))  # no error
    with pytest.raises(ConfigError) as info:
        env.require("rollback", frozenset())
    assert info.value.key == "[notify] webhook_url"
    assert str(info.value).splitlines() == [
        f"{path}: [notify] webhook_url: ${{MCMS_WEBHOOK_URL}} is not set in the process environment "
        "(set MCMS_WEBHOOK_URL before the run)",
        f"{path}: [paths]: required for the rollback flow outside the Lab: log_dirs (playbook §3.4) and "
        "timeline_dir (§9) on this machine",
    ]


def test_config_unset_var_in_a_list_item_belongs_to_its_section(tmp_path: Path) -> None:
    env = load_env(
        tmp_path,
        'name = "Stage"\n'
        '[service]\nbase_url = "https://mcms-stage.corp.example"\n'
        '[axe]\npages = ["/", "/${PAGE}"]\n',
    )
    assert env.unset == {"[axe] pages[1]": "PAGE"}
    env.require("matrix", frozenset({"DR-SMOKE"}))
    with pytest.raises(ConfigError) as info:
        env.require("matrix", frozenset({"DR-AXE"}))
    assert info.value.key == "[axe] pages[1]"


def test_config_unset_var_in_the_name_is_an_error_at_load(tmp_path: Path) -> None:
    path = write_env(tmp_path, 'name = "${ENV_NAME}"\n')
    error = config_error(path)
    assert (error.key, error.expected) == (
        "name",
        "${ENV_NAME} is not set in the process environment (set ENV_NAME before the run)",
    )


def test_config_sections_used_by_each_flow(tmp_path: Path) -> None:
    env = load_env(tmp_path, 'name = "Stage"\n')
    base = {"service", "scope", "lab", "paths", "matrix"}
    assert env.sections_used("matrix", frozenset({"DR-SMOKE"})) == base
    assert env.sections_used("matrix", frozenset({"DR-AXE", "DR-ZAP", "DR-E2E"})) == base | {
        "axe",
        "zap",
        "e2e",
        "browser",
    }
    assert env.sections_used("rollback", frozenset()) == base | {"packages", "drivers", "notify"}
    assert env.sections_used("bluegreen", frozenset()) == base | {
        "packages",
        "drivers",
        "notify",
        "slots",
        "monitor",
        "approval",
        "router",
    }


def test_config_remote_needs_a_base_url(tmp_path: Path) -> None:
    env = load_env(tmp_path, 'name = "Stage"\n')
    with pytest.raises(ConfigError) as info:
        env.require("matrix", frozenset({"DR-SMOKE"}))
    assert str(info.value) == (
        f"{env.source}: [service] base_url: required: the public address of the service"
    )


def test_config_lab_must_not_set_base_url(tmp_path: Path) -> None:
    path = write_env(tmp_path, 'name = "Lab"\nkind = "lab"\n[service]\nbase_url = "http://127.0.0.1:8080"\n')
    error = config_error(path)
    assert error.key == "[service] base_url"
    assert error.expected == (
        'must be left out when kind = "lab": the embedded Lab chooses its own addresses'
    )


def test_config_with_lab_endpoints_fills_the_lab_addresses(tmp_path: Path) -> None:
    env = load_env(tmp_path, 'name = "Lab"\nkind = "lab"\n')
    assert env.is_lab
    filled = env.with_lab_endpoints(
        "http://127.0.0.1:5001",
        {"blue": "http://127.0.0.1:5002", "green": "http://127.0.0.1:5003"},
        "http://127.0.0.1:5004/hook",
        tmp_path / "offline",
    )
    assert filled.service.base_url == "http://127.0.0.1:5001"
    assert (filled.slots.blue, filled.slots.green) == ("http://127.0.0.1:5002", "http://127.0.0.1:5003")
    assert filled.notify.webhook_url == "http://127.0.0.1:5004/hook"
    assert filled.packages.dir == str(tmp_path / "offline")
    assert filled.service.health_path == "/health"
    assert env.service.base_url == ""  # the original is unchanged


# The environment-file errors: (snippet, key, expected), one case a line.
# fmt: off
CONFIG_ERRORS = [
    ('[monitor]\ninterval_s = "5"', "[monitor] interval_s", "expected a number, got a string '5'"),
    ("[service]\ntimeout_s = true", "[service] timeout_s", "expected a number, got a boolean True"),
    ("[service]\nretries = true", "[service] retries", "expected a whole number, got a boolean True"),
    ("[service]\nretries = 1.5", "[service] retries", "expected a whole number, got a number 1.5"),
    ('[approval]\nrequired = "yes"', "[approval] required", "expected a boolean (true or false), got a string 'yes'"),
    ("[monitor]\nmax_error_rate = 2", "[monitor] max_error_rate", "expected a number <= 1, got 2.0"),
    ("[monitor]\ninterval_s = 0.01", "[monitor] interval_s", "expected a number >= 0.05, got 0.01"),
    ("[notify]\nretries = -1", "[notify] retries", "expected a number >= 0, got -1"),
    ('[axe]\npages = ["/", 3]', "[axe] pages[1]", "expected a string, got a whole number 3"),
    ('[axe]\npages = "/"', "[axe] pages", "expected a list of strings, got a string"),
    ('[axe]\nfail_on = ["critical", "fatal"]', "[axe] fail_on[1]", "expected one of 'critical', 'serious', 'moderate', 'minor', got 'fatal'"),
    ('[drivers.command]\nstop_site = "Stop-Site.ps1"', "[drivers.command] stop_site", "expected a list of strings, got a string"),
    ('[service]\nurl = "https://x.corp.example"', "[service] url", "unknown key (known: base_url, health_path, swagger_path, kerberos_path, timeout_s, retries, ca_file)"),
    ('service = "https://x.corp.example"', "service", "expected a table [service], got a string"),
    ('kind = "prod"', "kind", 'expected "lab" or "remote", got "prod"'),
    ('[slots]\nblue = "ftp://blue.corp.example"', "[slots] blue", "expected an http(s) URL with a host, got 'ftp://blue.corp.example'"),
]
# fmt: on


@pytest.mark.parametrize(("snippet", "key", "expected"), CONFIG_ERRORS)
def test_config_errors_name_the_key_and_what_was_expected(
    tmp_path: Path, snippet: str, key: str, expected: str
) -> None:
    path = write_env(tmp_path, f'name = "Stage"\n{snippet}\n')
    error = config_error(path)
    assert (error.source, error.key, error.expected) == (str(path), key, expected)
    assert str(error) == f"{path}: {key}: {expected}"


def test_config_missing_name(tmp_path: Path) -> None:
    error = config_error(write_env(tmp_path, 'kind = "remote"\n'))
    assert str(error) == f"{tmp_path / 'Stage.toml'}: name: required: expected a string"


def test_config_bad_url_error_does_not_show_the_secret_in_it(tmp_path: Path) -> None:
    # The scheme is forgotten around a ${VAR}: the error must still not print the token.
    path = write_env(tmp_path, 'name = "Stage"\n[notify]\nwebhook_url = "hooks.example/${MCMS_TOKEN}"\n')
    error = config_error(path, {"MCMS_TOKEN": "tok-8f3a"})
    assert error.key == "[notify] webhook_url"
    assert error.expected == "expected an http(s) URL with a host, got 'hooks.example/***'"
    assert "tok-8f3a" not in str(error)
    whole = write_env(tmp_path, 'name = "Stage"\n[notify]\nwebhook_url = "${MCMS_URL}"\n', "Whole.toml")
    error = config_error(whole, {"MCMS_URL": "hooks.example/tok-8f3a"})
    assert error.expected == "expected an http(s) URL with a host, got ${...}"


def test_config_invalid_toml(tmp_path: Path) -> None:
    error = config_error(write_env(tmp_path, 'name = "Stage\n'))
    assert error.key == ""
    assert error.expected.startswith("not valid TOML: ")
    assert str(error).startswith(f"{tmp_path / 'Stage.toml'}: not valid TOML: ")


def test_config_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    reason = os.strerror(errno.EACCES if sys.platform == "win32" else errno.EISDIR)  # reading a directory
    error = config_error(tmp_path)
    assert error.key == ""
    assert str(error) == f"{tmp_path}: cannot read the environment file ({reason})"


def test_config_reads_nested_tables_and_tables_of_named_tables(tmp_path: Path) -> None:
    path = write_env(
        tmp_path,
        'name = "Stage"\n'
        '[router.nginx]\ninclude = "/etc/nginx/mcms-live.conf"\nreload = ["systemctl", "reload", "nginx"]\n'
        "[monitor]\ninterval_s = 2\n"
        '[monitor.metrics]\nurl = "http://127.0.0.1:9090"\nbearer_token = "${PROM_TOKEN}"\n'
        "[monitor.metrics.queries.queue]\nquery = 'max(mcms_worker_queue_depth{slot=\"{slot}\"})'\nmax = 50\n"
        '[monitor.metrics.queries.pool_up]\nquery = "min(mcms_app_pool_up)"\nmin = 1\nno_data = "pass"\n'
        '[browser]\nargs = ["--no-sandbox"]\n',
    )
    env = load_environment(path, environ={"PROM_TOKEN": "prom-token-1234"})
    assert env.router.nginx.include == "/etc/nginx/mcms-live.conf"
    assert env.router.nginx.reload == ["systemctl", "reload", "nginx"]
    assert env.router.nginx.upstream == "mcms_live"  # the default of a key left out
    assert env.monitor.interval_s == 2.0
    metrics = env.monitor.metrics
    assert metrics.url == "http://127.0.0.1:9090"
    assert metrics.bearer_token == "prom-token-1234"
    assert "prom-token-1234" in env.secrets
    assert set(metrics.queries) == {"queue", "pool_up"}
    assert metrics.queries["queue"].max == 50.0
    assert metrics.queries["pool_up"].min == 1.0
    assert metrics.queries["pool_up"].no_data == "pass"
    assert env.browser.args == ["--no-sandbox"]
    assert {"router", "monitor", "browser"} <= env.present


def test_config_nested_tables_name_their_dotted_key_in_every_problem(tmp_path: Path) -> None:
    path = write_env(
        tmp_path,
        'name = "Stage"\n'
        '[router.nginx]\ninclud = "/etc/nginx/x.conf"\ntimeout_s = 0\n'
        '[monitor.metrics.queries.queue]\nmax = "high"\n'
        '[monitor.metrics.queries.both]\nquery = "up"\nmin = 5\nmax = 1\n'
        '[monitor.metrics.queries.none]\nquery = "up"\n'
        "[monitor.metrics.queries.flat]\n"
        '[lab]\nrouter = "haproxy"\n',
    )
    text = str(config_error(path))
    assert "[router.nginx] includ: unknown key (known: include, nginx," in text
    assert "[router.nginx] timeout_s: expected a number >= 0.1, got 0.0" in text
    assert "[monitor.metrics.queries.queue] max: expected a number, got a string 'high'" in text
    assert "[monitor.metrics.queries.queue] query: required: a PromQL expression" in text
    assert "[monitor.metrics.queries.both]: min (5) is above max (1)" in text
    assert "[monitor.metrics.queries.none]: expected a threshold" in text
    assert "[monitor.metrics] url: required when queries are set" in text
    assert "[lab] router: expected one of 'builtin', 'nginx', got 'haproxy'" in text


def test_config_a_nested_key_that_is_not_a_table_is_named(tmp_path: Path) -> None:
    path = write_env(tmp_path, 'name = "Stage"\n[router]\nnginx = "yes"\n[monitor.metrics]\nqueries = 3\n')
    text = str(config_error(path))
    assert "[router] nginx: expected a table [router.nginx], got a string" in text
    assert (
        "[monitor.metrics] queries: expected tables [monitor.metrics.queries.NAME], got a whole number"
        in text
    )
