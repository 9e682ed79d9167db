"""worker-grpc: the WorkerService (wire compatible with go-worker) for a worker-core TaskManager."""

from __future__ import annotations

from .access import EVERY_OWNER as EVERY_OWNER
from .access import OWNER_KEY as OWNER_KEY
from .access import Authorizer as Authorizer
from .access import grant_all as grant_all
from .auth import ANONYMOUS as ANONYMOUS
from .auth import AuthHook as AuthHook
from .auth import BearerTokenAuth as BearerTokenAuth
from .auth import Principal as Principal
from .client import TERMINAL_STATUSES as TERMINAL_STATUSES
from .client import DurableTaskRequest as DurableTaskRequest
from .client import TaskInfo as TaskInfo
from .client import TaskRequest as TaskRequest
from .client import TaskResult as TaskResult
from .client import WorkerClient as WorkerClient
from .errors import AuthError as AuthError
from .errors import IdempotencyConflictError as IdempotencyConflictError
from .errors import InvalidRequestError as InvalidRequestError
from .errors import RemoteHandlerNotFoundError as RemoteHandlerNotFoundError
from .errors import RemoteManagerStoppedError as RemoteManagerStoppedError
from .errors import RemoteQueueFullError as RemoteQueueFullError
from .errors import RemoteTaskExistsError as RemoteTaskExistsError
from .errors import RemoteTaskNotFoundError as RemoteTaskNotFoundError
from .errors import RpcError as RpcError
from .errors import ServiceUnavailableError as ServiceUnavailableError
from .errors import StatusError as StatusError
from .handlers import HandlerRegistry as HandlerRegistry
from .handlers import Handlers as Handlers
from .handlers import HandlerSpec as HandlerSpec
from .handlers import HandlerSpecLike as HandlerSpecLike
from .idempotency import IdempotencyCache as IdempotencyCache
from .server import DEFAULT_MAX_MESSAGE_BYTES as DEFAULT_MAX_MESSAGE_BYTES
from .server import Exposure as Exposure
from .server import serve as serve
from .server import server_port as server_port
from .server import server_servicer as server_servicer
from .servicer import SERVICE_NAME as SERVICE_NAME
from .servicer import WorkerServiceServicer as WorkerServiceServicer
from .streams import StreamLimits as StreamLimits
from .streams import StreamMetrics as StreamMetrics
from .tls import ClientTLS as ClientTLS
from .tls import ServerTLS as ServerTLS

__all__ = (
    "ANONYMOUS",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "EVERY_OWNER",
    "OWNER_KEY",
    "SERVICE_NAME",
    "TERMINAL_STATUSES",
    "AuthError",
    "AuthHook",
    "Authorizer",
    "BearerTokenAuth",
    "ClientTLS",
    "DurableTaskRequest",
    "Exposure",
    "HandlerRegistry",
    "HandlerSpec",
    "HandlerSpecLike",
    "Handlers",
    "IdempotencyCache",
    "IdempotencyConflictError",
    "InvalidRequestError",
    "Principal",
    "RemoteHandlerNotFoundError",
    "RemoteManagerStoppedError",
    "RemoteQueueFullError",
    "RemoteTaskExistsError",
    "RemoteTaskNotFoundError",
    "RpcError",
    "ServerTLS",
    "ServiceUnavailableError",
    "StatusError",
    "StreamLimits",
    "StreamMetrics",
    "TaskInfo",
    "TaskRequest",
    "TaskResult",
    "WorkerClient",
    "WorkerServiceServicer",
    "grant_all",
    "serve",
    "server_port",
    "server_servicer",
)
