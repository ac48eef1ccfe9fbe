"""The HTTP server: Open Inference Protocol (V2) endpoints, a feedback endpoint and Prometheus metrics.

The event loop routes, streams bodies in and sends responses; parsing, decoding and encoding run on a small
thread pool, the model on its own thread behind the dynamic batcher, feedback writes on threads of their own.
Health and metrics stay responsive under load (bench/serving_load.py measures it); what can still hold the
loop is bounded: a JSON body is at most `Limits.max_json_body_bytes` for orjson to parse.
Every bad request gets a 4xx with {"error": message} (the V2 error body) and never affects the next one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException

from mlcore.serving import inference
from mlcore.serving.admission import ByteBudget
from mlcore.serving.batcher import DynamicBatcher
from mlcore.serving.bodies import SentInSlices, received, require_content_type
from mlcore.serving.errors import RequestError
from mlcore.serving.feedback import FeedbackConfig, FeedbackStore, Sample, StorageUnavailable, parse_sample
from mlcore.serving.limits import MIB, Limits
from mlcore.serving.metrics import MeasuredApp, ServerMetrics
from mlcore.serving.model import ReleasedModel
from mlcore.serving.protocol import HEADER_LENGTH, parse_json
from mlcore.serving.quota import ClientQuota, client_key

log = logging.getLogger("mlcore.serving")
FEEDBACK_MAX_BODY = 16 * MIB
MAX_MESSAGE = 1000  # characters of an error message: it never echoes a large part of the request
JSON_TYPES = ("application/json",)
# Triton's clients send binary requests with no Content-Type, and JSON ones too: an inference request without
# one is taken (it changes nothing on the server); feedback, which writes, must say application/json.
INFER_JSON_TYPES = ("application/json", "")
INFER_BINARY_TYPES = ("application/octet-stream", "application/json", "")


@dataclass(frozen=True)
class Batching:
    max_batch: int = 32  # images per model call
    max_delay_s: float = 0.002  # how long a request reaching an idle model waits for others to join it
    workers: int = 2  # threads that parse, decode and encode; each holds at most one request's budget


DEFAULT_LIMITS = Limits()
DEFAULT_BATCHING = Batching()


def create_app(
    model: ReleasedModel,
    feedback: FeedbackConfig | None = None,
    limits: Limits = DEFAULT_LIMITS,
    batching: Batching = DEFAULT_BATCHING,
) -> FastAPI:
    app = FastAPI(title=f"{model.name} ({model.version})", docs_url=None, redoc_url=None, openapi_url=None)
    metrics = ServerMetrics()
    app.add_middleware(MeasuredApp, metrics=metrics)
    workers = ThreadPoolExecutor(batching.workers, thread_name_prefix="codec")
    batcher = DynamicBatcher(model.predict, batching.max_batch, batching.max_delay_s, metrics.batch_size.observe)
    buffered = ByteBudget(limits.max_buffered_bytes)
    head = {
        "model_name": model.name,
        "model_version": model.version,
        "parameters": {"git_commit": model.commit, "model_sha256": model.release["model_sha256"]},
    }
    extensions = ["binary_tensor_data", *(["feedback"] if feedback else [])]

    async def off_loop(function, *args):
        return await asyncio.get_running_loop().run_in_executor(workers, functools.partial(function, *args))

    def known(name: str, version: str | None) -> None:
        if name != model.name:
            raise RequestError(f"unknown model {name[:100]!r}; this server serves {model.name!r}", 404)
        if version is not None and version != model.version:
            raise RequestError(f"unknown version {version[:100]!r} of {name}; this server serves {model.version}", 404)

    @app.exception_handler(RequestError)
    async def refused(_: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"error": str(exc)[:MAX_MESSAGE]}, status_code=exc.status, headers=exc.headers)

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
    @app.get("/v2/models/{name}/versions/{version}")
    async def metadata(name: str, version: str | None = None) -> dict:
        known(name, version)
        return model.metadata()

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str | None = None) -> dict:
        known(name, version)
        return {"name": name, "ready": True}

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(name: str, request: Request, version: str | None = None) -> Response:
        known(name, version)
        header_length = request.headers.get(HEADER_LENGTH)
        binary = header_length is not None
        require_content_type(request, INFER_BINARY_TYPES if binary else INFER_JSON_TYPES)
        limit = limits.max_body_bytes if binary else limits.max_json_body_bytes
        async with received(request, limit, limits.body_timeout_s, buffered) as body:
            job = await off_loop(
                inference.prepare, body, header_length, limits, model.image_size, len(model.class_names)
            )
        probabilities = await batcher.predict(job.model_input)
        metrics.images.inc(len(job.model_input))
        held = await buffered.take(job.response_bytes)  # until the response is sent (or its deadline passed)
        try:
            parts, headers, signals = await off_loop(inference.finish, job, probabilities, head)
        except BaseException:
            buffered.give(held)
            raise
        metrics.observe_served(signals)
        return SentInSlices(parts, headers, limits.send_grace_s, limits.min_send_rate, lambda: buffered.give(held))

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if feedback:
        _feedback_route(app, model, feedback, limits, buffered, off_loop, known)
    else:

        @app.post("/v2/models/{name}/feedback")
        async def feedback_off(name: str) -> None:
            known(name, None)
            raise RequestError(
                "feedback is off on this server (it writes training data); the operator enables "
                "it with MLCORE_FEEDBACK_URL and MLCORE_FEEDBACK_TOKEN",
                404,
            )

    return app


def _feedback_route(
    app: FastAPI, model: ReleasedModel, feedback: FeedbackConfig, limits: Limits, buffered: ByteBudget, off_loop, known
) -> None:
    """POST /v2/models/{name}/feedback. The cheap checks come first (token, quota, type), so a caller without
    the token costs nothing; the quota counts stored samples; S3 writes have threads and a deadline of their
    own, so a stalled store answers 503 and never holds up inference."""
    store = FeedbackStore(feedback)
    quota = ClientQuota(feedback.per_hour)
    writers = ThreadPoolExecutor(2, thread_name_prefix="feedback")

    @app.post("/v2/models/{name}/feedback")
    async def give_feedback(name: str, request: Request) -> JSONResponse:
        known(name, None)
        if not feedback.authorized(request.headers.get("authorization")):
            raise RequestError("feedback needs `Authorization: Bearer <token>`", 401, {"www-authenticate": "Bearer"})
        client = client_key(request.client.host if request.client else None)
        if wait := quota.take(client):
            raise RequestError(
                f"{client} has stored its {feedback.per_hour} feedback samples for this hour; retry "
                f"in {math.ceil(wait)} s",
                429,
                {"retry-after": str(math.ceil(wait))},
            )
        try:
            sample = await receive_sample(request, client)
        except BaseException:
            quota.refund(client)  # the quota counts stored samples
            raise
        return JSONResponse({"sample": sample.id}, status_code=201)

    async def receive_sample(request: Request, client: str) -> Sample:
        require_content_type(request, JSON_TYPES)
        async with received(request, FEEDBACK_MAX_BODY, limits.body_timeout_s, buffered) as body:
            sample = await off_loop(lambda: parse_sample(parse_json(body), limits))
        metadata = {"model": model.name, "version": model.version, "client": client}
        write = asyncio.get_running_loop().run_in_executor(writers, store.put, sample, metadata)
        try:  # each S3 call is bounded (one attempt, its connect and read timeouts): this deadline is a backstop
            await asyncio.wait_for(write, timeout=store.longest_write_s + 5)
        except (StorageUnavailable, TimeoutError) as exc:
            log.warning("feedback not stored: %s", exc)
            raise RequestError("the feedback store is unavailable; retry later", 503, {"retry-after": "30"}) from None
        return sample
