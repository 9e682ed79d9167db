"""The real dashboard (``python -m worker_dashboard``) in headless Chromium, against redis-server and a worker."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from conftest import TOKEN, Stack, start_dashboard
from dash_tasks import QUEUE_WEIGHTS, Job, other, release, work
from playwright.sync_api import Page, expect

from worker_dashboard._actions import ACTIONS

NO_VALUE = "\N{EN DASH}"  # what a page shows for a missing value


def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy (a condition on the store, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def api(stack: Stack, path: str) -> Any:
    status, body = stack.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status in (200, 404), (status, body)
    return body if status == 200 else None


def outcome_status(stack: Stack, task_id: str) -> str:
    body = api(stack, f"/api/tasks/{task_id}")
    return str(body["outcome"]["status"]) if body and body["outcome"] else ""


def completed(stack: Stack, task_id: str) -> bool:
    return outcome_status(stack, task_id) == "completed"


def task_status(stack: Stack, task_id: str) -> str:
    body = api(stack, f"/api/tasks/{task_id}")
    return str(body["task"]["status"]) if body and body["task"] else ""


def login(page: Page, stack: Stack) -> None:
    page.goto(stack.base + "/login")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    expect(page.locator("#principal")).to_have_text("token")


def shot(page: Page, screens: Path, name: str) -> None:
    page.screenshot(path=str(screens / f"{name}.png"), full_page=True)


def test_failed_task_shows_traceback_in_dlq_is_replayed_and_completes(
    dashboard: Stack, browser: Callable[[], Any], screens: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "fail"
    marker.touch()
    dashboard.start_worker()
    (task_id,) = dashboard.enqueue(work, Job(7, fail_while=str(marker), password="hunter2"))
    wait_for(lambda: task_status(dashboard, task_id) == "dead", what="the task to be dead-lettered")

    page = browser().new_page()
    login(page, dashboard)
    page.goto(dashboard.base + "/dlq")
    row = page.locator(f"#dlq-table tr[data-id='{task_id}']")
    expect(row).to_contain_text("PaymentDeclined: card declined for order 7")
    expect(page.locator("#dead-badge")).to_have_text("1")  # the nav badge arrives over SSE
    shot(page, screens, "dlq")

    row.locator("a").click()
    expect(page.locator("#task-state")).to_contain_text("dead")
    traceback = page.locator("#traceback")
    expect(traceback).to_contain_text("Traceback (most recent call last)")
    expect(traceback).to_contain_text("in charge")
    expect(traceback).to_contain_text("PaymentDeclined: card declined for order 7")
    expect(page.locator("#payload")).to_contain_text('"password": "[redacted]"')
    assert "hunter2" not in page.content()
    shot(page, screens, "task-dead")

    marker.unlink()
    page.click("button[data-action$='/replay']")
    expect(page.locator("#flash")).to_have_text(f"replayed task {task_id}")
    wait_for(lambda: outcome_status(dashboard, task_id) == "completed", what="the replayed task to complete")
    page.reload()
    expect(page.locator("#outcome-status")).to_have_text("completed")
    expect(page.locator("#result")).to_contain_text('"n": 7')
    shot(page, screens, "task-completed")

    page.goto(dashboard.base + "/audit")
    expect(page.locator("#audit-table")).to_contain_text(f"task {task_id}")
    shot(page, screens, "audit")


def test_replay_by_filter_states_the_count_and_purge_empties_the_dlq(
    dashboard: Stack, browser: Callable[[], Any], screens: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "fail"
    marker.touch()
    dashboard.start_worker()
    ids = dashboard.enqueue(work, *(Job(i, fail_while=str(marker)) for i in range(3)))
    dashboard.enqueue(other, Job(99, fail_while=str(marker)))  # "other" never fails
    wait_for(lambda: all(task_status(dashboard, i) == "dead" for i in ids), what="three dead tasks")

    page = browser().new_page()
    login(page, dashboard)
    page.goto(dashboard.base + "/dlq?handler=work")
    page.click("button[data-action='/dlq/replay']")
    expect(page.locator("#confirm-count")).to_have_text("3")
    expect(page.locator("#confirm-text")).to_contain_text("handler=work")
    shot(page, screens, "confirm-replay")
    marker.unlink()
    page.click("#confirm")
    expect(page.locator("#flash")).to_have_text("replayed 3 tasks")
    for task_id in ids:
        wait_for(partial(completed, dashboard, task_id), what=f"{task_id} to complete")

    marker.touch()
    dead = dashboard.enqueue(work, Job(5, fail_while=str(marker)))
    wait_for(lambda: task_status(dashboard, dead[0]) == "dead", what="a dead task")
    page.goto(dashboard.base + "/dlq")
    page.click("button[data-action='/dlq/purge']")
    expect(page.locator("#confirm-count")).to_have_text("1")
    page.click("#confirm")
    expect(page.locator("#flash")).to_have_text("purged 1 tasks")
    assert api(dashboard, "/api/dlq")["total"] == 0


def test_pause_from_the_page_stops_leasing_until_resumed(
    dashboard: Stack, browser: Callable[[], Any], screens: Path
) -> None:
    dashboard.start_worker()
    first = dashboard.enqueue(work, Job(1)) + dashboard.enqueue(other, Job(2))  # both queues exist
    for task_id in first:
        wait_for(partial(completed, dashboard, task_id), what="warm-up tasks")

    page = browser().new_page()
    login(page, dashboard)
    page.goto(dashboard.base + "/queues")
    page.locator("tr[data-queue='alpha'] button", has_text="Pause").click()
    expect(page.locator("#flash")).to_have_text("paused queue alpha")
    expect(page.locator("tr[data-queue='alpha'] td[data-col=paused]")).to_have_text("yes")

    (held,) = dashboard.enqueue(work, Job(3))
    (sentinel,) = dashboard.enqueue(other, Job(4))  # enqueued after: its completion proves a dequeue ran since
    wait_for(lambda: outcome_status(dashboard, sentinel) == "completed", what="the other queue's task")
    assert task_status(dashboard, held) == "ready"
    assert outcome_status(dashboard, held) == ""

    page.locator("tr[data-queue='alpha'] button", has_text="Resume").click()
    expect(page.locator("tr[data-queue='alpha'] td[data-col=paused]")).to_have_text("no")
    wait_for(lambda: outcome_status(dashboard, held) == "completed", what="the held task after resume")
    page.goto(dashboard.base + "/")
    expect(page.locator("#node-count")).to_have_text("1")
    shot(page, screens, "overview-with-worker")


def test_live_page_updates_without_reload_and_stops_streaming_while_hidden(
    dashboard: Stack, browser: Callable[[], Any], screens: Path
) -> None:
    page = browser().new_page()
    console_errors: list[str] = []  # a script blocked by the page's CSP, or failing, shows here
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
    login(page, dashboard)
    page.goto(dashboard.base + "/")
    expect(page.locator("#live")).to_have_attribute("data-live", "on")
    page.evaluate("window.__noReload = 42")
    dashboard.enqueue(work, Job(1), Job(2), Job(3))  # no worker: they stay ready
    expect(page.locator("tr[data-queue='alpha'] td[data-col=due]")).to_have_text("3")
    expect(page.locator("#total-ready")).to_have_text("3")
    assert page.evaluate("window.__noReload") == 42
    shot(page, screens, "overview")

    def viewers() -> int:
        body = dashboard.get("/healthz")[1]
        assert isinstance(body, dict)
        return int(body["viewers"])

    wait_for(lambda: viewers() == 1, what="one open stream")
    page.evaluate(
        """() => { Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true});
                   document.dispatchEvent(new Event('visibilitychange')); }"""
    )
    wait_for(lambda: viewers() == 0, what="the hidden tab to close its stream")
    dashboard.enqueue(work, Job(4))
    page.evaluate(
        """() => { Object.defineProperty(document, 'visibilityState', {value: 'visible', configurable: true});
                   document.dispatchEvent(new Event('visibilitychange')); }"""
    )
    wait_for(lambda: viewers() == 1, what="the visible tab to reopen its stream")
    expect(page.locator("#total-ready")).to_have_text("4")
    assert page.evaluate("window.__noReload") == 42
    assert console_errors == []


def test_workers_page_lists_the_live_node(dashboard: Stack, browser: Callable[[], Any], screens: Path) -> None:
    dashboard.start_worker()
    page = browser().new_page()
    login(page, dashboard)
    page.goto(dashboard.base + "/workers")
    expect(page.locator("#worker-table tr[data-node]")).to_have_count(1)  # arrives live once it heartbeats
    shot(page, screens, "workers")
    for name in ("queues", "tasks", "schedules"):
        page.goto(f"{dashboard.base}/{name}")
        shot(page, screens, name)
    expect(page.locator("#schedule-table")).to_contain_text("No schedule.")  # RedisAdmin has them; none published
    page.goto(dashboard.base + "/tasks?state=completed")
    shot(page, screens, "tasks-completed")


def test_a_leased_task_links_the_node_holding_it_and_queues_show_its_weights(
    dashboard: Stack, browser: Callable[[], Any], screens: Path, tmp_path: Path
) -> None:
    hold = tmp_path / "hold"
    os.mkfifo(hold)
    dashboard.start_worker()
    (quick,) = dashboard.enqueue(other, Job(1))  # queue beta exists, and has no weight of its own
    (task_id,) = dashboard.enqueue(work, Job(2, hold_until=str(hold)))
    try:
        check_leased_task_and_weights(dashboard, browser, screens, task_id, quick)
        wait_for(lambda: release(str(hold)), what="the task to wait on its FIFO")
    finally:
        release(str(hold))  # a failed check still lets the worker stop
    wait_for(partial(completed, dashboard, task_id), what="the held task to complete")
    page = browser().new_page()
    login(page, dashboard)
    page.goto(f"{dashboard.base}/tasks/{task_id}")
    expect(page.locator("#leased-by")).to_have_text(NO_VALUE)  # finished: no node holds it


def check_leased_task_and_weights(
    dashboard: Stack, browser: Callable[[], Any], screens: Path, task_id: str, quick: str
) -> None:
    wait_for(lambda: task_status(dashboard, task_id) == "processing", what="the task to be leased")
    wait_for(partial(completed, dashboard, quick), what="the beta task")
    (node,) = wait_for(lambda: api(dashboard, "/api/workers")["nodes"], what="the node's heartbeat")
    assert node["weights"] == QUEUE_WEIGHTS
    assert api(dashboard, f"/api/tasks/{task_id}")["task"]["leased_by"] == node["id"]
    listed = {q["name"]: q["weights"] for q in api(dashboard, "/api/queues")["queues"]}
    assert (listed["alpha"], listed["beta"]) == ([3], [1])

    page = browser().new_page()
    login(page, dashboard)
    page.goto(f"{dashboard.base}/tasks/{task_id}")
    expect(page.locator("#task-state")).to_have_text("processing")
    link = page.locator("#leased-by a")
    expect(link).to_have_text(node["id"])
    shot(page, screens, "task-leased")
    link.click()
    expect(page).to_have_url(f"{dashboard.base}/workers#node-{node['id']}")
    expect(page.locator(f"#node-{node['id']} td[data-col=weights]")).to_have_text("alpha=3")

    page.goto(dashboard.base + "/queues")
    expect(page.locator("tr[data-queue='alpha'] td[data-col=weight]")).to_have_text("3")
    expect(page.locator("tr[data-queue='beta'] td[data-col=weight]")).to_have_text("1")
    shot(page, screens, "queues-weights")


def _post_buttons(page: Page) -> int:
    return int(page.locator("form[method=post] button[data-action]").count())


def test_read_only_session_has_no_working_action(stack: Stack, browser: Callable[[], Any], screens: Path) -> None:
    start_dashboard(stack, "--token", TOKEN, "--read-only")
    (task_id,) = stack.enqueue(work, Job(1))
    page = browser().new_page()
    login(page, stack)
    expect(page.locator("#read-only")).to_be_visible()
    for path in ("/", "/queues", "/dlq", f"/tasks/{task_id}", "/schedules"):
        page.goto(stack.base + path)
        assert _post_buttons(page) == 0, path
    shot(page, screens, "read-only")
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "wd_csrf")
    for path, _handler in ACTIONS:  # every action, as a signed-in browser with a valid CSRF token and as a script
        url = path.replace("{name}", "alpha").replace("{task_id}", task_id)
        assert page.request.post(stack.base + url, form={"_csrf": csrf, "expected": "0"}).status == 403, url
        status, body = stack.post("/api" + url, headers={"Authorization": f"Bearer {TOKEN}"})
        assert (status, body["error"]) == (403, "this dashboard is read-only"), url
    assert api(stack, "/api/queues")["paused"] is False


def test_without_a_token_the_dashboard_is_anonymous_and_read_only(stack: Stack, browser: Callable[[], Any]) -> None:
    start_dashboard(stack)
    stack.enqueue(work, Job(1))
    page = browser().new_page()
    page.goto(stack.base + "/queues")
    expect(page.locator("tr[data-queue='alpha']")).to_be_visible()
    assert _post_buttons(page) == 0
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "wd_csrf")
    assert page.request.post(stack.base + "/queues/alpha/pause", form={"_csrf": csrf}).status == 403
    assert stack.post("/api/pause")[0] == 403


def test_posts_without_a_valid_csrf_token_fail(dashboard: Stack, browser: Callable[[], Any]) -> None:
    dashboard.enqueue(work, Job(1))
    page = browser().new_page()
    login(page, dashboard)
    page.goto(dashboard.base + "/queues")
    url = dashboard.base + "/queues/alpha/pause"
    assert page.request.post(url, form={}).status == 403  # the session cookie alone is not enough
    assert page.request.post(url, form={"_csrf": "forged.0123"}).status == 403
    assert page.request.post(url, headers={"X-CSRF-Token": "x"}).status == 403
    assert api(dashboard, "/api/queues")["paused_queues"] == []
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "wd_csrf")
    ok = page.request.post(url, form={"_csrf": csrf}, max_redirects=0)
    assert ok.status == 303
    assert api(dashboard, "/api/queues")["paused_queues"] == ["alpha"]
    assert dashboard.post("/queues/alpha/resume")[0] == 401  # no session, no token: not even asked for CSRF
    page.goto(dashboard.base + "/audit")
    expect(page.locator("#audit-table")).to_contain_text("bad CSRF token")
