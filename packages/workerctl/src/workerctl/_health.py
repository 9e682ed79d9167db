"""``--health-listen HOST:PORT``: ``/livez``, ``/readyz`` and ``/metrics`` over HTTP/1.1, served by the supervisor.

The standard library's asyncio server, no framework: three GET routes, one request per connection
(``Connection: close``), a request head bounded to 8 KiB and 5 s. ``/livez`` and ``/readyz`` answer 200 or 503
with a small JSON body naming each worker process; ``/metrics`` is Prometheus text from the OpenTelemetry
Prometheus exporter (``pip install 'workerctl[metrics]'``), the node's counters summed over its processes
(a replaced process's counts are kept, so counters never go down); without the exporter it answers 501.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

from ._connection import fail

if TYPE_CHECKING:
    from ._supervisor import NodeSupervisor

__all__ = ("HealthServer",)

logger = logging.getLogger("workerctl.health")

_HEAD_LIMIT = 8192
_READ_TIMEOUT_S = 5.0
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 501: "Not Implemented",
            503: "Service Unavailable"}  # fmt: skip


class HealthServer:
    """The HTTP endpoint of one supervisor."""

    def __init__(self, supervisor: NodeSupervisor, listen: str) -> None:
        host, sep, port = listen.rpartition(":")
        if not sep or not port.isdigit():
            raise fail(f"--health-listen {listen!r} is not HOST:PORT")
        self._supervisor = supervisor
        self._host = host.strip("[]") or "0.0.0.0"
        self._port = int(port)
        self._server: asyncio.Server | None = None
        self._metrics: _Metrics | bool | None = False  # False: not built yet; None: no exporter installed
        self.address = listen

    async def start(self) -> None:
        """Listen (``--health-listen host:0`` picks a free port; :attr:`address` tells which)."""
        try:
            self._server = await asyncio.start_server(self._serve, self._host, self._port, limit=_HEAD_LIMIT)
        except OSError as exc:
            raise fail(f"--health-listen {self.address}: {exc.strerror or exc}") from None
        port = self._server.sockets[0].getsockname()[1]
        self.address = f"{self._host}:{port}"

    async def stop(self) -> None:
        """Stop listening and close open connections."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT_S)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                return
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(parts) != 3:
                status, body, ctype = 400, b"bad request\n", "text/plain"
            elif parts[0] not in ("GET", "HEAD"):
                status, body, ctype = 405, b"GET only\n", "text/plain"
            else:
                status, body, ctype = self._route(parts[1].split("?", 1)[0])
                if parts[0] == "HEAD":
                    body = b""
            writer.write(
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        except Exception:  # a bug here must not take the supervisor down
            logger.exception("health request failed")
        finally:
            writer.close()

    def _route(self, path: str) -> tuple[int, bytes, str]:
        sup = self._supervisor
        if path in ("/livez", "/readyz"):
            ok, rows = sup.liveness() if path == "/livez" else sup.readiness()
            payload = {"status": "ok" if ok else "unavailable", "stopping": sup.stopping, "processes": rows}
            return (200 if ok else 503), json.dumps(payload).encode() + b"\n", "application/json"
        if path == "/metrics":
            metrics = self._exporter()
            if metrics is None:
                return 501, b"install the exporter: pip install 'workerctl[metrics]'\n", "text/plain"
            return 200, metrics.render(), "text/plain; version=0.0.4; charset=utf-8"
        return 404, b"not found: /livez, /readyz, /metrics\n", "text/plain"

    def _exporter(self) -> _Metrics | None:
        if self._metrics is False:
            try:
                self._metrics = _Metrics(self._supervisor)
            except ImportError:
                self._metrics = None
        assert not isinstance(self._metrics, bool)
        return self._metrics


class _Metrics:
    """Observable instruments over the supervisor's totals, read by an OTel Prometheus reader of its own."""

    def __init__(self, supervisor: NodeSupervisor) -> None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.metrics import CallbackOptions, Observation
        from opentelemetry.sdk.metrics import MeterProvider
        from prometheus_client import CollectorRegistry, generate_latest
        from worker_otel import semconv

        self._generate = generate_latest
        self._registry = CollectorRegistry()
        try:
            reader = PrometheusMetricReader(registry=self._registry)
        except TypeError:  # an exporter older than its registry argument: it registers in the global registry
            import prometheus_client

            reader = PrometheusMetricReader()
            self._registry = prometheus_client.REGISTRY
        self._provider = MeterProvider(metric_readers=[reader])
        meter = self._provider.get_meter("workerctl")

        def reading(key: str) -> Any:
            def observe(options: CallbackOptions) -> list[Observation]:
                return [Observation(supervisor.totals()[key])]

            return observe

        counters = (
            (semconv.METRIC_TASKS_SCHEDULED, "scheduled"),
            (semconv.METRIC_TASKS_COMPLETED, "completed"),
            (semconv.METRIC_TASKS_FAILED, "failed"),
            (semconv.METRIC_TASKS_CANCELLED, "cancelled"),
            (semconv.METRIC_TASKS_RETRIED, "retried"),
        )
        for name, key in counters:
            meter.create_observable_counter(name, [reading(key)], description=semconv.DESCRIPTIONS.get(name, ""))
        for name, key in ((semconv.METRIC_TASKS_RUNNING, "running"), (semconv.METRIC_QUEUE_DEPTH, "queue_depth")):
            meter.create_observable_gauge(name, [reading(key)], description=semconv.DESCRIPTIONS.get(name, ""))

        def processes(options: CallbackOptions) -> list[Observation]:
            return [Observation(supervisor.liveness()[1].__len__() - _restarting(supervisor))]

        def restarts(options: CallbackOptions) -> list[Observation]:
            return [Observation(supervisor.restarts)]

        meter.create_observable_gauge("worker_processes", [processes], description="Worker processes running")
        meter.create_observable_counter(
            "worker_process_restarts_total", [restarts], description="Worker processes replaced (recycled or crashed)"
        )

    def render(self) -> bytes:
        return bytes(self._generate(self._registry))


def _restarting(supervisor: NodeSupervisor) -> int:
    return sum(1 for c in supervisor.children.values() if c is None or c.proc.returncode is not None)
