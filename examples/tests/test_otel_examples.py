"""Run the three OpenTelemetry examples as programs and check what they export."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

EXAMPLES = Path(__file__).resolve().parent.parent
NINE = {
    "tasks_scheduled_total",
    "tasks_running",
    "tasks_completed_total",
    "tasks_failed_total",
    "tasks_cancelled_total",
    "tasks_retried_total",
    "results_dropped_total",
    "queue_depth",
    "task_latency_seconds",
}


def run_example(name: str, **env: str) -> str:
    # Loopback traffic must not go through a proxy set in the environment.
    full_env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", **env}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=60, env=full_env, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def json_objects(text: str) -> list[dict[str, Any]]:
    """The JSON objects printed one after another (the console exporters pretty-print them back to back)."""
    decoder = json.JSONDecoder()
    objects: list[dict[str, Any]] = []
    index = 0
    while (start := text.find("{", index)) != -1:
        obj, index = decoder.raw_decode(text, start)
        objects.append(obj)
    return objects


def test_otel_metrics_example_prints_the_nine_instruments() -> None:
    out = run_example("otel_metrics.py")
    points: dict[str, list[dict[str, Any]]] = {}
    for doc in json_objects(out):
        for resource in doc.get("resource_metrics", []):
            for scope in resource["scope_metrics"]:
                for metric in scope["metrics"]:
                    points.setdefault(metric["name"], []).extend(metric["data"]["data_points"])
    assert set(points) >= NINE
    completed = {p["attributes"]["queue"]: p["value"] for p in points["tasks_completed_total"]}
    assert completed == {"default": 3, "emails": 2}
    assert sum(p["value"] for p in points["tasks_failed_total"]) == 1
    assert sum(p["count"] for p in points["task_latency_seconds"]) == 6


def test_otel_tracing_example_prints_one_trace() -> None:
    out = run_example("otel_tracing.py")
    spans = [obj for obj in json_objects(out) if "context" in obj]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_name.setdefault(span["name"], []).append(span)
    (enqueue,) = by_name["enqueue"]
    attempts = by_name["worker.task"]
    assert len(attempts) == 3  # one succeeding task, one task failing once then succeeding
    trace_id = enqueue["context"]["trace_id"]
    assert {a["context"]["trace_id"] for a in attempts} == {trace_id}
    assert {a["parent_id"] for a in attempts} == {enqueue["context"]["span_id"]}
    statuses = sorted(a["status"]["status_code"] for a in attempts)
    assert statuses == ["ERROR", "OK", "OK"]
    assert all(a["attributes"]["task.attempt"] in (1, 2) for a in attempts)


class _Receiver(HTTPServer):
    requests: list[tuple[str, bytes]]


class _OTLPHandler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.requests.append((self.path, body))
        reply = ExportMetricsServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:  # keep the test output quiet
        pass


@pytest.fixture
def otlp_receiver() -> Iterator[_Receiver]:
    server = _Receiver(("127.0.0.1", 0), _OTLPHandler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def test_otel_metrics_otlp_example_posts_to_the_endpoint(otlp_receiver: _Receiver) -> None:
    host, port = otlp_receiver.server_address[:2]
    endpoint = f"http://{host!s}:{port}/v1/metrics"
    run_example("otel_metrics_otlp.py", OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=endpoint)
    assert otlp_receiver.requests, "the example exported nothing"
    latest: dict[str, Any] = {}
    for path, body in otlp_receiver.requests:
        assert path == "/v1/metrics"
        request = ExportMetricsServiceRequest.FromString(body)
        for resource in request.resource_metrics:
            service = {kv.key: kv.value.string_value for kv in resource.resource.attributes}
            assert service["service.name"] == "otel-metrics-otlp-example"
            for scope in resource.scope_metrics:
                assert scope.scope.name == "worker_otel"
                for metric in scope.metrics:
                    latest[metric.name] = metric
    assert set(latest) >= NINE
    completed = latest["tasks_completed_total"]
    assert completed.sum.is_monotonic
    assert sum(p.as_int for p in completed.sum.data_points) == 5
    latency = latest["task_latency_seconds"]
    assert latency.unit == "s"
    assert sum(p.count for p in latency.histogram.data_points) == 5
