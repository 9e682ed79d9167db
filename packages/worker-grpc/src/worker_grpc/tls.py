"""TLS and mutual TLS from PEM data or files, for :func:`~worker_grpc.serve` and the client channel."""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import final

import grpc

__all__ = ("ClientTLS", "ServerTLS")

_Pem = str | PathLike[str]


def _read(path: _Pem | None) -> bytes | None:
    return None if path is None else Path(path).read_bytes()


@final
@dataclass(frozen=True, slots=True)
class ServerTLS:
    """The server's certificate chain and private key, PEM.

    With ``client_ca``, clients must present a certificate signed by it (mutual TLS): a client without
    one cannot complete the handshake.
    """

    certificate_chain: bytes
    private_key: bytes
    client_ca: bytes | None = None

    @classmethod
    def from_files(cls, certificate_chain: _Pem, private_key: _Pem, client_ca: _Pem | None = None) -> ServerTLS:
        """Read the PEM files."""
        return cls(Path(certificate_chain).read_bytes(), Path(private_key).read_bytes(), _read(client_ca))

    def credentials(self) -> grpc.ServerCredentials:
        """``grpc.ssl_server_credentials`` for these files; client certificates required with ``client_ca``."""
        return grpc.ssl_server_credentials(
            [(self.private_key, self.certificate_chain)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )


@final
@dataclass(frozen=True, slots=True)
class ClientTLS:
    """What a client trusts and, for mutual TLS, who it is (PEM).

    ``root_certificates`` are the CAs the server's certificate must chain to (the system roots when
    ``None``); ``certificate_chain`` and ``private_key`` are the client's own, for mutual TLS.
    """

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None
    private_key: bytes | None = None

    @classmethod
    def from_files(
        cls,
        root_certificates: _Pem | None = None,
        certificate_chain: _Pem | None = None,
        private_key: _Pem | None = None,
    ) -> ClientTLS:
        """Read the PEM files."""
        return cls(_read(root_certificates), _read(certificate_chain), _read(private_key))

    def credentials(self) -> grpc.ChannelCredentials:
        """``grpc.ssl_channel_credentials`` for these files."""
        return grpc.ssl_channel_credentials(self.root_certificates, self.private_key, self.certificate_chain)
