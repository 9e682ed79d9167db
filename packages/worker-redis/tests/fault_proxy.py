"""A loopback TCP proxy in front of a test's redis-server that delays or drops the server's replies.

``FaultProxy(upstream_port, delay=0.2)`` adds 200 ms to every reply (the client's round trip grows by that);
``drop_every=n`` swallows the n-th reply chunk of each connection and closes it, so the command ran on the
server but its caller never learns the answer (a lost reply: redis-py reconnects and re-sends the command).
Counted per connection, so a reconnect's handshake and its re-sent command always get through: counted
across connections, a command's every retry could land on a dropped reply (redis-py 8 sends several
handshake commands per connection) and the test measured the retry budget instead of lost replies.
It listens on 127.0.0.1 only and every connection it makes goes to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``upstream_port``, delaying or dropping server replies."""

    def __init__(self, upstream_port: int, *, delay: float = 0.0, drop_every: int = 0) -> None:
        self.upstream_port = upstream_port
        self.delay = delay
        self.drop_every = drop_every
        self.replies = 0  # reply chunks seen from the server
        self.dropped = 0  # reply chunks swallowed (each closed its connection)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        server = self._server
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.close()
        for pump in list(self._pumps):
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)

    def url(self, db: int = 0) -> str:
        """The redis URL that goes through this proxy."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            upstream_r, upstream_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_w.close()
            return
        self._writers |= {client_w, upstream_w}
        for pump in (self._forward(client_r, upstream_w, client_w), self._replies(upstream_r, client_w, upstream_w)):
            task = asyncio.get_running_loop().create_task(pump)
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _forward(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, other: asyncio.StreamWriter
    ) -> None:
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._close(writer, other)

    async def _replies(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, other: asyncio.StreamWriter
    ) -> None:
        seen = 0  # reply chunks of this connection
        try:
            while chunk := await reader.read(65536):
                self.replies += 1
                seen += 1
                if self.drop_every and seen % self.drop_every == 0:
                    self.dropped += 1
                    return  # the command ran; its reply never arrives and the connection goes away
                if self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(chunk)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._close(writer, other)

    def _close(self, *writers: asyncio.StreamWriter) -> None:
        for writer in writers:
            self._writers.discard(writer)
            writer.close()
