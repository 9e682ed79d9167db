"""Plugin discovery: one pluggy manager per :class:`~worker_core.TaskManager`, behind a typed facade.

Built-in plugins come from :data:`DEFAULT_PLUGINS`; installed ones from the ``worker.plugins``
entry-point group. ``WORKER_PLUGINS_AUTOLOAD=0`` skips the entry points, and
``WORKER_DISABLED_PLUGINS=a,b`` blocks the named ones. Nothing outside this module touches ``pm.hook``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
from collections.abc import Iterable
from types import ModuleType
from typing import Any, final

import pluggy

from . import hookspecs
from .errors import PluginError
from .registry import Registry

__all__ = ("DEFAULT_PLUGINS", "ENTRY_POINT_GROUP", "Plugins")

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "worker.plugins"
#: Built-in plugin modules, registered first; a module that is not there (optional part) is skipped.
DEFAULT_PLUGINS: tuple[str, ...] = ("worker_core.durable._plugin",)


def _env_autoload() -> bool:
    return os.environ.get("WORKER_PLUGINS_AUTOLOAD", "1").strip().lower() not in ("0", "false", "no", "off")


def _env_disabled() -> list[str]:
    raw = os.environ.get("WORKER_DISABLED_PLUGINS", "")
    return [name.strip() for name in raw.split(",") if name.strip()]


@final
class Plugins:
    """The plugins of one manager and the registries they fill.

    Args:
        autoload: Load ``worker.plugins`` entry points; ``None`` reads ``WORKER_PLUGINS_AUTOLOAD``.
        disabled: Plugin names to block; ``None`` reads ``WORKER_DISABLED_PLUGINS``.
        builtins: Built-in plugin modules to register (defaults to :data:`DEFAULT_PLUGINS`).
        extra_specs: Modules or classes with a host application's own hookspecs (marked with
            :data:`~worker_core.hookspecs.hookspec`), added before any plugin is registered and checked, so
            plugins may implement them (workerctl: ``workerctl_register_commands(app)``); call them with
            :meth:`call`.

    Raises:
        PluginError: a plugin failed to import or implements a hook that does not exist, or an extra spec
            module declares no hookspec.
    """

    def __init__(
        self,
        *,
        autoload: bool | None = None,
        disabled: Iterable[str] | None = None,
        builtins: Iterable[str] = DEFAULT_PLUGINS,
        extra_specs: Iterable[ModuleType | type] = (),
    ) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        for specs in extra_specs:
            try:
                self._pm.add_hookspecs(specs)
            except ValueError as exc:  # no hookspec in it (or not marked with the worker project's marker)
                raise PluginError(f"extra_specs: {exc}") from exc
        blocked = list(_env_disabled() if disabled is None else disabled)
        for name in blocked:
            self._pm.set_blocked(name)
        for module_name in builtins:
            short = module_name.rsplit(".", 1)[-1].lstrip("_")
            if module_name in blocked or short in blocked:
                continue
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name == module_name:
                    continue  # optional built-in that is not part of this install
                raise PluginError(f"built-in plugin {module_name} failed to import: {exc}") from exc
            self._pm.register(module, name=module_name)
        #: Entry-point plugins that failed to import, by name, with the error (they are skipped).
        self.broken: dict[str, str] = {}
        if _env_autoload() if autoload is None else autoload:
            self._load_entry_points()
        try:
            self._pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(str(exc)) from exc
        self._registries: dict[str, Registry[Any]] = {}

    def _load_entry_points(self) -> None:
        """Pluggy's ``load_setuptools_entrypoints``, one plugin at a time: a broken one is logged and skipped.

        A plugin that cannot be imported must not take down managers that never use it; its name and error
        are kept in :attr:`broken` and appear in the error of a registry lookup that finds nothing.
        """
        seen: set[str] = set()
        for dist in importlib.metadata.distributions():
            for ep in dist.entry_points:
                if ep.group != ENTRY_POINT_GROUP or ep.name in seen:
                    continue
                seen.add(ep.name)
                if self._pm.get_plugin(ep.name) is not None or self._pm.is_blocked(ep.name):
                    continue
                try:
                    plugin = ep.load()
                except Exception as exc:
                    self.broken[ep.name] = f"{type(exc).__name__}: {exc}"
                    logger.exception("worker plugin %r (%s) failed to load; skipped", ep.name, ep.value)
                    continue
                try:
                    self._pm.register(plugin, name=ep.name)
                except ValueError as exc:
                    raise PluginError(f"plugin {ep.name!r}: {exc}") from exc

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register a plugin object (a module or an instance with ``@hookimpl`` methods).

        Registries already built are rebuilt on next use.

        Raises:
            PluginError: the plugin is invalid or its name is taken.
        """
        try:
            self._pm.register(plugin, name=name)
            self._pm.check_pending()
        except (ValueError, pluggy.PluginValidationError) as exc:
            raise PluginError(str(exc)) from exc
        self._registries.clear()

    def names(self) -> list[str]:
        """Names of the registered plugins, sorted."""
        return sorted(name for name, plugin in self._pm.list_name_plugin() if plugin is not None)

    def _registry(self, kind: str, hook_name: str) -> Registry[Any]:
        registry = self._registries.get(kind)
        if registry is None:
            registry = Registry[Any](kind)
            if self.broken:
                registry.hint = "plugins that failed to load: " + "; ".join(
                    f"{name} ({error})" for name, error in sorted(self.broken.items())
                )
            getattr(self._pm.hook, hook_name)(registry=registry)
            self._registries[kind] = registry
        return registry

    def backends(self) -> Registry[Any]:
        """Durable backend factories by URL scheme."""
        return self._registry("backend", "worker_register_backends")

    def admins(self) -> Registry[Any]:
        """Durable admin factories by URL scheme (:func:`worker_core.admin.open_admin`)."""
        return self._registry("admin", "worker_register_admins")

    def codecs(self) -> Registry[Any]:
        """Durable codec factories by name."""
        return self._registry("codec", "worker_register_codecs")

    def middleware(self) -> Registry[Any]:
        """Middleware factories by name."""
        return self._registry("middleware", "worker_register_middleware")

    def tracers(self) -> Registry[Any]:
        """Tracer factories by name."""
        return self._registry("tracer", "worker_register_tracers")

    def instrumentation(self) -> Registry[Any]:
        """Instrumentation binders by name (``factory(manager, **options)``; worker-otel's ``"otel"``)."""
        return self._registry("instrumentation", "worker_register_instrumentation")

    def authenticators(self) -> Registry[Any]:
        """Authenticator factories by name (used by worker-grpc)."""
        return self._registry("authenticator", "worker_register_authenticators")

    def call(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call every implementation of a host hook added with ``extra_specs``; their non-``None`` results.

        Raises:
            PluginError: no spec named ``hook_name``.
        """
        spec = getattr(self._pm.hook, hook_name, None)
        if spec is None or not isinstance(spec, pluggy.HookCaller) or spec.spec is None:
            raise PluginError(f"no hookspec named {hook_name!r}")
        results: list[Any] = spec(**kwargs)
        return results

    @property
    def manager(self) -> pluggy.PluginManager:
        """The underlying pluggy manager (for hosts that add their own hookspecs, like workerctl)."""
        return self._pm
