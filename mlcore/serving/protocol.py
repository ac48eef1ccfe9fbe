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
import struct
from dataclasses import dataclass

import numpy as np
import orjson

from mlcore.serving.errors import BadInput

HEADER_LENGTH = "inference-header-content-length"
OUTPUT_TYPES = {"mask": "UINT8", "probabilities": "FP32"}
DEFAULT_OUTPUTS = ("mask",)
MAX_ID_LENGTH = 256


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    pixels: np.ndarray | None  # `image`: uint8 [N, H, W, 3]
    encoded: list[bytes] | None  # `image_bytes`: N encoded images
    outputs: tuple[RequestedOutput, ...]
    id: str | None


def parse_json(data: bytes, where: str = "the body") -> object:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadInput(f"{where} is not valid JSON ({exc})") from None


def _field(mapping: dict, key: str, kind: type | tuple[type, ...], where: str, required: bool = True):
    if key not in mapping:
        if required:
            raise BadInput(f"{where}: missing field {key!r}")
        return None
    value = mapping[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise BadInput(f"{where}: field {key!r} must be {expected}, got {type(value).__name__}")
    return value


def _shape(tensor: dict, where: str) -> list[int]:
    shape = _field(tensor, "shape", list, where)
    if not all(type(d) is int and d >= 0 for d in shape):
        raise BadInput(f"{where}: shape must be a list of non-negative integers, got {shape!r}")
    return shape


def parse_infer_request(body: bytes, header_length: str | None) -> InferRequest:
    """The request's JSON header and binary tail -> typed inputs and requested outputs (nothing decoded yet)."""
    binary = b""
    if header_length is not None:
        if not header_length.isdigit() or not 0 < int(header_length) <= len(body):
            raise BadInput(f"Inference-Header-Content-Length {header_length!r} must be an integer between 1 and "
                           f"the body's length ({len(body)})")  # fmt: skip
        body, binary = body[: int(header_length)], memoryview(body)[int(header_length) :]
    request = parse_json(body)
    if not isinstance(request, dict):
        raise BadInput("the body must be a JSON object (Open Inference Protocol inference request)")
    request_id = _field(request, "id", str, "request", required=False)
    if request_id is not None and len(request_id) > MAX_ID_LENGTH:
        raise BadInput(f"request: id is longer than {MAX_ID_LENGTH} characters")
    parameters = _field(request, "parameters", dict, "request", required=False) or {}
    binary_default = _field(parameters, "binary_data_output", bool, "request parameters", required=False) or False
    inputs = _field(request, "inputs", list, "request")
    if len(inputs) != 1:
        raise BadInput("request: send exactly one input tensor, 'image' (UINT8) or 'image_bytes' (BYTES)")
    if not isinstance(inputs[0], dict):
        raise BadInput(f"request: inputs[0] must be an object, got {type(inputs[0]).__name__}")
    pixels, encoded, used = _parse_input(inputs[0], binary)
    if used != len(binary):
        raise BadInput(f"the body carries {len(binary) - used} bytes after the tensors' binary data")
    return InferRequest(pixels, encoded, _parse_outputs(request, binary_default), request_id)


def _parse_input(tensor: dict, binary: memoryview | bytes) -> tuple[np.ndarray | None, list[bytes] | None, int]:
    name = _field(tensor, "name", str, "input")
    where = f"input {name!r}"
    datatype = _field(tensor, "datatype", str, where)
    shape = _shape(tensor, where)
    parameters = _field(tensor, "parameters", dict, where, required=False) or {}
    size = _field(parameters, "binary_data_size", int, f"{where} parameters", required=False)
    if (size is None) == ("data" not in tensor):
        raise BadInput(f"{where}: give either 'data' or 'parameters.binary_data_size' (binary extension), not both")
    if size is not None and (size < 0 or size > len(binary)):
        raise BadInput(f"{where}: binary_data_size {size} but the body holds {len(binary)} bytes after the header")
    if name == "image":
        if datatype != "UINT8":
            raise BadInput(f"{where}: datatype {datatype}, expected UINT8 (pixel values 0..255)")
        if len(shape) != 4 or shape[3] != 3:
            raise BadInput(f"{where}: shape {shape}, expected [N, H, W, 3]")
        pixels = (
            _uint8(tensor.get("data"), shape, where) if size is None else _uint8_binary(binary[:size], shape, where)
        )
        return pixels, None, size or 0
    if name == "image_bytes":
        if datatype != "BYTES":
            raise BadInput(f"{where}: datatype {datatype}, expected BYTES")
        if len(shape) != 1:
            raise BadInput(f"{where}: shape {shape}, expected [N]")
        items = _base64_items(tensor.get("data"), where) if size is None else _bytes_binary(binary[:size], where)
        if len(items) != shape[0]:
            raise BadInput(f"{where}: {len(items)} elements for shape {shape}")
        return None, items, size or 0
    raise BadInput(f"unknown input {name!r}; expected 'image' (UINT8) or 'image_bytes' (BYTES)")


def _uint8(data: object, shape: list[int], where: str) -> np.ndarray:
    """JSON integers only: not floats (1.7), strings ("7"), booleans or anything outside 0..255."""
    expected = math.prod(shape)
    if not isinstance(data, list):
        raise BadInput(f"{where}: data must be a list of integers 0..255")
    try:
        flat = np.asarray(data, dtype=object).reshape(-1).tolist()
    except ValueError:
        raise BadInput(f"{where}: data is not a regular (flat or nested) list") from None
    if len(flat) != expected:
        raise BadInput(f"{where}: {len(flat)} values for shape {shape} ({expected} expected)")
    if not all(type(value) is int for value in flat):
        raise BadInput(f"{where}: data must be integers 0..255 (no floats, strings, booleans or lists)")
    if flat and (min(flat) < 0 or max(flat) > 255):
        raise BadInput(f"{where}: values must lie in 0..255")
    return np.array(flat, dtype=np.uint8).reshape(shape)


def _uint8_binary(data: memoryview | bytes, shape: list[int], where: str) -> np.ndarray:
    expected = math.prod(shape)
    if len(data) != expected:
        raise BadInput(f"{where}: {len(data)} bytes of binary data for shape {shape} ({expected} expected)")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def _base64_items(data: object, where: str) -> list[bytes]:
    if not isinstance(data, list):
        raise BadInput(f"{where}: data must be a list of base64 strings")
    return [base64_bytes(item, f"{where}: element {index}") for index, item in enumerate(data)]


def base64_bytes(item: object, where: str) -> bytes:
    if not isinstance(item, str):
        raise BadInput(f"{where} must be a base64 string, got {type(item).__name__}")
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput(f"{where} is not valid base64") from None


def _bytes_binary(data: memoryview | bytes, where: str) -> list[bytes]:
    """BYTES elements in the binary extension: a 4-byte little-endian length, then that many bytes, repeated."""
    items, offset = [], 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise BadInput(f"{where}: binary data ends inside element {len(items)}'s length prefix")
        (length,) = struct.unpack_from("<I", data, offset)
        if offset + 4 + length > len(data):
            raise BadInput(f"{where}: element {len(items)} declares {length} bytes, beyond the binary data")
        items.append(bytes(data[offset + 4 : offset + 4 + length]))
        offset += 4 + length
    return items


def _parse_outputs(request: dict, binary_default: bool) -> tuple[RequestedOutput, ...]:
    outputs = _field(request, "outputs", list, "request", required=False)
    if not outputs:
        return tuple(RequestedOutput(name, binary_default) for name in DEFAULT_OUTPUTS)
    parsed = []
    for index, output in enumerate(outputs):
        where = f"outputs[{index}]"
        if not isinstance(output, dict):
            raise BadInput(f'{where} must be an object like {{"name": "mask"}}, got {type(output).__name__}')
        name = _field(output, "name", str, where)
        if name not in OUTPUT_TYPES:
            raise BadInput(f"unknown output {name!r}; available: {list(OUTPUT_TYPES)}")
        parameters = _field(output, "parameters", dict, where, required=False) or {}
        binary = _field(parameters, "binary_data", bool, f"{where} parameters", required=False)
        parsed.append(RequestedOutput(name, binary_default if binary is None else binary))
    if len({output.name for output in parsed}) != len(parsed):
        raise BadInput("request: an output is named twice")
    return tuple(parsed)


def encode_infer_response(head: dict, tensors: list[tuple[RequestedOutput, np.ndarray]]) -> tuple[bytes, dict]:
    """The response body and its headers: JSON, or the JSON header then the binary outputs in order."""
    outputs, tail = [], []
    for output, array in tensors:
        tensor = {"name": output.name, "datatype": OUTPUT_TYPES[output.name], "shape": list(array.shape)}
        if output.binary:
            raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            tail.append(raw)
            tensor["parameters"] = {"binary_data_size": len(raw)}
        else:
            tensor["data"] = array.reshape(-1)
        outputs.append(tensor)
    header = orjson.dumps({**head, "outputs": outputs}, option=orjson.OPT_SERIALIZE_NUMPY)
    if not tail:
        return header, {"content-type": "application/json"}
    headers = {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
    return b"".join([header, *tail]), headers
