from __future__ import annotations

import importlib
import importlib.metadata
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from worker_core import ConfigurationError, PluginError, Plugins, Registry, TaskManager, hookimpl
from worker_core.hookspecs import hookspec

PLUGIN_SOURCE = """
from worker_core import hookimpl


def make_backend(url):
    return ("tiny-backend", url)


@hookimpl
def worker_register_backends(registry):
    registry.add("tiny", make_backend, owner="tinyplugin")


@hookimpl
def worker_register_codecs(registry):
    registry.add("tiny-codec", lambda: "codec")
"""


@pytest.fixture
def tiny_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real installed distribution on sys.path: a module plus a dist-info with a worker.plugins entry point."""
    module = f"tinyplugin_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(PLUGIN_SOURCE)
    dist_info = tmp_path / "tinyplugin-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyplugin\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(f"[worker.plugins]\ntiny = {module}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield module
    sys.modules.pop(module, None)


def others() -> list[str]:
    """Entry points of the workspace's other packages: blocked, so that only the test distribution loads."""
    return [
        ep.name for ep in importlib.metadata.entry_points(group="worker.plugins") if ep.name not in ("tiny", "broken")
    ]


def test_entry_point_plugin_is_loaded_and_fills_the_registries(
    tiny_distribution: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WORKER_PLUGINS_AUTOLOAD", raising=False)
    monkeypatch.setenv("WORKER_DISABLED_PLUGINS", ",".join(others()))
    plugins = Plugins()
    assert "tiny" in plugins.names()
    factory = plugins.backends().get("tiny")
    assert factory("tiny://x") == ("tiny-backend", "tiny://x")
    assert "tiny-codec" in plugins.codecs()
    with pytest.raises(ConfigurationError, match=r"installed: .*tiny"):
        plugins.backends().get("nope")


def test_autoload_switch_and_block_list(tiny_distribution: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_PLUGINS_AUTOLOAD", "0")
    assert "tiny" not in Plugins().backends()
    monkeypatch.setenv("WORKER_PLUGINS_AUTOLOAD", "1")
    monkeypatch.setenv("WORKER_DISABLED_PLUGINS", ",".join([*others(), "tiny"]))
    assert "tiny" not in Plugins().backends()
    assert "tiny" in Plugins(disabled=others()).backends()


class LocalPlugin:
    @hookimpl
    def worker_register_tracers(self, registry: Registry[object]) -> None:
        registry.add("local", object)


class TypoPlugin:
    @hookimpl
    def worker_register_backendz(self, registry: Registry[object]) -> None:
        raise AssertionError("never called")


def test_direct_registration_and_unknown_hooks_are_rejected() -> None:
    plugins = Plugins(autoload=False)
    assert "local" not in plugins.tracers()
    plugins.register(LocalPlugin(), name="local")
    assert plugins.tracers().names() == ["local"]
    assert len(plugins.middleware()) == 0
    assert len(plugins.authenticators()) == 0
    with pytest.raises(PluginError):
        plugins.register(TypoPlugin(), name="typo")
    with pytest.raises(PluginError):
        plugins.register(LocalPlugin(), name="local")


def test_registry_rejects_duplicates_and_empty_names() -> None:
    registry: Registry[int] = Registry("thing")
    registry.add("One", lambda: 1)
    assert "one" in registry
    assert registry.get(" ONE ")() == 1
    with pytest.raises(PluginError, match="twice"):
        registry.add("one", lambda: 2)
    with pytest.raises(PluginError):
        registry.add("  ", lambda: 3)


def test_plugin_module_source_is_valid() -> None:
    compile(textwrap.dedent(PLUGIN_SOURCE), "tinyplugin", "exec")


def test_a_plugin_that_fails_to_import_is_skipped_and_named_in_lookup_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    dist_info = tmp_path / "brokenplugin-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplugin\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text("[worker.plugins]\nbroken = no_such_module_for_worker_tests\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    monkeypatch.setenv("WORKER_DISABLED_PLUGINS", ",".join(n for n in others() if n != "broken"))
    plugins = Plugins()
    assert "broken" in plugins.broken
    assert "ModuleNotFoundError" in plugins.broken["broken"]
    assert any("failed to load" in r.getMessage() for r in caplog.records)
    with pytest.raises(ConfigurationError, match=r"failed to load: broken"):
        plugins.backends().get("nope")


class MetricsPlugin:
    def __init__(self) -> None:
        self.bound: list[tuple[object, dict[str, object]]] = []

    @hookimpl
    def worker_register_instrumentation(self, registry: Registry[object]) -> None:
        def bind(manager: TaskManager, *, label: str = "") -> None:
            self.bound.append((manager, {"label": label}))

        registry.add("counting", bind)


def test_plugins_register_instrumentation_that_a_manager_binds_by_name() -> None:
    plugins = Plugins(autoload=False)
    assert "counting" not in plugins.instrumentation()
    plugin = MetricsPlugin()
    plugins.register(plugin, name="counting")
    assert plugins.instrumentation().names() == ["counting"]
    tm = TaskManager(plugins=plugins)
    tm.use_plugin_instrumentation("counting", label="x")
    assert plugin.bound == [(tm, {"label": "x"})]
    with pytest.raises(ConfigurationError, match=r"unknown instrumentation 'nope'; installed: counting"):
        tm.use_plugin_instrumentation("nope")
    with pytest.raises(ConfigurationError, match="counting"):
        tm.use_plugin_instrumentation("counting", colour="red")  # the binder rejects the option
    assert len(plugin.bound) == 1


class HostSpecs:
    @hookspec
    def host_register_commands(self, app: list[str]) -> None:
        """A host application's own hook (workerctl: ``workerctl_register_commands(app)``)."""


class CommandPlugin:
    @hookimpl
    def host_register_commands(self, app: list[str]) -> str:
        app.append("hello")
        return "registered"


def test_a_host_adds_its_own_hookspecs_that_plugins_implement() -> None:
    plugins = Plugins(autoload=False, extra_specs=[HostSpecs])
    plugins.register(CommandPlugin(), name="commands")
    app: list[str] = []
    assert plugins.call("host_register_commands", app=app) == ["registered"]
    assert app == ["hello"]
    with pytest.raises(PluginError, match="no hookspec"):
        plugins.call("host_register_nothing")
    with pytest.raises(PluginError):  # without the host's specs the implementation is an unknown hook
        Plugins(autoload=False).register(CommandPlugin(), name="commands")
    with pytest.raises(PluginError, match="extra_specs"):
        Plugins(autoload=False, extra_specs=[CommandPlugin])  # no hookspec in it
