"""The parts on their own: redaction, CSRF and sessions, the audit bound, the sampler on a real store, the CLI."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import pytest
from worker_core.admin import NodeInfo
from worker_core.durable.types import DurableTask
from worker_core.errors import ConfigurationError
from worker_redis import RedisDurableBackend
from worker_redis.admin import RedisAdmin
from worker_redis.testing import RedisServer, redis_server

from worker_dashboard import REDACTED, AuditLog, Redactor, Sampler, dashboard_app
from worker_dashboard.__main__ import parse_listen
from worker_dashboard._charts import sparkline
from worker_dashboard._security import Security
from worker_dashboard._views import queue_weights


def test_default_redaction_covers_nested_keys_case_insensitively() -> None:
    r = Redactor()
    data = {"Password": "a", "db": {"client_secret": "b", "list": [{"auth_token": "c"}]}, "Authorization": "d", "n": 1}
    assert r.redact(data) == {
        "Password": REDACTED,
        "db": {"client_secret": REDACTED, "list": [{"auth_token": REDACTED}]},
        "Authorization": REDACTED,
        "n": 1,
    }
    assert r.redact_mapping({"traceparent": "00-x", "x-api-token": "t"}) == {
        "traceparent": "00-x",
        "x-api-token": REDACTED,
    }
    assert Redactor([]).redact({"password": "p"}) == {"password": "p"}
    with pytest.raises(ConfigurationError, match="invalid redaction pattern"):
        Redactor(["("])


def test_redaction_of_absurdly_deep_data_stops() -> None:
    deep: object = "leaf"
    for _ in range(100):
        deep = {"k": deep}
    shown = Redactor().redact(deep)
    for _ in range(33):
        shown = shown["k"]
    assert shown == REDACTED


def test_csrf_tokens_are_signed_and_must_be_repeated() -> None:
    sec = Security(token="t", principal=None, read_only=False, secret=b"k" * 32)
    other = Security(token="t", principal=None, read_only=False, secret=b"j" * 32)
    cookie = sec.new_csrf()
    assert sec.csrf_valid(cookie, cookie)
    assert not sec.csrf_valid(cookie, None)
    assert not sec.csrf_valid(None, cookie)
    assert not sec.csrf_valid(cookie, cookie + "x")
    assert not other.csrf_valid(cookie, cookie)  # issued by another dashboard (secret)
    forged = "nonce.0000"
    assert not sec.csrf_valid(forged, forged)


def test_token_check_and_bounded_sessions() -> None:
    sec = Security(token="s3cret", principal=None, read_only=False, secret=b"k" * 32)
    assert sec.check_token("s3cret")
    assert not sec.check_token("s3cre")
    assert not sec.check_token("")
    first = sec.new_session()
    for _ in range(1000):
        sec.new_session()
    assert sec._session(first) is None  # the oldest was dropped beyond the bound
    with pytest.raises(ValueError, match="empty"):
        Security(token=" ", principal=None, read_only=False, secret=b"k")


def test_audit_log_is_bounded_newest_first(caplog: pytest.LogCaptureFixture) -> None:
    log = AuditLog(3)
    with caplog.at_level("INFO", logger="worker_dashboard.audit"):
        for i in range(5):
            log.record("alice", "replay", f"task {i}", 1, ok=i != 4)
    assert len(log) == 3
    assert [e.target for e in log.entries()] == ["task 4", "task 3", "task 2"]
    assert len(caplog.records) == 5
    assert caplog.records[-1].levelname == "WARNING"


def test_sparkline_scales_into_the_box() -> None:
    s = sparkline([0.0, 5.0, 10.0], width=100, height=20)
    assert s.points == "0.0,19.0 50.0,10.0 100.0,1.0"
    assert sparkline([1.0]).points == ""
    assert sparkline([0.0, 0.0]).points == "0.0,39.0 240.0,39.0"


def test_parse_listen_and_cli_errors() -> None:
    assert parse_listen("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_listen(":8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:8080") == ("::1", 8080)
    run = subprocess.run(
        [sys.executable, "-m", "worker_dashboard"], capture_output=True, text=True, env={}, check=False
    )
    assert (run.returncode, run.stderr) == (2, "error: --url (or WORKER_DURABLE_URL) is required\n")
    run = subprocess.run(
        [sys.executable, "-m", "worker_dashboard", "--url", "nosuch://x"], capture_output=True, text=True, check=False
    )
    assert run.returncode == 2
    assert "nosuch" in run.stderr


def test_dashboard_app_arguments_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="one of them"):
        dashboard_app()
    with pytest.raises(ConfigurationError, match="DurableAdmin"):
        dashboard_app(admin=object())  # type: ignore[arg-type]


@pytest.fixture
async def store(redis_srv: RedisServer) -> AsyncIterator[tuple[RedisAdmin, RedisDurableBackend]]:
    url = f"{redis_srv.url}?prefix=u-{uuid.uuid4().hex[:8]}"
    admin, backend = RedisAdmin.from_url(url), RedisDurableBackend.from_url(url)
    yield admin, backend
    await admin.aclose()
    await backend.aclose()


async def test_sampler_counts_finished_tasks_per_tick_and_keeps_a_bounded_history(
    store: tuple[RedisAdmin, RedisDurableBackend],
) -> None:
    admin, backend = store
    sampler = Sampler(admin, backend, interval=1.0, history=2)
    first = await sampler.tick()
    assert (first.version, first.samples, first.error) == (1, (), "")
    for _ in range(3):
        await backend.enqueue(DurableTask("h", payload=b"{}", id=uuid.uuid4()))
    leases = await backend.dequeue(3, 30.0)
    from worker_core.durable.outcomes import outcome_for
    from worker_core.status import TaskStatus

    await backend.ack_with_outcome(leases[0], outcome_for(leases[0], TaskStatus.COMPLETED, 1, None), 60)
    await backend.ack_with_outcome(leases[1], outcome_for(leases[1], TaskStatus.COMPLETED, 2, None), 60)
    failed = outcome_for(leases[2], TaskStatus.FAILED, None, ValueError("x"))
    await backend.fail_with_outcome(leases[2], "x", failed, 60)
    second = await sampler.tick()
    (sample,) = second.samples
    assert (sample.completed, sample.failed, sample.dead) == (2, 1, 1)
    assert sample.failure_rate == pytest.approx(1 / 3)
    third = await sampler.tick()
    assert (third.samples[-1].completed, third.samples[-1].failed) == (0, 0)  # counted once only
    await sampler.tick()
    assert len(sampler.snapshot.samples) == 2
    await sampler.aclose()


async def test_sampler_publishes_a_failed_read_and_keeps_the_last_good_one() -> None:
    with redis_server() as srv:
        admin = RedisAdmin.from_url(srv.url)
        sampler = Sampler(admin, None, interval=1.0)
        good = await sampler.tick()
        assert good.overview is not None
        srv.kill()  # SIGKILL: the store is gone mid-session
        bad = await sampler.tick()
        await admin.aclose()
    assert bad.version == good.version + 1
    assert bad.overview is good.overview
    assert bad.error.startswith("BackendUnavailableError")


def running(sampler: Sampler) -> bool:
    return sampler.running


async def test_sampler_stops_when_nobody_looks(store: tuple[RedisAdmin, RedisDurableBackend]) -> None:
    admin, _ = store
    sampler = Sampler(admin, None, interval=0.01, idle_stop=0.0)
    sampler.touch()
    assert sampler.running
    snap = await sampler.wait_newer(0, 5.0)
    assert snap.version >= 1
    task = sampler._task
    assert task is not None
    await task  # returns by itself: no viewer, idle
    assert not running(sampler)
    await sampler.aclose()
    sampler.touch()
    assert not running(sampler)  # closed: never restarted


def test_redirect_targets_stay_on_the_site() -> None:
    from worker_dashboard._app import safe_next

    assert safe_next("/tasks/abc") == "/tasks/abc"
    for evil in ("//evil.example", "/\\evil.example", "https://evil.example", "", "evil", "/a\\b"):
        assert safe_next(evil, "/dlq") == "/dlq", evil


def test_queue_weights_are_the_distinct_values_of_the_nodes_that_lease_the_queue() -> None:
    def node(queues: tuple[str, ...], weights: dict[str, int]) -> NodeInfo:
        return NodeInfo(str(uuid.uuid4()), "h", 1, 0, queues, 0, 0, weights)

    nodes = [node((), {"a": 5}), node((), {"b": 2}), node(("b",), {"a": 9}), node((), {})]
    assert queue_weights(nodes, "a") == [1, 5]  # the second node sets only b's weight: it gives a 1
    assert queue_weights(nodes, "b") == [1, 2]  # the first and third lease b without a weight for it
    assert queue_weights([node((), {})], "a") == []  # no node reports weights: the page shows a dash
    assert queue_weights([node(("b",), {"a": 4})], "a") == []  # a node that does not lease a does not count
