"""The one error type of the serving path: a request the server refuses, with the HTTP status that says why."""

from __future__ import annotations


class RequestError(ValueError):
    """A request the server refuses; the message says which field or input and what to do (HTTP 4xx)."""

    def __init__(self, message: str, status: int = 400, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}
