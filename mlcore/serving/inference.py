"""One inference request from body to response body, in the two halves that run off the event loop: before
the model (parse, budget, decode, resize) and after it (back to each input's size, mask, encode).

The budget is checked between parsing and decoding: the sizes come from the tensor's shape or the images'
headers, so a request over budget is refused before it costs memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlcore import drift
from mlcore.serving.errors import RequestError
from mlcore.serving.images import at_size, decode, mask_at_size, mask_of, open_image, to_model_size
from mlcore.serving.limits import Limits
from mlcore.serving.protocol import InferRequest, RequestedOutput, encode_infer_response, parse_infer_request


@dataclass(frozen=True)
class Job:
    """What a request keeps while it waits for the model: small (the body and decoded images are gone)."""

    outputs: tuple[RequestedOutput, ...]
    id: str | None
    height: int
    width: int
    model_input: np.ndarray  # uint8 [N, S, S, 3], a copy
    response_bytes: int  # an upper bound of the response's size


def prepare(body: bytes, header_length: str | None, limits: Limits, image_size: int, classes: int) -> Job:
    request = parse_infer_request(body, header_length, limits)
    if request.pixels is not None:
        count, height, width = request.pixels.shape[:3]
        size = _check_budget(request, limits, count, height, width, classes)
        return Job(request.outputs, request.id, height, width, to_model_size(request.pixels, image_size), size)
    assert request.encoded is not None
    opened = [open_image(data, f"image_bytes[{i}]", limits) for i, data in enumerate(request.encoded)]
    sizes = sorted({image.size for image in opened})
    if len(sizes) > 1:
        raise RequestError(f"images of different sizes {sizes} cannot form one output tensor; send them apart")
    (width, height), count = sizes[0], len(opened)
    size = _check_budget(request, limits, count, height, width, classes)
    decoded = [decode(image, f"image_bytes[{i}]") for i, image in enumerate(opened)]
    return Job(request.outputs, request.id, height, width, to_model_size(decoded, image_size), size)


def _check_budget(request: InferRequest, limits: Limits, count: int, height: int, width: int, classes: int) -> int:
    pixels = count * height * width
    per_pixel = {"mask": ("UINT8", 1), "probabilities": ("FP32", classes)}
    return limits.check_budget(
        pixels, [(per_pixel[o.name][0], pixels * per_pixel[o.name][1], o.binary) for o in request.outputs]
    )


def finish(job: Job, probabilities: np.ndarray, head: dict) -> tuple[list[bytes], dict, dict[str, list[float]]]:
    """The model's [N, S, S, C] probabilities -> the response body's parts and headers at the input's size,
    and each image's drift signals. When the probabilities are asked for, they are resized once and the mask
    is their argmax (the same bits mask_at_size gives); the mask alone skips resizing them all."""
    names = {output.name for output in job.outputs}
    arrays = {}
    if "probabilities" in names:
        arrays["probabilities"] = at_size(probabilities, job.height, job.width)
    if "mask" in names:
        resized = arrays.get("probabilities")
        arrays["mask"] = mask_of(resized) if resized is not None else mask_at_size(probabilities, job.height, job.width)
    if job.id is not None:
        head = {**head, "id": job.id}
    parts, headers = encode_infer_response(head, [(output, arrays[output.name]) for output in job.outputs])
    return parts, headers, drift_signals(job, probabilities, arrays.get("mask"))


def drift_signals(job: Job, probabilities: np.ndarray, mask: np.ndarray | None) -> dict[str, list[float]]:
    """Each image's signals (mlcore.drift) from what the request computed anyway: the brightness of its
    model-sized pixels (a resize barely moves a mean, and they are fewer), its long side as it arrived, and
    the pet share of the returned mask, or of the model-sized argmax when only the probabilities were asked."""
    labels = mask if mask is not None else mask_of(probabilities)
    return {
        "brightness": [drift.brightness(image) for image in job.model_input],
        "long_side": [float(max(job.height, job.width))] * len(job.model_input),
        "pet_fraction": [drift.pet_fraction(image) for image in labels],
    }
