"""The ``worker.plugins`` entry point, the public API, and the documented headers of the Lua scripts."""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import pytest
import worker_redis
from worker_core import DurableHandlerSpec, Plugins, TaskManager
from worker_redis import RedisDurableBackend
from worker_redis.scripts import BACKEND_SCRIPTS, script_source


@pytest.mark.parametrize("scheme", ["redis", "rediss"])
def test_entry_point_registers_both_schemes(scheme: str) -> None:
    factory = Plugins(autoload=True).backends().get(scheme)
    backend = factory(f"{scheme}://127.0.0.1:6379/0?prefix=ep")
    assert isinstance(backend, RedisDurableBackend)
    assert backend.keys.prefix == "{ep}"


def test_task_manager_resolves_a_redis_url() -> None:
    handlers: dict[str, DurableHandlerSpec[Any]] = {"noop": DurableHandlerSpec(None, lambda ctx, payload: None)}
    url = "redis://127.0.0.1:6379/0?prefix=tm&batch_size=20"
    manager = TaskManager(durable_backend=url, durable_handlers=handlers, durable_codec="json")
    backend = manager.durable_backend()
    assert isinstance(backend, RedisDurableBackend)
    assert backend.keys.ready("q") == "{tm}:ready:q"


def test_public_names() -> None:
    assert isinstance(worker_redis.__all__, tuple)
    for name in worker_redis.__all__:
        assert getattr(worker_redis, name) is not None
    assert (resources.files("worker_redis") / "py.typed").is_file()


@pytest.mark.parametrize("name", BACKEND_SCRIPTS)
def test_every_script_documents_its_keys_args_and_touched_keys(name: str) -> None:
    source = script_source(name)
    header = "\n".join(line for line in source.splitlines() if line.startswith("--"))
    assert header.startswith(f"-- {name}.lua: ")
    assert "-- Touches:" in header
    assert "-- Returns" in header
    used_keys = {int(n) for n in re.findall(r"KEYS\[(\d+)\]", source.replace(header, ""))}
    used_args = {int(n) for n in re.findall(r"ARGV\[(\d+)\]", source.replace(header, ""))}
    for n in used_keys:
        assert f"KEYS[{n}]" in header, f"KEYS[{n}] is not documented"
    for n in used_args:
        assert re.search(rf"ARGV\[{n}(\.\.)?\]", header), f"ARGV[{n}] is not documented"
