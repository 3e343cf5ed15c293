"""A connect given up while the WebSocket upgrade is in flight must not leave its socket open.

The server here is a bare TCP server that holds its answer to the upgrade request until the
test lets it go, so the client's cancellation (or deadline) lands exactly in the window where
picows itself would keep the socket: TCP up, handshake unanswered.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import picows
import pytest

from engine.connection import Attempt, ws_connect_owned

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@dataclass
class HeldUpgrade:
    """Answers one upgrade once `release` is set, then reports when the client hangs up."""

    requested: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    closed_by_client: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        self.requested.set()
        await self.release.wait()
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            b"\x81\x05hello"  # and a text frame nobody should parse
        )
        await writer.drain()
        while await reader.read(4096):
            pass
        self.closed_by_client.set()
        writer.close()


@pytest.fixture
async def held() -> AsyncIterator[HeldUpgrade]:
    state = HeldUpgrade()
    server = await asyncio.start_server(state.serve, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    yield state
    state.release.set()
    server.close()
    await server.wait_closed()


class Recorder(picows.WSListener):
    """A listener that knows nothing of attempts: closing is `ws_connect_owned`'s job."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        self.frames.append(frame.get_payload_as_bytes())


def _connect(held: HeldUpgrade, attempt: Attempt, timeout: float) -> asyncio.Task[object]:
    return asyncio.ensure_future(
        ws_connect_owned(
            attempt,
            picows.ws_connect(Recorder, f"ws://127.0.0.1:{held.port}/ws"),
            timeout,
        )
    )


async def test_cancelled_mid_handshake_the_socket_is_closed_when_the_answer_comes(
    held: HeldUpgrade,
) -> None:
    attempt = Attempt()
    task = _connect(held, attempt, timeout=30.0)
    await asyncio.wait_for(held.requested.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert attempt.abandoned
    held.release.set()  # the handshake now completes on a socket nobody owns
    await asyncio.wait_for(held.closed_by_client.wait(), 5)


async def test_deadline_mid_handshake_raises_and_the_socket_is_closed(held: HeldUpgrade) -> None:
    attempt = Attempt()
    task = _connect(held, attempt, timeout=0.2)
    with pytest.raises(TimeoutError):
        await task
    assert held.requested.is_set() and attempt.abandoned
    held.release.set()
    await asyncio.wait_for(held.closed_by_client.wait(), 5)


async def test_a_connect_that_completes_is_handed_over_open(held: HeldUpgrade) -> None:
    attempt = Attempt()
    held.release.set()
    transport, listener = await _connect(held, attempt, timeout=5.0)  # type: ignore[misc]
    assert not attempt.abandoned
    assert isinstance(listener, Recorder)
    for _ in range(500):  # bounded: the frame sent with the answer is parsed
        if listener.frames:
            break
        await asyncio.sleep(0.01)
    assert listener.frames == [b"hello"]
    assert not held.closed_by_client.is_set()
    transport.disconnect()
    await asyncio.wait_for(held.closed_by_client.wait(), 5)
