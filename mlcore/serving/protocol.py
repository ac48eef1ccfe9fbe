"""The Open Inference Protocol (V2) as this server speaks it: requests parsed strictly, responses encoded.

Inputs (exactly one per request):
- `image`: UINT8 [N, H, W, 3], raw RGB pixels, as JSON integers (flat or nested `data`) or binary;
- `image_bytes`: BYTES [N], encoded JPEG or PNG images of any size, as base64 strings in JSON or binary.
Outputs: `mask` UINT8 [N, H, W] (the default) and `probabilities` FP32 [N, H, W, C] (only when asked for),
at the input's size, as JSON or binary.

The binary tensor data extension is Triton's and KServe's: the body is the JSON header followed by the raw
tensor bytes in input order, the `Inference-Header-Content-Length` header gives the JSON's length, an input
says `"parameters": {"binary_data_size": n}` instead of `data`, BYTES elements are each prefixed by a 4-byte
little-endian length, and an output is returned binary when it asks for `"binary_data": true` or the
request for `"binary_data_output": true`.

Every field is type-checked: JSON that is valid but of the wrong shape is a 400 naming the field, never an
exception deeper down. orjson parses (no NaN or Infinity; big integers become floats and are refused).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
from dataclasses import dataclass

import numpy as np
import orjson

from mlcore.serving.errors import RequestError
from mlcore.serving.limits import Limits

HEADER_LENGTH = "inference-header-content-length"
OUTPUT_TYPES = {"mask": "UINT8", "probabilities": "FP32"}
DEFAULT_OUTPUTS = ("mask",)
MAX_ID_LENGTH = 256
# lists and objects in one JSON body: each costs orjson an allocation while it holds the GIL (and health waits);
# nested pixel data of a 256x256 image takes 66k, flat data of any size one
MAX_CONTAINERS = 100_000


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    pixels: np.ndarray | None  # `image`: uint8 [N, H, W, 3]
    encoded: list[bytes | memoryview] | None  # `image_bytes`: N encoded images
    outputs: tuple[RequestedOutput, ...]
    id: str | None


def parse_json(data: bytes, where: str = "the body") -> object:
    if data.count(b"[") + data.count(b"{") > MAX_CONTAINERS:
        raise RequestError(
            f"{where} holds more than {MAX_CONTAINERS} JSON lists and objects: send tensor data "
            "flat (row-major), or binary"
        )
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"{where} is not valid JSON ({str(exc)[:200]})") from None


def shown(value: object) -> str:
    """A value for an error message, cut short: a message never echoes a megabyte of the request."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _field(mapping: dict, key: str, kind: type, where: str, required: bool = True):
    if key not in mapping:
        if required:
            raise RequestError(f"{where}: missing field {key!r}")
        return None
    value = mapping[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise RequestError(f"{where}: field {key!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def parse_infer_request(body: bytes, header_length: str | None, limits: Limits) -> InferRequest:
    """The request's JSON header and binary tail -> typed inputs and requested outputs. The batch and image
    sizes are checked from the shape before any data is read, so no count in a request can cost memory."""
    binary = b""
    if header_length is not None:
        if not re.fullmatch(r"[0-9]{1,12}", header_length) or not 0 < int(header_length) <= len(body):
            raise RequestError(
                f"Inference-Header-Content-Length {shown(header_length)} must be an integer between "
                f"1 and the body's length ({len(body)})"
            )
        body, binary = body[: int(header_length)], memoryview(body)[int(header_length) :]
    request = parse_json(body)
    if not isinstance(request, dict):
        raise RequestError("the body must be a JSON object (Open Inference Protocol inference request)")
    request_id = _field(request, "id", str, "request", required=False)
    if request_id is not None and len(request_id) > MAX_ID_LENGTH:
        raise RequestError(f"request: id is longer than {MAX_ID_LENGTH} characters")
    parameters = _field(request, "parameters", dict, "request", required=False) or {}
    binary_default = _field(parameters, "binary_data_output", bool, "request parameters", required=False) or False
    inputs = _field(request, "inputs", list, "request")
    if len(inputs) != 1:
        raise RequestError("request: send exactly one input tensor, 'image' (UINT8) or 'image_bytes' (BYTES)")
    if not isinstance(inputs[0], dict):
        raise RequestError(f"request: inputs[0] must be an object, got {type(inputs[0]).__name__}")
    pixels, encoded, used = _parse_input(inputs[0], binary, limits)
    if used != len(binary):
        raise RequestError(f"the body carries {len(binary) - used} bytes after the tensors' binary data")
    return InferRequest(pixels, encoded, _parse_outputs(request, binary_default), request_id)


def _parse_input(tensor: dict, binary: memoryview | bytes, limits: Limits):
    name = _field(tensor, "name", str, "input")
    where = f"input {shown(name)}"
    datatype = _field(tensor, "datatype", str, where)
    shape = _field(tensor, "shape", list, where)
    if len(shape) > 4 or not all(type(d) is int and d >= 0 for d in shape):
        raise RequestError(f"{where}: shape must be a list of up to 4 non-negative integers, got {shown(shape)}")
    parameters = _field(tensor, "parameters", dict, where, required=False) or {}
    size = _field(parameters, "binary_data_size", int, f"{where} parameters", required=False)
    if (size is None) == ("data" not in tensor):
        raise RequestError(f"{where}: give either 'data' or 'parameters.binary_data_size' (binary extension), not both")
    if size is not None and (size < 0 or size > len(binary)):
        raise RequestError(f"{where}: binary_data_size {size} but the body holds {len(binary)} bytes after the header")
    if name == "image":
        if datatype != "UINT8":
            raise RequestError(f"{where}: datatype {shown(datatype)}, expected UINT8 (pixel values 0..255)")
        if len(shape) != 4 or shape[3] != 3:
            raise RequestError(f"{where}: shape {shape}, expected [N, H, W, 3]")
        limits.check_batch(shape[0], where)
        limits.check_image(shape[2], shape[1], where)
        if size is None:
            return _uint8(tensor["data"], shape, where), None, 0
        return _uint8_binary(binary[:size], shape, where), None, size
    if name == "image_bytes":
        if datatype != "BYTES":
            raise RequestError(f"{where}: datatype {shown(datatype)}, expected BYTES")
        if len(shape) != 1:
            raise RequestError(f"{where}: shape {shape}, expected [N]")
        limits.check_batch(shape[0], where)
        if size is None:
            return None, _base64_items(tensor["data"], shape[0], where), 0
        return None, _bytes_binary(binary[:size], shape[0], where), size
    raise RequestError(f"unknown input {shown(name)}; expected 'image' (UINT8) or 'image_bytes' (BYTES)")


def _uint8(data: object, shape: list[int], where: str) -> np.ndarray:
    """JSON integers only, flat or nested as the shape (row-major): not floats (1.7), strings ("7"), booleans or
    anything outside 0..255. Flattened one level at a time in Python, each level's length checked against the
    shape before the next, so a wrong count stops early and the event loop keeps its turns."""
    values, expected = data, math.prod(shape)
    for depth in range(len(shape)):
        if not isinstance(values, list):
            raise RequestError(f"{where}: data must be a list of integers 0..255")
        if len(values) == expected:
            break
        nested = [type(item) is list for item in values]
        if len(values) != math.prod(shape[: depth + 1]) or depth == len(shape) - 1 or not any(nested):
            raise RequestError(
                f"{where}: data of {len(values)} values at nesting level {depth + 1} does not fit "
                f"shape {shape} ({expected} values)"
            )
        if not all(nested):
            raise RequestError(f"{where}: data nests lists and values at the same level")
        if any(len(item) != shape[depth + 1] for item in values):
            raise RequestError(
                f"{where}: data nested at level {depth + 2} does not have {shape[depth + 1]} "
                "entries everywhere (ragged)"
            )
        values = [value for item in values for value in item]
    if not all(type(value) is int for value in values):
        raise RequestError(f"{where}: data must be integers 0..255 (no floats, strings, booleans or lists)")
    if min(values) < 0 or max(values) > 255:
        raise RequestError(f"{where}: values must lie in 0..255")
    return np.array(values, dtype=np.uint8).reshape(shape)


def _uint8_binary(data: memoryview | bytes, shape: list[int], where: str) -> np.ndarray:
    expected = math.prod(shape)
    if len(data) != expected:
        raise RequestError(f"{where}: {len(data)} bytes of binary data for shape {shape} ({expected} expected)")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def _base64_items(data: object, count: int, where: str) -> list[bytes]:
    if not isinstance(data, list):
        raise RequestError(f"{where}: data must be a list of base64 strings")
    if len(data) != count:
        raise RequestError(f"{where}: {len(data)} elements for shape [{count}]")
    return [base64_bytes(item, f"{where}: element {index}") for index, item in enumerate(data)]


def base64_bytes(item: object, where: str) -> bytes:
    if not isinstance(item, str):
        raise RequestError(f"{where} must be a base64 string, got {type(item).__name__}")
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"{where} is not valid base64") from None


def _bytes_binary(data: memoryview | bytes, count: int, where: str) -> list[memoryview]:
    """BYTES elements in the binary extension: a 4-byte little-endian length, then that many bytes, repeated.
    The elements are views into the body, not copies."""
    items, offset = [], 0
    while offset < len(data):
        if len(items) == count:
            raise RequestError(f"{where}: the binary data holds more than the {count} elements of the shape")
        if offset + 4 > len(data):
            raise RequestError(f"{where}: binary data ends inside element {len(items)}'s length prefix")
        (length,) = struct.unpack_from("<I", data, offset)
        if offset + 4 + length > len(data):
            raise RequestError(f"{where}: element {len(items)} declares {length} bytes, beyond the binary data")
        items.append(data[offset + 4 : offset + 4 + length])
        offset += 4 + length
    if len(items) != count:
        raise RequestError(f"{where}: {len(items)} elements for shape [{count}]")
    return items


def _parse_outputs(request: dict, binary_default: bool) -> tuple[RequestedOutput, ...]:
    outputs = _field(request, "outputs", list, "request", required=False)
    if not outputs:
        return tuple(RequestedOutput(name, binary_default) for name in DEFAULT_OUTPUTS)
    if len(outputs) > len(OUTPUT_TYPES):
        raise RequestError(f"request: {len(outputs)} outputs asked for; available: {list(OUTPUT_TYPES)}")
    parsed = []
    for index, output in enumerate(outputs):
        where = f"outputs[{index}]"
        if not isinstance(output, dict):
            raise RequestError(f'{where} must be an object like {{"name": "mask"}}, got {type(output).__name__}')
        name = _field(output, "name", str, where)
        if name not in OUTPUT_TYPES:
            raise RequestError(f"unknown output {shown(name)}; available: {list(OUTPUT_TYPES)}")
        parameters = _field(output, "parameters", dict, where, required=False) or {}
        binary = _field(parameters, "binary_data", bool, f"{where} parameters", required=False)
        parsed.append(RequestedOutput(name, binary_default if binary is None else binary))
    if len({output.name for output in parsed}) != len(parsed):
        raise RequestError("request: an output is named twice")
    return tuple(parsed)


def encode_infer_response(head: dict, tensors: list[tuple[RequestedOutput, np.ndarray]]) -> tuple[list, dict]:
    """The response body's parts and its headers: JSON, or the JSON header then the binary outputs in order
    (each the array's own memory: nothing is copied into one body)."""
    outputs, tail = [], []
    for output, array in tensors:
        tensor = {"name": output.name, "datatype": OUTPUT_TYPES[output.name], "shape": list(array.shape)}
        if output.binary:
            raw = memoryview(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))).cast("B")
            tail.append(raw)
            tensor["parameters"] = {"binary_data_size": len(raw)}
        else:
            tensor["data"] = array.reshape(-1)
        outputs.append(tensor)
    header = orjson.dumps({**head, "outputs": outputs}, option=orjson.OPT_SERIALIZE_NUMPY)
    if not tail:
        return [header], {"content-type": "application/json"}
    return [header, *tail], {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
