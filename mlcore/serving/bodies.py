"""Request bodies: which content types are taken, and reading a body as it streams in, within a size limit and
a deadline."""

from __future__ import annotations

import asyncio

from starlette.requests import ClientDisconnect, Request

from mlcore.serving.errors import RequestError

CLIENT_GONE = 499  # nginx's "client closed request": counted apart from the server's own errors


def require_content_type(request: Request, allowed: tuple[str, ...]) -> None:
    """A browser may send text/plain or a form cross-origin without a CORS preflight: JSON must not be taken
    from such a body. A compressed body is refused rather than inflated (a zip bomb costs nothing to send)."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind not in allowed:
        expected = " or ".join(repr(kind) if kind else "none" for kind in allowed)
        raise RequestError(f"Content-Type {kind or '(none)'} is not accepted here: send {expected}", 415)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise RequestError(f"Content-Encoding {encoding[:40]} is not accepted: send the body uncompressed", 415)


def declared_length(request: Request) -> int | None:
    declared = request.headers.get("content-length", "")
    return int(declared) if declared.isascii() and declared.isdigit() else None


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The body, counted as it streams in: a chunked upload cannot bypass the limit the way Content-Length can."""
    declared = declared_length(request)
    if declared is not None and declared > limit:
        raise RequestError(f"request body of {declared} bytes exceeds {limit}", 413)
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise RequestError(f"request body exceeds {limit} bytes", 413)
                chunks.append(chunk)
    except TimeoutError:
        raise RequestError(f"the request body did not arrive within {timeout_s:g} s", 408) from None
    except ClientDisconnect:
        raise RequestError("the client closed the connection before sending its body", CLIENT_GONE) from None
    return b"".join(chunks)
