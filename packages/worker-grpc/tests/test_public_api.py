from __future__ import annotations

import importlib

import pytest
import worker_grpc
from worker_core.registry import Registry
from worker_grpc import BearerTokenAuth
from worker_grpc.plugin import worker_register_authenticators

MODULES = ("worker_grpc", "worker_grpc.messages", "worker_grpc.payloads", "worker_grpc.errors", "worker_grpc.tls")


@pytest.mark.parametrize("name", MODULES)
def test_all_is_a_complete_tuple(name: str) -> None:
    module = importlib.import_module(name)
    assert isinstance(module.__all__, tuple)
    for attr in module.__all__:
        assert getattr(module, attr) is not None, attr


def test_every_public_class_of_the_package_is_exported() -> None:
    for name in ("WorkerClient", "serve", "server_port", "HandlerSpec", "HandlerRegistry", "ServerTLS", "ClientTLS"):
        assert name in worker_grpc.__all__


def test_plugin_registers_the_bearer_authenticator() -> None:
    registry: Registry[object] = Registry("authenticator")
    worker_register_authenticators(registry)
    assert registry.names() == ["bearer"]
    assert isinstance(registry.get("bearer")({"t"}), BearerTokenAuth)
