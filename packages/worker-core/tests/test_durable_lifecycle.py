"""The manager opens a durable backend at start and closes the one it built from a URL at stop."""

from __future__ import annotations

from typing import Any

import pytest
from worker_core import ConfigurationError, Plugins, TaskManager
from worker_core.durable import DurableHandlerSpec
from worker_core.hookspecs import hookimpl
from worker_core.testing import ForwardingBackend, InMemoryDurableBackend


class ConnectingBackend(ForwardingBackend[InMemoryDurableBackend]):
    """The memory backend plus the optional ``connect``/``aclose`` that a networked backend has."""

    def __init__(self, url: str) -> None:
        super().__init__(InMemoryDurableBackend())
        self.url = url
        self.connected = 0
        self.closed = 0

    async def connect(self) -> None:
        if "bad-password" in self.url:
            raise ConfigurationError("authentication failed")
        self.connected += 1

    async def aclose(self) -> None:
        self.closed += 1


class Plugin:
    def __init__(self) -> None:
        self.made: list[ConnectingBackend] = []

    @hookimpl
    def worker_register_backends(self, registry: Any) -> None:
        def make(url: str) -> ConnectingBackend:
            backend = ConnectingBackend(url)
            self.made.append(backend)
            return backend

        registry.add("conn", make)


def plugins_with(plugin: Plugin) -> Plugins:
    plugins = Plugins(autoload=False)
    plugins.register(plugin, name="conn-test")
    return plugins


HANDLERS: dict[str, DurableHandlerSpec[Any]] = {"noop": DurableHandlerSpec(None, lambda ctx, payload: None)}


async def test_a_backend_built_from_a_url_is_connected_at_start_and_closed_at_stop() -> None:
    plugin = Plugin()
    tm = TaskManager(
        max_workers=1, durable_backend="conn://ok", durable_handlers=HANDLERS, plugins=plugins_with(plugin)
    )
    await tm.start()
    (backend,) = plugin.made
    assert (backend.connected, backend.closed) == (1, 0)
    await tm.stop_graceful()
    assert backend.closed == 1


async def test_a_backend_object_passed_in_is_connected_but_left_open() -> None:
    backend = ConnectingBackend("conn://ok")
    async with TaskManager(max_workers=1, durable_backend=backend, durable_handlers=HANDLERS):
        assert backend.connected == 1
    assert backend.closed == 0  # the caller owns it


async def test_bad_credentials_fail_start_with_the_typed_error_and_nothing_runs() -> None:
    plugin = Plugin()
    tm = TaskManager(
        max_workers=1, durable_backend="conn://bad-password", durable_handlers=HANDLERS, plugins=plugins_with(plugin)
    )
    with pytest.raises(ConfigurationError, match="authentication failed"):
        await tm.start()
    assert tm.metrics().running == 0
    await tm.stop_now()
    assert plugin.made[0].closed == 1
