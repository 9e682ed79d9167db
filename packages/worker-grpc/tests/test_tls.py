"""TLS and mutual TLS with certificates made by the test (trustme); plaintext cannot talk to a TLS server."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import trustme
from conftest import ServeFactory, eventually
from worker_core import TaskManager, TaskStatus
from worker_grpc import ClientTLS, RpcError, ServerTLS, ServiceUnavailableError, TaskRequest, WorkerClient


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ServerTLS:
    cert = ca.issue_cert("localhost", "127.0.0.1")
    chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
    return ServerTLS(chain, cert.private_key_pem.bytes())


def client_tls(ca: trustme.CA, *, with_cert: bool = False) -> ClientTLS:
    if not with_cert:
        return ClientTLS(root_certificates=ca.cert_pem.bytes())
    cert = ca.issue_cert("client@example.com")
    chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
    return ClientTLS(ca.cert_pem.bytes(), chain, cert.private_key_pem.bytes())


async def works(client: WorkerClient, manager: TaskManager) -> None:
    task_id = await client.register_task(TaskRequest("string"), rpc_timeout=10)
    await eventually(lambda: manager.get_task(task_id).status is TaskStatus.COMPLETED)
    assert (await client.get_task(task_id, rpc_timeout=10)).status == "Completed"


async def refused(client: WorkerClient) -> None:
    with pytest.raises(RpcError) as caught:
        await client.register_task(TaskRequest("string"), rpc_timeout=10)
    assert isinstance(caught.value, ServiceUnavailableError)
    assert caught.value.code is grpc.StatusCode.UNAVAILABLE


async def test_tls_server_talks_to_a_client_that_trusts_its_ca(
    serve: ServeFactory, manager: TaskManager, server_tls: ServerTLS, ca: trustme.CA
) -> None:
    served = await serve(tls=server_tls)
    await works(served.client(tls=client_tls(ca)), manager)


async def test_plaintext_client_cannot_talk_to_a_tls_server(
    serve: ServeFactory, manager: TaskManager, server_tls: ServerTLS, ca: trustme.CA
) -> None:
    served = await serve(tls=server_tls)
    await refused(served.client())
    assert manager.get_tasks() == []
    await works(served.client(tls=client_tls(ca)), manager)  # still serving


async def test_client_that_does_not_trust_the_server_is_refused(
    serve: ServeFactory, manager: TaskManager, server_tls: ServerTLS
) -> None:
    served = await serve(tls=server_tls)
    await refused(served.client(tls=client_tls(trustme.CA())))
    assert manager.get_tasks() == []


async def test_mtls_requires_a_client_certificate(
    serve: ServeFactory, manager: TaskManager, server_tls: ServerTLS, ca: trustme.CA
) -> None:
    mtls = ServerTLS(server_tls.certificate_chain, server_tls.private_key, client_ca=ca.cert_pem.bytes())
    served = await serve(tls=mtls)
    await refused(served.client(tls=client_tls(ca)))  # no client certificate
    await refused(served.client(tls=client_tls(trustme.CA(), with_cert=True)))  # certificate from another CA
    await refused(served.client())  # plaintext
    assert manager.get_tasks() == []
    await works(served.client(tls=client_tls(ca, with_cert=True)), manager)


async def test_tls_from_pem_files(
    tmp_path: Path, serve: ServeFactory, manager: TaskManager, server_tls: ServerTLS, ca: trustme.CA
) -> None:
    paths = {name: tmp_path / f"{name}.pem" for name in ("chain", "key", "ca", "client_chain", "client_key")}
    paths["chain"].write_bytes(server_tls.certificate_chain)
    paths["key"].write_bytes(server_tls.private_key)
    ca.cert_pem.write_to_path(str(paths["ca"]))
    mine = client_tls(ca, with_cert=True)
    assert mine.certificate_chain is not None
    assert mine.private_key is not None
    paths["client_chain"].write_bytes(mine.certificate_chain)
    paths["client_key"].write_bytes(mine.private_key)
    served = await serve(tls=ServerTLS.from_files(paths["chain"], paths["key"], client_ca=paths["ca"]))
    tls = ClientTLS.from_files(paths["ca"], paths["client_chain"], paths["client_key"])
    await works(served.client(tls=tls), manager)
