"""Request bodies in, responses out: which content types are taken, a body read as it streams within a size
limit, a deadline and the server's byte budget, and a response sent in slices within a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Callable

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mlcore.serving.admission import ByteBudget
from mlcore.serving.errors import RequestError

CLIENT_GONE = 499  # nginx's "client closed request": counted apart from the server's own errors
SLICE = 256 * 1024  # a response goes out this much at a time: the transport buffers little of it
DROP = "mlcore.drop_connection"  # the ASGI extension DroppableHttpTools offers


class SlowClient(Exception):
    """The client did not read its response within the deadline: the connection is dropped."""


def require_content_type(request: Request, allowed: tuple[str, ...]) -> None:
    """A browser may send text/plain or a form cross-origin without a CORS preflight: JSON must not be taken
    from such a body. A compressed body is refused rather than inflated (a zip bomb costs nothing to send)."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind not in allowed:
        expected = " or ".join(repr(kind) if kind else "none" for kind in allowed)
        raise RequestError(f"Content-Type {kind or '(none)'} is not accepted here: send {expected}", 415)
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise RequestError(f"Content-Encoding {encoding[:40]} is not accepted: send the body uncompressed", 415)


@contextlib.asynccontextmanager
async def received(request: Request, limit: int, timeout_s: float, budget: ByteBudget) -> AsyncIterator[bytes]:
    """The body, counted as it streams in (a chunked upload cannot bypass the limit the way Content-Length can)
    and charged to `budget` when its first byte arrives: its declared length, or the limit when it is chunked.
    The bytes go back when the block ends. The deadline covers waiting for the budget too: 503 if the server
    was the slow one, 408 if the client was."""
    header = request.headers.get("content-length", "")
    declared = int(header) if header.isascii() and header.isdigit() else None
    if declared is not None and declared > limit:
        raise RequestError(f"request body of {declared} bytes exceeds {limit}", 413)
    held = [0]
    share = limit if declared is None else declared
    try:
        body = await _read(request, limit, timeout_s, budget, share, held)
        yield body
    finally:
        budget.give(held[0])


async def _read(request: Request, limit: int, timeout_s: float, budget: ByteBudget, share: int, held: list[int]):
    chunks, size, waiting = [], 0, False
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                if not held[0] and chunk:
                    waiting = True
                    held[0] = await budget.take(share)
                    waiting = False
                size += len(chunk)
                if size > limit:
                    raise RequestError(f"request body exceeds {limit} bytes", 413)
                chunks.append(chunk)
    except TimeoutError:
        if waiting:
            raise RequestError("the server is busy; retry shortly", 503, {"retry-after": "1"}) from None
        raise RequestError(f"the request body did not arrive within {timeout_s:g} s", 408) from None
    except ClientDisconnect:
        raise RequestError("the client closed the connection before sending its body", CLIENT_GONE) from None
    return b"".join(chunks)


class SentInSlices(Response):
    """A response whose parts go out SLICE bytes at a time, then `done` runs (returning the response's bytes to
    the budget). A client that reads slower than `min_rate` bytes a second, after a grace of `grace_s`, is cut
    off: its connection dropped (reset, buffers discarded) where the server offers DROP."""

    def __init__(self, parts: list, headers: dict[str, str], grace_s: float, min_rate: float, done: Callable[[], None]):
        size = sum(len(part) for part in parts)
        super().__init__(headers={**headers, "content-length": str(size)})
        self.parts, self.deadline_s, self.done = parts, grace_s + size / min_rate, done

    async def __call__(self, scope, receive, send) -> None:
        try:
            async with asyncio.timeout(self.deadline_s):
                await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
                for part in self.parts:
                    view = memoryview(part)
                    for start in range(0, len(view), SLICE):
                        await send(
                            {"type": "http.response.body", "body": view[start : start + SLICE], "more_body": True}
                        )
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except TimeoutError:
            if drop := scope.get("extensions", {}).get(DROP):
                drop()
            raise SlowClient(f"the client did not read its response within {self.deadline_s:.0f} s") from None
        finally:
            self.done()


class DroppableHttpTools(HttpToolsProtocol):
    """uvicorn's HTTP protocol, offering each request a way to drop its connection: closing a connection whose
    client stopped reading would wait for it to read (uvicorn's close flushes first, and then the kernel
    still holds what the client has not taken); a reset frees both at once."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {DROP: self._reset}

    def _reset(self) -> None:
        connection = self.transport.get_extra_info("socket")
        if connection is not None:  # linger 0: close() sends a reset and discards the unsent bytes
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()
