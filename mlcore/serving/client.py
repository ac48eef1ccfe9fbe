"""A client's side of the binary tensor extension: build a request, read a response (numpy in, numpy out).

For scripts, benchmarks and tests; any Triton or KServe V2 client speaks the same protocol.
"""

from __future__ import annotations

import struct

import numpy as np
import orjson

from mlcore.serving.protocol import HEADER_LENGTH

DATATYPES = {"UINT8": np.uint8, "FP32": np.float32}


def binary_request(
    pixels: np.ndarray | None = None, encoded: list[bytes] | None = None, outputs: tuple[str, ...] = ("mask",)
) -> tuple[bytes, dict[str, str]]:
    """A request for `pixels` (uint8 [N, H, W, 3]) or `encoded` JPEG/PNG images, all outputs binary."""
    if pixels is not None:
        name, datatype, shape = "image", "UINT8", list(pixels.shape)
        data = np.ascontiguousarray(pixels, np.uint8).tobytes()
    else:
        assert encoded is not None
        name, datatype, shape = "image_bytes", "BYTES", [len(encoded)]
        data = b"".join(struct.pack("<I", len(item)) + item for item in encoded)
    header = orjson.dumps(
        {
            "inputs": [
                {"name": name, "datatype": datatype, "shape": shape, "parameters": {"binary_data_size": len(data)}}
            ],
            "outputs": [{"name": output} for output in outputs],
            "parameters": {"binary_data_output": True},
        }
    )
    return header + data, {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(header))}


def read_response(content: bytes, headers) -> dict[str, np.ndarray]:
    """A response's outputs by name, JSON or binary."""
    length = int(headers.get(HEADER_LENGTH, len(content)))
    offset, arrays = length, {}
    for output in orjson.loads(content[:length])["outputs"]:
        dtype = DATATYPES[output["datatype"]]
        if "data" in output:
            arrays[output["name"]] = np.asarray(output["data"], dtype).reshape(output["shape"])
            continue
        size = output["parameters"]["binary_data_size"]
        arrays[output["name"]] = np.frombuffer(content[offset : offset + size], "<" + np.dtype(dtype).str[1:])
        arrays[output["name"]] = arrays[output["name"]].reshape(output["shape"])
        offset += size
    return arrays
