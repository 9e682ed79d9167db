"""Every telemetry name worker-otel emits: instruments, attributes, the span and the propagation key.

The nine instrument names, kinds and units are go-worker's (spec §7), so dashboards built for the Go
library keep working. Attributes are few and of low cardinality: the queue name, and the handler name
for durable tasks (both are chosen by the application, never derived from payloads or ids).
"""

from __future__ import annotations

from typing import Final

__all__ = (
    "ATTR_HANDLER",
    "ATTR_QUEUE",
    "DEFAULT_INSTRUMENTATION_NAME",
    "DESCRIPTIONS",
    "DURABLE_DESCRIPTIONS",
    "LATENCY_BUCKETS_S",
    "METRIC_DURABLE_BACKLOG",
    "METRIC_DURABLE_BACKLOG_AGE",
    "METRIC_QUEUE_DEPTH",
    "METRIC_RESULTS_DROPPED",
    "METRIC_SCHEDULE_TICKS_FIRED",
    "METRIC_SCHEDULE_TICKS_SKIPPED",
    "METRIC_TASKS_CANCELLED",
    "METRIC_TASKS_COMPLETED",
    "METRIC_TASKS_FAILED",
    "METRIC_TASKS_RETRIED",
    "METRIC_TASKS_RUNNING",
    "METRIC_TASKS_SCHEDULED",
    "METRIC_TASK_LATENCY",
    "SPAN_ATTR_TASK_ATTEMPT",
    "SPAN_ATTR_TASK_ID",
    "SPAN_ATTR_TASK_NAME",
    "SPAN_ATTR_TASK_PRIORITY",
    "SPAN_ATTR_TASK_QUEUE",
    "SPAN_NAME_TASK",
    "TRACEPARENT_KEY",
)

#: Instrumentation scope (meter and tracer) name used unless the caller gives another.
DEFAULT_INSTRUMENTATION_NAME: Final = "worker_otel"

# --- metrics (go-worker spec §7: same names, kinds and units) ----------------------------------------
#: ObservableCounter: tasks accepted by ``register_task*`` and ``register_durable_task*``.
METRIC_TASKS_SCHEDULED: Final = "tasks_scheduled_total"
#: ObservableGauge: tasks executing right now (manager-wide, no attributes).
METRIC_TASKS_RUNNING: Final = "tasks_running"
#: ObservableCounter: tasks that finished ``COMPLETED``.
METRIC_TASKS_COMPLETED: Final = "tasks_completed_total"
#: ObservableCounter: tasks that finished ``FAILED``, ``DEADLINE_EXCEEDED`` or ``INVALID`` (once per task).
METRIC_TASKS_FAILED: Final = "tasks_failed_total"
#: ObservableCounter: tasks that finished ``CANCELLED``.
METRIC_TASKS_CANCELLED: Final = "tasks_cancelled_total"
#: ObservableCounter: retries scheduled (in-memory backoff or durable nack).
METRIC_TASKS_RETRIED: Final = "tasks_retried_total"
#: ObservableCounter: results a subscriber did not receive because its buffer was full (no attributes).
METRIC_RESULTS_DROPPED: Final = "results_dropped_total"
#: ObservableGauge: tasks waiting in the in-memory queues, ready or delayed (manager-wide, no attributes).
METRIC_QUEUE_DEPTH: Final = "queue_depth"
#: Histogram in seconds: start of the first attempt to the terminal finish, for tasks that started.
METRIC_TASK_LATENCY: Final = "task_latency_seconds"
#: Gauge (ours): durable tasks due now and not leased, per queue, deployment-wide (for autoscaling).
METRIC_DURABLE_BACKLOG: Final = "durable_backlog"
#: Gauge (ours), seconds: how long the oldest due durable task of a queue has waited.
METRIC_DURABLE_BACKLOG_AGE: Final = "durable_backlog_oldest_seconds"

#: Counter (ours): schedule ticks this node fired (enqueued, or registered in process), per ``schedule``.
METRIC_SCHEDULE_TICKS_FIRED: Final = "schedule_ticks_fired_total"
#: Counter (ours): schedule ticks this node did not fire, per ``schedule`` and ``reason`` (``paused``,
#: ``not_accepting``, ``failed``, ``duplicate``: another node fired it, ``late``).
METRIC_SCHEDULE_TICKS_SKIPPED: Final = "schedule_ticks_skipped_total"

DESCRIPTIONS: Final[dict[str, str]] = {
    METRIC_TASKS_SCHEDULED: "Total number of tasks scheduled",
    METRIC_TASKS_RUNNING: "Number of tasks running",
    METRIC_TASKS_COMPLETED: "Total number of tasks completed",
    METRIC_TASKS_FAILED: "Total number of tasks failed",
    METRIC_TASKS_CANCELLED: "Total number of tasks cancelled",
    METRIC_TASKS_RETRIED: "Total number of task retries",
    METRIC_RESULTS_DROPPED: "Total number of dropped results",
    METRIC_QUEUE_DEPTH: "Number of tasks queued",
    METRIC_TASK_LATENCY: "Task execution latency",
}

#: Descriptions of our additive instruments (reported only for a durable backend that knows its backlog).
DURABLE_DESCRIPTIONS: Final[dict[str, str]] = {
    METRIC_DURABLE_BACKLOG: "Durable tasks due and waiting for a worker, per queue",
    METRIC_DURABLE_BACKLOG_AGE: "Seconds the oldest due durable task of a queue has waited",
    METRIC_SCHEDULE_TICKS_FIRED: "Schedule ticks fired by this node",
    METRIC_SCHEDULE_TICKS_SKIPPED: "Schedule ticks this node did not fire, by reason",
}

#: Advisory histogram boundaries in seconds (OTel semconv's duration buckets); a View overrides them.
LATENCY_BUCKETS_S: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

# --- metric attributes --------------------------------------------------------------------------------
#: The task's queue, on every per-task counter and on the latency histogram.
ATTR_QUEUE: Final = "queue"
#: The durable handler name, on the same instruments, for durable tasks only.
ATTR_HANDLER: Final = "handler"
#: The schedule's name, on the schedule tick counters.
ATTR_SCHEDULE: Final = "schedule"
#: Why a tick was not fired, on ``schedule_ticks_skipped_total``.
ATTR_REASON: Final = "reason"

# --- tracing ------------------------------------------------------------------------------------------
#: One span per attempt.
SPAN_NAME_TASK: Final = "worker.task"
SPAN_ATTR_TASK_ID: Final = "task.id"
SPAN_ATTR_TASK_NAME: Final = "task.name"
SPAN_ATTR_TASK_PRIORITY: Final = "task.priority"
SPAN_ATTR_TASK_QUEUE: Final = "task.queue"
SPAN_ATTR_TASK_ATTEMPT: Final = "task.attempt"
#: The W3C Trace Context key the enqueuing side writes into the task's metadata.
TRACEPARENT_KEY: Final = "traceparent"
