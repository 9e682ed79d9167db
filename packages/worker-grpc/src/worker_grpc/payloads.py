"""The example payload messages of ``proto/worker/v1/payload.proto`` (used by the READMEs and examples)."""

from __future__ import annotations

from ._proto.worker.v1.payload_pb2 import CreateUserPayload as CreateUserPayload
from ._proto.worker.v1.payload_pb2 import CreateUserResponse as CreateUserResponse
from ._proto.worker.v1.payload_pb2 import SendEmailPayload as SendEmailPayload
from ._proto.worker.v1.payload_pb2 import SendEmailRequest as SendEmailRequest
from ._proto.worker.v1.payload_pb2 import SendEmailResponse as SendEmailResponse

__all__ = ("CreateUserPayload", "CreateUserResponse", "SendEmailPayload", "SendEmailRequest", "SendEmailResponse")
