"""The server's Prometheus metrics, and the ASGI layer that records every request, including the ones that
fail with an unexpected exception (answered 500, counted, logged with their traceback)."""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.responses import JSONResponse

from mlcore.drift import METRIC_NAMES, SIGNALS
from mlcore.serving.bodies import CLIENT_GONE, SlowClient

log = logging.getLogger("mlcore.serving")
DRIFT_HELP = {  # `python -m mlcore.ops.drift` compares these with the training split's (mlcore.drift)
    "brightness": "Mean luma (BT.601, 0 black to 1 white) of each served image, at the model's input size",
    "long_side": "Longer side in pixels of each served image as it arrived (the encoded image's or the tensor's)",
    "pet_fraction": (
        "Share of each served image's predicted mask that is pet (at the input's size; at the model's when only "
        "the probabilities were asked for)"
    ),
}


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("mlcore_requests_total", "HTTP requests", ["endpoint", "status"], registry=registry)
        self.latency = Histogram(
            "mlcore_request_seconds",
            "Request latency, from the request reaching the app to the end of the response",
            ["endpoint"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.internal_errors = Counter(
            "mlcore_internal_errors_total", "Requests that raised an unexpected exception (500)", registry=registry
        )
        self.images = Counter("mlcore_images_total", "Images segmented", registry=registry)
        self.batch_size = Histogram(
            "mlcore_batch_size",
            "Images per model call (dynamic batching)",
            registry=registry,
            buckets=(1, 2, 4, 8, 16, 32, 64),
        )
        self.drift = {
            signal: Histogram(name, DRIFT_HELP[signal], registry=registry, buckets=SIGNALS[signal])
            for signal, name in METRIC_NAMES.items()
        }

    def observe_served(self, signals: dict[str, list[float]]) -> None:
        """Each served image's drift signals: only images the server answered, so errors do not skew them."""
        for signal, values in signals.items():
            for value in values:
                self.drift[signal].observe(value)


class MeasuredApp:
    """ASGI middleware: latency and status of every HTTP request; an exception becomes a counted 500."""

    def __init__(self, app, metrics: ServerMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None

        async def recording_send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        except SlowClient as exc:  # the response had started; the connection is dropped (bodies.SentInSlices)
            log.info("%s %s: %s", scope["method"], scope["path"][:200], exc)
            status = CLIENT_GONE
        except Exception:
            log.exception("internal error on %s %s", scope["method"], scope["path"][:200])
            self.metrics.internal_errors.inc()
            if status is None:
                await JSONResponse({"error": "internal server error; see the server's log"}, 500)(scope, receive, send)
            status = 500
        finally:
            route = scope.get("route")
            endpoint = route.path if route else "unmatched"
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
