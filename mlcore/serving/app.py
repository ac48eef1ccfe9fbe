"""The HTTP server: Open Inference Protocol (V2) endpoints, a feedback endpoint and Prometheus metrics.

The event loop only routes and streams bodies in: parsing, decoding and encoding run on a small thread pool,
the model on its own thread behind the dynamic batcher, so health and metrics answer at once under any load.
Every bad request gets a 4xx with {"error": message} (the V2 error body) and never affects the next one.
"""

from __future__ import annotations

import asyncio
import functools
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException

from mlcore.serving import inference
from mlcore.serving.batcher import DynamicBatcher
from mlcore.serving.errors import BadInput
from mlcore.serving.feedback import FeedbackConfig, FeedbackStore, parse_sample
from mlcore.serving.limits import MIB, Limits
from mlcore.serving.metrics import MeasuredApp, ServerMetrics
from mlcore.serving.model import ReleasedModel
from mlcore.serving.protocol import HEADER_LENGTH, parse_json
from mlcore.serving.quota import ClientQuota

FEEDBACK_MAX_BODY = 16 * MIB


@dataclass(frozen=True)
class Batching:
    max_batch: int = 32  # images per model call
    max_delay_s: float = 0.002  # how long a request reaching an idle model waits for others to join it
    workers: int = 2  # threads that parse, decode and encode; each holds at most one request's budget


async def read_body(request: Request, limits: Limits) -> bytes:
    """The body, counted as it streams in: a chunked upload cannot bypass the limit the way Content-Length can."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise BadInput(f"request body of {declared} bytes exceeds {limits.max_body_bytes}", 413)
    chunks, size = [], 0
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limits.max_body_bytes:
                    raise BadInput(f"request body exceeds {limits.max_body_bytes} bytes", 413)
                chunks.append(chunk)
    except TimeoutError:
        raise BadInput(f"the request body did not arrive within {limits.body_timeout_s:g} s", 408) from None
    return b"".join(chunks)


def require_content_type(request: Request, binary: bool) -> None:
    """JSON must say application/json: a browser can send text/plain or a form cross-origin without asking
    (no CORS preflight). The binary extension's own header already forces a preflight."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    allowed = ("", "application/octet-stream", "application/json") if binary else ("application/json",)
    if kind not in allowed:
        raise BadInput(f"Content-Type {kind or '(none)'} is not accepted: send application/json, or binary tensors "
                       "with the Inference-Header-Content-Length header (application/octet-stream)", 415)  # fmt: skip


DEFAULT_LIMITS = Limits()
DEFAULT_BATCHING = Batching()


def create_app(model: ReleasedModel, feedback: FeedbackConfig | None = None, limits: Limits = DEFAULT_LIMITS,
               batching: Batching = DEFAULT_BATCHING) -> FastAPI:  # fmt: skip
    app = FastAPI(title=f"{model.name} ({model.version})", docs_url=None, redoc_url=None, openapi_url=None)
    metrics = ServerMetrics()
    app.add_middleware(MeasuredApp, metrics=metrics)
    workers = ThreadPoolExecutor(batching.workers, thread_name_prefix="codec")
    batcher = DynamicBatcher(model.predict, batching.max_batch, batching.max_delay_s, metrics.batch_size.observe)
    store = FeedbackStore(feedback) if feedback else None
    quota = ClientQuota(feedback.per_hour) if feedback else None
    head = {"model_name": model.name, "model_version": model.version,
            "parameters": {"git_commit": model.commit, "model_sha256": model.release["model_sha256"]}}  # fmt: skip
    extensions = ["binary_tensor_data", *(["feedback"] if feedback else [])]

    async def off_loop(function, *args):
        return await asyncio.get_running_loop().run_in_executor(workers, functools.partial(function, *args))

    def known(name: str) -> None:
        if name != model.name:
            raise BadInput(f"unknown model {name!r}; this server serves {model.name!r}", 404)

    @app.exception_handler(BadInput)
    async def bad_input(_: Request, exc: BadInput) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.get("/v2/health/live")
    async def live() -> dict:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> dict:
        return {"ready": True}

    @app.get("/v2")
    async def server_metadata() -> dict:
        return {"name": "mlcore", "version": model.version, "extensions": extensions}

    @app.get("/v2/models/{name}")
    async def metadata(name: str) -> dict:
        known(name)
        return model.metadata()

    @app.get("/v2/models/{name}/ready")
    async def model_ready(name: str) -> dict:
        known(name)
        return {"name": name, "ready": True}

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> Response:
        known(name)
        header_length = request.headers.get(HEADER_LENGTH)
        require_content_type(request, binary=header_length is not None)
        body = await read_body(request, limits)
        job = await off_loop(inference.prepare, body, header_length, limits, model.image_size, len(model.class_names))
        del body
        probabilities = await batcher.predict(job.model_input)
        metrics.images.inc(len(job.model_input))
        content, headers = await off_loop(inference.finish, job, probabilities, head)
        return Response(content, headers=headers)

    @app.post("/v2/models/{name}/feedback")
    async def give_feedback(name: str, request: Request) -> JSONResponse:
        known(name)
        if feedback is None or store is None or quota is None:
            raise BadInput("feedback is off on this server (it writes training data); the operator enables it "
                           "with MLCORE_FEEDBACK_URL and MLCORE_FEEDBACK_TOKEN", 404)  # fmt: skip
        if not feedback.authorized(request.headers.get("authorization")):
            raise BadInput("feedback needs `Authorization: Bearer <token>`", 401, {"www-authenticate": "Bearer"})
        client = request.client.host if request.client else "unknown"
        if wait := quota.take(client):
            raise BadInput(f"{client} has sent its {feedback.per_hour} feedback samples for this hour; retry in "
                           f"{math.ceil(wait)} s", 429, {"retry-after": str(math.ceil(wait))})  # fmt: skip
        require_content_type(request, binary=False)
        body = await read_body(request, replace(limits, max_body_bytes=FEEDBACK_MAX_BODY))
        sample, note = await off_loop(lambda: parse_sample(parse_json(body), limits))
        await off_loop(store.put, sample, {"model": model.name, "version": model.version, "note": note})
        return JSONResponse({"sample": sample.id}, status_code=201)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
