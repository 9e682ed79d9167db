"""worker-core: prioritized, concurrent task running for asyncio."""

from __future__ import annotations

from .backoff import durable_retry_delay as durable_retry_delay
from .backoff import retry_jitter as retry_jitter
from .blocking import BlockingHandle as BlockingHandle
from .blocking import BlockingManager as BlockingManager
from .blocking import BlockingSubmitter as BlockingSubmitter
from .context import current_context as current_context
from .durable.codecs import DurableCodec as DurableCodec
from .durable.declare import DurableTaskType as DurableTaskType
from .durable.handlers import DurableHandlerSpec as DurableHandlerSpec
from .durable.handlers import TypedDurableRegistry as TypedDurableRegistry
from .durable.handlers import TypedHandlerRegistry as TypedHandlerRegistry
from .durable.outcomes import RemoteTaskError as RemoteTaskError
from .durable.outcomes import ResultNotStoredError as ResultNotStoredError
from .durable.outcomes import ResultStoreBackend as ResultStoreBackend
from .durable.outcomes import TaskOutcome as TaskOutcome
from .durable.types import DurableBackend as DurableBackend
from .durable.types import DurableTask as DurableTask
from .durable.types import DurableTaskLease as DurableTaskLease
from .errors import Abort as Abort
from .errors import BackendError as BackendError
from .errors import BackendUnavailableError as BackendUnavailableError
from .errors import ConfigurationError as ConfigurationError
from .errors import DurableOnlyError as DurableOnlyError
from .errors import DurableTaskExistsError as DurableTaskExistsError
from .errors import HandlerNotFoundError as HandlerNotFoundError
from .errors import HandlerPayloadTypeError as HandlerPayloadTypeError
from .errors import HandlerRegistrationError as HandlerRegistrationError
from .errors import InvalidTaskError as InvalidTaskError
from .errors import LeaseLostError as LeaseLostError
from .errors import ManagerStoppedError as ManagerStoppedError
from .errors import NotInTaskError as NotInTaskError
from .errors import PartialRegistrationError as PartialRegistrationError
from .errors import PayloadError as PayloadError
from .errors import PluginError as PluginError
from .errors import QueueFullError as QueueFullError
from .errors import Retry as Retry
from .errors import ScheduleExistsError as ScheduleExistsError
from .errors import ScheduleNotFoundError as ScheduleNotFoundError
from .errors import ScheduleSpecError as ScheduleSpecError
from .errors import TaskAlreadyStartedError as TaskAlreadyStartedError
from .errors import TaskCancelledError as TaskCancelledError
from .errors import TaskExistsError as TaskExistsError
from .errors import TaskNotFoundError as TaskNotFoundError
from .errors import TaskSignal as TaskSignal
from .errors import TaskTimeoutError as TaskTimeoutError
from .errors import WorkerError as WorkerError
from .errors import WorkerProcessError as WorkerProcessError
from .errors import WrongLoopError as WrongLoopError
from .handles import TaskHandle as TaskHandle
from .hooks import TaskHooks as TaskHooks
from .hookspecs import hookimpl as hookimpl
from .manager import ManagerState as ManagerState
from .manager import TaskManager as TaskManager
from .metrics import MetricsSnapshot as MetricsSnapshot
from .plugins import Plugins as Plugins
from .protocols import Instrumentation as Instrumentation
from .protocols import TaskSpan as TaskSpan
from .protocols import TaskTracer as TaskTracer
from .registry import Registry as Registry
from .results import DropPolicy as DropPolicy
from .results import Result as Result
from .results import ResultSubscription as ResultSubscription
from .retention import RetentionPolicy as RetentionPolicy
from .schedules.types import ScheduleInfo as ScheduleInfo
from .service import LoggerMiddleware as LoggerMiddleware
from .service import Middleware as Middleware
from .service import Service as Service
from .service import register_middleware as register_middleware
from .status import TERMINAL_STATUSES as TERMINAL_STATUSES
from .status import TaskStatus as TaskStatus
from .submit import SubmitOptions as SubmitOptions
from .submit import Submitter as Submitter
from .submit import TaskDefinition as TaskDefinition
from .submit import define_task as define_task
from .task import CancelEvent as CancelEvent
from .task import Task as Task
from .task import TaskContext as TaskContext
from .task import TaskFields as TaskFields
from .task import TaskFunction as TaskFunction

__all__ = (
    "TERMINAL_STATUSES",
    "Abort",
    "BackendError",
    "BackendUnavailableError",
    "BlockingHandle",
    "BlockingManager",
    "BlockingSubmitter",
    "CancelEvent",
    "ConfigurationError",
    "DropPolicy",
    "DurableBackend",
    "DurableCodec",
    "DurableHandlerSpec",
    "DurableOnlyError",
    "DurableTask",
    "DurableTaskExistsError",
    "DurableTaskLease",
    "DurableTaskType",
    "HandlerNotFoundError",
    "HandlerPayloadTypeError",
    "HandlerRegistrationError",
    "Instrumentation",
    "InvalidTaskError",
    "LeaseLostError",
    "LoggerMiddleware",
    "ManagerState",
    "ManagerStoppedError",
    "MetricsSnapshot",
    "Middleware",
    "NotInTaskError",
    "PartialRegistrationError",
    "PayloadError",
    "PluginError",
    "Plugins",
    "QueueFullError",
    "Registry",
    "RemoteTaskError",
    "Result",
    "ResultNotStoredError",
    "ResultStoreBackend",
    "ResultSubscription",
    "RetentionPolicy",
    "Retry",
    "ScheduleExistsError",
    "ScheduleInfo",
    "ScheduleNotFoundError",
    "ScheduleSpecError",
    "Service",
    "SubmitOptions",
    "Submitter",
    "Task",
    "TaskAlreadyStartedError",
    "TaskCancelledError",
    "TaskContext",
    "TaskDefinition",
    "TaskExistsError",
    "TaskFields",
    "TaskFunction",
    "TaskHandle",
    "TaskHooks",
    "TaskManager",
    "TaskNotFoundError",
    "TaskOutcome",
    "TaskSignal",
    "TaskSpan",
    "TaskStatus",
    "TaskTimeoutError",
    "TaskTracer",
    "TypedDurableRegistry",
    "TypedHandlerRegistry",
    "WorkerError",
    "WorkerProcessError",
    "WrongLoopError",
    "current_context",
    "define_task",
    "durable_retry_delay",
    "hookimpl",
    "register_middleware",
    "retry_jitter",
)
