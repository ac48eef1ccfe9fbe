"""What one request may cost the server, checked before any image is decoded or the model runs.

The limits bound memory per request: a small PNG can declare 4096x4096 pixels (a decompression bomb), and
probabilities at the input's size as JSON numbers cost about 50 bytes per pixel. Pixels in and bytes out are
both known from the request's shape or the images' headers, so an over-budget request is refused after
reading its body (bounded, counted as it streams) and parsing its JSON (bounded more tightly: parsing costs
memory and CPU in proportion), before anything is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlcore.serving.errors import RequestError

MIB = 1024 * 1024
# upper bounds of one value's size in a response: a UINT8 as JSON is at most "255,", an FP32 (orjson's
# shortest round-trip form) at most "-0.0000012345678," (17 characters); binary is the type's own size
JSON_BYTES = {"UINT8": 4, "FP32": 17}
BINARY_BYTES = {"UINT8": 1, "FP32": 4}
HEADER_ALLOWANCE = 4096  # a response's JSON beside its tensors


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 64 * MIB  # counted while the body streams in, whatever Content-Length says
    max_json_body_bytes: int = 8 * MIB  # a body that is all JSON; large tensors go binary (the extension)
    body_timeout_s: float = 30.0  # a client that sends its body slower than this is cut off (408)
    send_grace_s: float = 30.0  # a client that reads its response slower than min_send_rate after this grace
    min_send_rate: float = 64 * 1024  # bytes a second ... is cut off (its connection dropped)
    max_buffered_bytes: int = 512 * MIB  # bodies being read or decoded and responses being sent; others wait
    max_image_pixels: int = 4096 * 4096  # per image
    max_request_pixels: int = 4096 * 4096  # all images of one request together (the budget in)
    max_response_bytes: int = 32 * MIB  # the response's tensors, estimated from the sizes (the budget out)
    max_images: int = 64  # images in one request
    min_side: int = 8

    def check_image(self, width: int, height: int, where: str) -> None:
        if width * height > self.max_image_pixels:
            raise RequestError(f"{where}: {width}x{height} exceeds the limit of {self.max_image_pixels} pixels", 413)
        if min(width, height) < self.min_side:
            raise RequestError(f"{where}: {width}x{height} is smaller than {self.min_side} pixels on a side")

    def check_batch(self, size: int, where: str) -> None:
        if size == 0:
            raise RequestError(f"{where}: the batch is empty")
        if size > self.max_images:
            raise RequestError(f"{where}: {size} images exceed the limit of {self.max_images}; split the request", 413)

    def check_budget(self, pixels: int, outputs: list[tuple[str, int, bool]]) -> int:
        """`pixels`: the request's input pixels; `outputs`: (datatype, values, binary) of each output tensor.
        Returns the response's size (an upper bound), which the response holds of the server's byte budget."""
        if pixels > self.max_request_pixels:
            raise RequestError(
                f"the request's images hold {pixels} pixels in all, over the budget of "
                f"{self.max_request_pixels}; send fewer or smaller images per request",
                413,
            )
        size = sum(values * (BINARY_BYTES if binary else JSON_BYTES)[datatype] for datatype, values, binary in outputs)
        if size > self.max_response_bytes:
            raise RequestError(
                f"the response would take about {size // MIB} MiB, over the budget of {self.max_response_bytes // MIB}"
                ' MiB; ask for the mask only, or binary outputs ("parameters": {"binary_data_output": true})',
                413,
            )
        return size + HEADER_ALLOWANCE
