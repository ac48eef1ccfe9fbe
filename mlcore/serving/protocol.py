"""Open Inference Protocol (V2) request and response tensors <-> numpy images and masks.

Inputs (one per request): `image`, UINT8 [N, H, W, 3] (raw pixels, row-major, nested or flat `data`), or
`image_bytes`, BYTES [N], each element a base64 string of an encoded JPEG or PNG of any size.
Outputs: `mask` UINT8 [N, H, W] and `probabilities` FP32 [N, H, W, C] (calibrated), at the input's size.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np

from mlcore.serving.model import BadInput, Limits, check_size, decode_image

OUTPUTS = ("mask", "probabilities")


def _tensor(request: dict) -> dict:
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list) or not request["inputs"]:
        raise BadInput('the body must be a JSON object with a non-empty "inputs" list (Open Inference Protocol)')
    if len(request["inputs"]) != 1:
        raise BadInput("send exactly one input tensor: 'image' (UINT8) or 'image_bytes' (BYTES)")
    tensor = request["inputs"][0]
    for field in ("name", "shape", "datatype", "data"):
        if field not in tensor:
            raise BadInput(f"input tensor: missing field {field!r}")
    return tensor


def _shape(tensor: dict) -> list[int]:
    shape = tensor["shape"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise BadInput(f"{tensor['name']}: shape must be a list of non-negative integers, got {shape!r}")
    return shape


def decode_images(request: dict, limits: Limits) -> list[np.ndarray]:
    tensor = _tensor(request)
    name, datatype, shape = tensor["name"], tensor["datatype"], _shape(tensor)
    if name == "image":
        if datatype != "UINT8":
            raise BadInput(f"image: datatype {datatype}, expected UINT8 (pixel values 0..255)")
        if len(shape) != 4 or shape[3] != 3:
            raise BadInput(f"image: shape {shape}, expected [N, H, W, 3]")
        _check_batch(shape[0], limits)
        check_size(shape[1], shape[2], 0, limits)
        try:
            values = np.asarray(tensor["data"], dtype=np.int64).reshape(-1)
        except (ValueError, TypeError) as exc:
            raise BadInput(f"image: data must be integers 0..255 ({exc})") from None
        if values.size != int(np.prod(shape)):
            raise BadInput(f"image: {values.size} values for shape {shape} ({int(np.prod(shape))} expected)")
        if values.size and (values.min() < 0 or values.max() > 255):
            raise BadInput("image: values must lie in 0..255")
        return list(values.astype(np.uint8).reshape(shape))
    if name == "image_bytes":
        if datatype != "BYTES":
            raise BadInput(f"image_bytes: datatype {datatype}, expected BYTES (base64 strings)")
        if len(shape) != 1 or not isinstance(tensor["data"], list) or len(tensor["data"]) != shape[0]:
            raise BadInput(f"image_bytes: shape {shape} must be [N] with N base64 strings in data")
        _check_batch(shape[0], limits)
        return [decode_image(_base64(item, i), i, limits) for i, item in enumerate(tensor["data"])]
    raise BadInput(f"unknown input {name!r}; expected 'image' (UINT8) or 'image_bytes' (BYTES)")


def _check_batch(size: int, limits: Limits) -> None:
    if size == 0:
        raise BadInput("the batch is empty")
    if size > limits.max_batch:
        raise BadInput(f"batch of {size} exceeds the limit of {limits.max_batch}; split the request", 413)


def _base64(item: object, index: int) -> bytes:
    if not isinstance(item, str):
        raise BadInput(f"image_bytes {index}: expected a base64 string")
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput(f"image_bytes {index}: not valid base64") from None


def requested_outputs(request: dict) -> list[str]:
    names = [o.get("name") for o in request.get("outputs") or []] or list(OUTPUTS)
    unknown = sorted(set(names) - set(OUTPUTS))
    if unknown:
        raise BadInput(f"unknown output(s) {unknown}; available: {list(OUTPUTS)}")
    return names


def encode_outputs(results: list[tuple[np.ndarray, np.ndarray]], names: list[str]) -> list[dict]:
    sizes = {mask.shape for mask, _ in results}
    if len(sizes) > 1:
        raise BadInput(f"images of different sizes {sorted(sizes)} cannot form one output tensor; send them apart")
    masks = np.stack([mask for mask, _ in results])
    probabilities = np.stack([probability for _, probability in results])
    tensors = {
        "mask": {"name": "mask", "datatype": "UINT8", "shape": list(masks.shape), "data": masks.ravel().tolist()},
        "probabilities": {"name": "probabilities", "datatype": "FP32", "shape": list(probabilities.shape),
                          "data": probabilities.ravel().tolist()},
    }  # fmt: skip
    return [tensors[name] for name in names]
