"""The HTTP server: Open Inference Protocol (V2) endpoints, a feedback endpoint and Prometheus metrics.

Every bad request gets a 4xx with {"error": message} (the V2 error body) and never affects the next one.
"""

from __future__ import annotations

import base64
import binascii
import json
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.concurrency import run_in_threadpool

from mlcore.serving.feedback import FeedbackStore
from mlcore.serving.model import BadInput, Limits, ReleasedModel
from mlcore.serving.protocol import decode_images, encode_outputs, requested_outputs

MAX_BODY_BYTES = 64 * 1024 * 1024


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


DEFAULT_LIMITS = Limits()


def create_app(model: ReleasedModel, feedback: FeedbackStore | None = None, limits: Limits = DEFAULT_LIMITS) -> FastAPI:
    app = FastAPI(title=f"{model.name} ({model.version})", docs_url=None, redoc_url=None)
    registry = CollectorRegistry()
    requests = Counter("mlcore_requests_total", "HTTP requests", ["endpoint", "status"], registry=registry)
    latency = Histogram("mlcore_request_seconds", "Request latency", ["endpoint"], registry=registry,
                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))  # fmt: skip
    images = Counter("mlcore_images_total", "Images segmented", registry=registry)
    errors = Counter("mlcore_errors_total", "Requests answered with an error", ["status"], registry=registry)

    @app.middleware("http")
    async def measure(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        endpoint = route.path if route else "unmatched"
        requests.labels(endpoint, str(response.status_code)).inc()
        latency.labels(endpoint).observe(time.perf_counter() - started)
        if response.status_code >= 400:
            errors.labels(str(response.status_code)).inc()
        return response

    async def read_json(request: Request) -> dict:
        declared = int(request.headers.get("content-length") or 0)
        if declared > MAX_BODY_BYTES:
            raise BadInput(f"request body of {declared} bytes exceeds {MAX_BODY_BYTES}", 413)
        body = await request.body()
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadInput(f"the body is not valid JSON ({exc.__class__.__name__}: {exc})") from None

    def known(name: str) -> JSONResponse | None:
        if name != model.name:
            return _error(404, f"unknown model {name!r}; this server serves {model.name!r}")
        return None

    @app.exception_handler(BadInput)
    async def bad_input(_: Request, exc: BadInput) -> JSONResponse:
        return _error(exc.status, str(exc))

    @app.get("/v2/health/live")
    def live() -> dict:
        return {"live": True}

    @app.get("/v2/health/ready")
    def ready() -> dict:
        return {"ready": True}

    @app.get("/v2")
    def server_metadata() -> dict:
        return {"name": "mlcore", "version": model.version, "extensions": ["feedback"]}

    @app.get("/v2/models/{name}")
    def metadata(name: str):
        return known(name) or model.metadata()

    @app.get("/v2/models/{name}/ready")
    def model_ready(name: str):
        return known(name) or {"name": name, "ready": True}

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request):
        if missing := known(name):
            return missing
        body = await read_json(request)
        decoded = decode_images(body, limits)
        outputs = requested_outputs(body)
        results = await run_in_threadpool(model.predict, decoded)
        images.inc(len(decoded))
        response = {
            "model_name": model.name,
            "model_version": model.version,
            "outputs": encode_outputs(results, outputs),
            "parameters": {"git_commit": model.commit, "model_sha256": model.release["model_sha256"]},
        }
        if "id" in body:
            response["id"] = body["id"]
        return response

    @app.post("/v2/models/{name}/feedback")
    async def give_feedback(name: str, request: Request):
        if missing := known(name):
            return missing
        if feedback is None:
            return _error(503, "feedback storage is not configured (set MLCORE_FEEDBACK_URL=s3://bucket/prefix)")
        body = await read_json(request)
        try:
            image, mask = (base64.b64decode(body[key], validate=True) for key in ("image", "mask"))
        except (KeyError, TypeError, binascii.Error, ValueError):
            raise BadInput('feedback needs "image" (base64 JPEG/PNG) and "mask" (base64 PNG trimap 1/2/3)') from None
        sample = feedback.store(image, mask, {"model": model.name, "version": model.version,
                                              "note": str(body.get("note", ""))[:500]}, limits)  # fmt: skip
        return JSONResponse({"sample": sample}, status_code=201)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
