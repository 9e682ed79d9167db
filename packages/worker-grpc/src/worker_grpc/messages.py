"""The ``worker.v1`` wire messages and stubs, for code that talks protobuf directly (go-worker style).

Import from here, never from ``worker_grpc._proto`` (generated, private).
"""

from __future__ import annotations

from ._proto.worker.v1.worker_pb2 import CancelTaskRequest as CancelTaskRequest
from ._proto.worker.v1.worker_pb2 import CancelTaskResponse as CancelTaskResponse
from ._proto.worker.v1.worker_pb2 import DurableTask as DurableTask
from ._proto.worker.v1.worker_pb2 import GetTaskRequest as GetTaskRequest
from ._proto.worker.v1.worker_pb2 import GetTaskResponse as GetTaskResponse
from ._proto.worker.v1.worker_pb2 import RegisterDurableTasksRequest as RegisterDurableTasksRequest
from ._proto.worker.v1.worker_pb2 import RegisterDurableTasksResponse as RegisterDurableTasksResponse
from ._proto.worker.v1.worker_pb2 import RegisterTasksRequest as RegisterTasksRequest
from ._proto.worker.v1.worker_pb2 import RegisterTasksResponse as RegisterTasksResponse
from ._proto.worker.v1.worker_pb2 import StreamResultsRequest as StreamResultsRequest
from ._proto.worker.v1.worker_pb2 import StreamResultsResponse as StreamResultsResponse
from ._proto.worker.v1.worker_pb2 import Task as Task
from ._proto.worker.v1.worker_pb2_grpc import WorkerServiceStub as WorkerServiceStub
from ._proto.worker.v1.worker_pb2_grpc import (
    add_WorkerServiceServicer_to_server as add_WorkerServiceServicer_to_server,
)

__all__ = (
    "CancelTaskRequest",
    "CancelTaskResponse",
    "DurableTask",
    "GetTaskRequest",
    "GetTaskResponse",
    "RegisterDurableTasksRequest",
    "RegisterDurableTasksResponse",
    "RegisterTasksRequest",
    "RegisterTasksResponse",
    "StreamResultsRequest",
    "StreamResultsResponse",
    "Task",
    "WorkerServiceStub",
    "add_WorkerServiceServicer_to_server",
)
