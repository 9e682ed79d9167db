"""``--url``: every durable command reaches its store through the admin protocol of the URL's scheme."""

from __future__ import annotations

import json

from click.testing import CliRunner
from ctl_helpers import Ctl

from workerctl import cli

NO_ENV: dict[str, str | None] = {"WORKER_REDIS_URL": None, "WORKER_REDIS_PREFIX": None, "WORKER_DURABLE_URL": None}


def run(*args: str, env: dict[str, str | None] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env={**NO_ENV, **(env or {})})
    return result.exit_code, result.stdout, result.stderr


def test_url_with_a_redis_scheme_reads_the_same_store_as_redis_url(ctl: Ctl) -> None:
    task_id = ctl.put(queue="emails")
    code, out, err = run("durable", "stats", "--json", "--url", f"{ctl.url}?prefix={ctl.prefix}")
    assert code == 0, err
    queues = {q["name"]: q for q in json.loads(out)["queues"]}
    assert queues["emails"]["ready"] == 1
    code, out, err = run(
        "durable", "get", "--id", task_id, "--json", env={"WORKER_DURABLE_URL": f"{ctl.url}?prefix={ctl.prefix}"}
    )
    assert code == 0, err
    assert json.loads(out)["id"] == task_id


def test_a_scheme_no_installed_package_serves_is_one_clear_line() -> None:
    code, out, err = run("durable", "stats", "--url", "nosuch:///tasks.db")
    assert code == 1
    assert out == ""
    assert err.startswith("Error: unknown admin 'nosuch'; installed: ")
    assert "redis" in err
    assert err.count("\n") == 1


def test_url_and_a_redis_flag_together_are_a_usage_error(ctl: Ctl) -> None:
    code, _, err = run("durable", "stats", "--url", ctl.url, "--redis-url", ctl.url)
    assert code == 2
    assert "use only one of --url, --redis-url or --redis-addr" in err


def test_a_url_without_a_scheme_is_a_usage_error() -> None:
    code, _, err = run("durable", "stats", "--url", "tasks.db")
    assert code == 2
    assert "is not a URL (no scheme)" in err


def test_redis_only_commands_refuse_another_store() -> None:
    code, out, err = run("durable", "dump", "--url", "nosuch:///tasks.db")
    assert code == 1
    assert out == ""
    assert "works on Redis only, not on nosuch:// stores" in err
