"""What worker-otel costs a TaskManager, beside what taskiq's OpenTelemetry middleware costs taskiq.

Run: ``uv run python bench/otel_overhead.py`` (``BENCH_SCALE=0.1`` shrinks it; ``BENCH_PEERS=0`` leaves taskiq
out). ``bench/core.py`` calls :func:`measure_otel_overhead` and prints :func:`format_otel_overhead`. The main
workload is
bench/core.py's worst case for overhead: async no-op tasks through 8 workers, rate limit off, one
subscriber draining results; a small real task (100 us of CPU) gives the scale. Configurations run
interleaved, several rounds, and the median throughput of each is kept (the machine is shared).
Setting a provider up is not timed (once per manager); every per-task and exporting cost is. Runs are timed
with the process's CPU time (all threads: a ``BatchSpanProcessor``'s export thread counts), not wall time,
because the machine is shared and other jobs' load moves wall time far more than these costs
(``BENCH_CLOCK=wall`` for wall time). The 100 us task spins on ``time.thread_time()`` for the same reason.

- ``off``: no provider, no tracer (the baseline).
- ``metrics removed``: a meter provider set then removed with ``None``: must equal ``off``.
- ``metrics on``: the real SDK ``MeterProvider`` with an ``InMemoryMetricReader``, collected at the end
  (one ``Histogram.record`` per task for the latency histogram: the only per-task SDK call).
- ``metrics no hist.``: the same with ``latency_histogram=False`` (eight instruments, no per-task SDK call).
- ``tracing on``: ``OTelTracer`` on the real SDK ``TracerProvider``, every span sampled, a
  ``SimpleSpanProcessor`` handing each span to an exporter that drops it (SDK cost, no I/O).
- ``tracing batch``: the same with a ``BatchSpanProcessor`` (the production setting), flushed at the end.
- ``tracing 1%``: the same with a ``TraceIdRatioBased(0.01)`` sampler, the usual production setting.
- ``null tracer``: a tracer whose spans do nothing: what the manager's traced path itself costs.

The peer: taskiq 0.13.0's built-in ``OpenTelemetryMiddleware`` (``taskiq[opentelemetry]``) on its in-memory
broker, the same task bodies, in its own virtualenv (``bench/.envs/taskiq-otel``, made here with ``uv`` on the
same opentelemetry-sdk version as ours), run as a subprocess once per round between our configurations, so both
sides see the same machine load (see ``bench/_peers/taskiq_otel.py``). Overheads are compared in microseconds per
task, each side against its own run without instrumentation.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from worker_core import Task, TaskContext, TaskManager
from worker_otel import OTelTracer, set_meter_provider

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
PEERS = os.environ.get("BENCH_PEERS", "1") != "0"
#: What a run is timed with: the process's CPU time (all threads) by default, as the machine is shared and wall
#: time moves with other jobs' load; ``BENCH_CLOCK=wall`` times wall-clock instead (the peer follows it).
CLOCK = time.perf_counter if os.environ.get("BENCH_CLOCK") == "wall" else time.process_time
UNIT = "tasks/s" if CLOCK is time.perf_counter else "tasks/CPU-s"
WORKERS = 8
HERE = Path(__file__).resolve().parent
PEER_ENV = HERE / ".envs" / "taskiq-otel"
PEER_CONFIGS = ("off", "metrics", "tracing")
#: Configuration name -> the target on tasks doing 100 us of work, as a fraction of the bare time (None: none).
TARGETS: dict[str, float | None] = {
    "off": None,
    "metrics removed": 0.0,
    "metrics on": 0.05,
    "metrics no hist.": None,
    "tracing on": 0.30,
    "tracing batch": None,
    "tracing 1%": None,
    "null tracer": None,
}
#: Targets on no-op tasks: metrics at most 2 us per task, tracing at most 0.25x taskiq's tracing overhead.
METRICS_US_TARGET = 2.0
TRACING_VS_TASKIQ_TARGET = 0.25


class _NullSpan:
    def end(self, error: BaseException | None) -> None:
        return None


class _NullTracer:
    """Does nothing: isolates the manager's own cost of running an attempt under a tracer."""

    def start(self, task: Task[Any], ctx: TaskContext) -> _NullSpan:
        return _NullSpan()

    def inject(self, metadata: MutableMapping[str, str]) -> None:
        return None


class _DropSpans(SpanExporter):
    """Accepts every span and keeps none (only counts them): measures the SDK, not an exporter's I/O."""

    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS


async def _noop(ctx: TaskContext) -> None:
    return None


async def _cpu_100us(ctx: TaskContext) -> None:
    """A small real task: about 100 microseconds of Python work."""
    deadline = time.thread_time() + 100e-6  # CPU time: a descheduled task still does its 100 us of work
    while time.thread_time() < deadline:
        pass


#: Workload name -> task function.
WORKLOADS: dict[str, Callable[[TaskContext], Awaitable[None]]] = {"async no-op": _noop, "async 100 us CPU": _cpu_100us}


def _setup(name: str, tm: TaskManager, n: int) -> Callable[[], None]:
    """Instrument ``tm`` as configuration ``name`` for ``n`` tasks; return what finishes the export (timed too)."""
    if name == "off":
        return lambda: None
    if name.startswith("metrics"):
        reader = InMemoryMetricReader()
        meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
        set_meter_provider(tm, meter_provider, latency_histogram=name != "metrics no hist.")
        if name == "metrics removed":
            set_meter_provider(tm, None)

        def collect_and_close() -> None:
            data = reader.get_metrics_data()
            meter_provider.shutdown()
            if name == "metrics on":  # every latency must have reached the SDK's histogram
                points = [
                    point
                    for resource in (data.resource_metrics if data is not None else ())
                    for scope in resource.scope_metrics
                    for metric in scope.metrics
                    if metric.name == "task_latency_seconds"
                    for point in metric.data.data_points
                ]
                if sum(getattr(point, "count", 0) for point in points) != n:
                    raise RuntimeError(f"{name}: the latency histogram does not count {n} tasks")

        return collect_and_close
    if name == "null tracer":
        tm.set_tracer(_NullTracer())
        return lambda: None
    sampler = TraceIdRatioBased(0.01) if name == "tracing 1%" else None
    tracer_provider = TracerProvider(sampler=sampler, shutdown_on_exit=False)
    exporter = _DropSpans()
    # A queue that holds the whole run: with the default 2,048 a burst of no-op tasks outruns the exporter thread
    # (it gets the GIL only between the loop's CPU-bound steps) and spans are dropped, which would flatter the figure.
    processor = (
        BatchSpanProcessor(exporter, max_queue_size=max(n, 2048))
        if name == "tracing batch"
        else SimpleSpanProcessor(exporter)
    )
    tracer_provider.add_span_processor(processor)
    tm.set_tracer(OTelTracer(tracer_provider))

    def flush_and_check() -> None:
        tracer_provider.shutdown()
        # A full BatchSpanProcessor queue drops spans, which would flatter the figure: refuse it.
        if sampler is None and exporter.exported != n:
            raise RuntimeError(f"{name}: {exporter.exported} spans exported for {n} tasks")

    return flush_and_check


async def _throughput(name: str, n: int, fn: Callable[[TaskContext], Awaitable[None]]) -> float:
    """``n`` tasks through an instrumented manager, results drained (as bench/core.py does).

    Setting the provider up is outside the timed window (once per manager); collecting or flushing is inside.
    """
    async with TaskManager(max_workers=WORKERS, max_tasks=n, tasks_per_second=None) as tm:
        subscription = tm.subscribe_results(buffer=n)
        received = 0

        async def drain() -> None:
            nonlocal received
            async for _ in subscription:
                received += 1
                if received == n:
                    return

        finish = _setup(name, tm, n)
        started = CLOCK()
        consumer = asyncio.create_task(drain())
        for _ in range(n):
            await tm.register_task(Task(fn))
        await consumer
        finish()
        elapsed = CLOCK() - started
        subscription.close()
    return n / elapsed


def peer_python() -> str:
    """The interpreter of taskiq's virtualenv (taskiq 0.13.0 with its OpenTelemetry extra), made on first use."""
    python = PEER_ENV / "bin" / "python"
    if not python.exists():
        uv = shutil.which("uv")
        if uv is None:
            raise SystemExit("uv is needed to build taskiq's virtualenv (or set BENCH_PEERS=0)")
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        sdk = f"opentelemetry-sdk=={metadata.version('opentelemetry-sdk')}"  # the same SDK as ours
        subprocess.run([uv, "venv", "-q", "-p", version, str(PEER_ENV)], check=True)
        subprocess.run(
            [uv, "pip", "install", "-q", "--python", str(python), "taskiq[opentelemetry]==0.13.0", sdk], check=True
        )
    return str(python)


def _peer_round(workload: str, n: int, order: Sequence[str]) -> dict[str, float]:
    """One round of taskiq's configurations, in ``order``, in its own process and virtualenv."""
    script = HERE / "_peers" / "taskiq_otel.py"
    env = {**os.environ, "BENCH_ORDER": ",".join(order)}
    out = subprocess.run([peer_python(), str(script), workload, str(n)], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"taskiq_otel.py failed:\n{out.stderr}")
    figures: dict[str, float] = json.loads(out.stdout)
    return figures


async def measure_otel_overhead(
    n: int = 20_000, rounds: int = 5, workload: str = "async no-op", *, peers: bool = False
) -> dict[str, float]:
    """Median tasks/s per configuration of :data:`TARGETS`, configurations interleaved over ``rounds``.

    With ``peers``, each round also runs taskiq's configurations (keys ``taskiq <name>``) in its own process.
    """
    fn = WORKLOADS[workload]
    samples: dict[str, list[float]] = {name: [] for name in TARGETS}
    if peers:
        samples.update({f"taskiq {name}": [] for name in PEER_CONFIGS})
    await _throughput("off", max(1, n // 10), fn)  # warm up imports and caches
    names = list(TARGETS)
    for round_no in range(rounds):
        # Rotate the order each round, and start each run from a collected heap: no configuration
        # always runs first or right after the one that made the most garbage.
        for name in names[round_no % len(names) :] + names[: round_no % len(names)]:
            gc.collect()
            samples[name].append(await _throughput(name, n, fn))
        if peers:
            shift = round_no % len(PEER_CONFIGS)
            order = PEER_CONFIGS[shift:] + PEER_CONFIGS[:shift]
            for name, rate in _peer_round(workload, n, order).items():
                samples[f"taskiq {name}"].append(rate)
    return {name: statistics.median(values) for name, values in samples.items()}


def _us(rate: float) -> float:
    return 1e6 / rate


def format_otel_overhead(result: dict[str, float]) -> list[str]:
    """One line per configuration: tasks/s, ratio to off, overhead (% and us per task) and its target."""
    lines = []
    for name, rate in result.items():
        off = result["taskiq off"] if name.startswith("taskiq") else result["off"]
        ratio = rate / off
        extra_us = _us(rate) - _us(off)
        target = TARGETS.get(name)
        goal = f" (target on 100 us tasks <= {target:.0%})" if target is not None else ""
        lines.append(
            f"  {name:<16} {rate:>10,.0f} {UNIT}  ratio {ratio:.2f}  overhead {1 / ratio - 1:+.0%}"
            f" {extra_us:+.2f} us/task{goal}"
        )
    if "taskiq tracing" in result:
        ours = _us(result["tracing on"]) - _us(result["off"])
        theirs = _us(result["taskiq tracing"]) - _us(result["taskiq off"])
        metrics_us = _us(result["metrics on"]) - _us(result["off"])
        theirs_metrics = _us(result["taskiq metrics"]) - _us(result["taskiq off"])
        lines.append(
            f"  tracing, ours / taskiq's middleware: {ours / theirs:.2f}x"
            f" ({ours:.1f} vs {theirs:.1f} us/task; target <= {TRACING_VS_TASKIQ_TARGET}x on no-op tasks)"
        )
        lines.append(
            f"  metrics, ours / taskiq's middleware: {metrics_us / theirs_metrics:.2f}x"
            f" ({metrics_us:.1f} vs {theirs_metrics:.1f} us/task; target <= {METRICS_US_TARGET} us on no-op tasks)"
        )
    return lines


async def main() -> None:
    sdk = metadata.version("opentelemetry-sdk")
    print(
        f"worker-otel overhead, Python {sys.version.split()[0]}, opentelemetry-sdk {sdk}, {os.cpu_count()} CPUs,"
        f" median of 5 interleaved runs{', beside taskiq 0.13.0' if PEERS else ''},"
        f" timed in {'wall-clock' if UNIT == 'tasks/s' else 'process CPU'} time"
    )
    for workload, size in (("async no-op", 20_000), ("async 100 us CPU", 4_000)):
        n = max(100, int(size * SCALE))
        print(f"{workload} x{n}:")
        for line in format_otel_overhead(await measure_otel_overhead(n, workload=workload, peers=PEERS)):
            print(line)


if __name__ == "__main__":
    asyncio.run(main())
