"""The OpenAI embeddings API on the wire, for ``pipeline serve``: a request's body read within the
limits and its texts checked, the answer and the errors written as JSON (OpenAI's shapes)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

__all__ = ["Limits", "ApiError", "texts_of", "encode", "dumps", "error_body", "read_body"]


@dataclass
class Limits:
    max_texts: int = 256  # texts per request
    max_chars: int = 8192  # characters per text
    max_queue: int = 1024  # texts waiting in the batcher (beyond: 503)
    timeout_ms: float = 30_000  # per text, from arrival (beyond: 504)
    retry_after_s: int = 1

    def max_body(self) -> int:  # bytes: every text at its limit, 6 bytes a char (a \uXXXX escape), plus framing
        return self.max_texts * (self.max_chars * 6 + 16) + 65_536


class ApiError(Exception):
    """An answer other than 200: its status, OpenAI's error type and code, and headers."""

    def __init__(self, status: int, message: str, kind: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.headers = status, message, kind, code, headers or {}


def texts_of(body, limits: Limits) -> tuple[list[str], str]:
    """The request's texts and encoding format, or a 413/422 :class:`ApiError`."""
    if not isinstance(body, dict):
        raise ApiError(422, "the body must be a JSON object", "invalid_request_error")
    if "input" not in body:
        raise ApiError(422, "'input' is required: a string or a list of strings", "invalid_request_error", "missing_input")
    raw = body["input"]
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise ApiError(
            422,
            "'input' must be a non-empty string or a non-empty list of strings (token arrays are not accepted)",
            "invalid_request_error",
            "invalid_input",
        )
    if len(texts) > limits.max_texts:
        raise ApiError(413, f"{len(texts)} texts in one request; at most {limits.max_texts}", "invalid_request_error", "too_many_texts")
    long = [i for i, t in enumerate(texts) if len(t) > limits.max_chars]
    if long:
        raise ApiError(
            413,
            f"text {long[0]} has {len(texts[long[0]])} characters; at most {limits.max_chars} per text",
            "invalid_request_error",
            "text_too_long",
        )
    if any(not t for t in texts):
        raise ApiError(422, "an empty string cannot be embedded", "invalid_request_error", "empty_text")
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise ApiError(422, f"encoding_format must be 'float' or 'base64', got {fmt!r}", "invalid_request_error", "invalid_encoding_format")
    return texts, fmt


def encode(vec: np.ndarray, fmt: str):
    v = np.asarray(vec, dtype="<f4")
    return base64.b64encode(v.tobytes()).decode("ascii") if fmt == "base64" else v.tolist()


def error_body(e: ApiError) -> dict:
    return {"error": {"message": e.message, "type": e.kind, "code": e.code, "param": None}}


def dumps(payload: dict) -> bytes:
    """The answer as JSON written by orjson in one call (a JSON encoder that visits every float of
    every vector in Python first is most of a request's cost on a small machine)."""
    import orjson

    return orjson.dumps(payload)


async def read_body(limits: Limits, scope, receive) -> bytes:
    """The request's body, or a 413 past what the limits allow (by its Content-Length, or as it comes)."""
    cap = limits.max_body()
    for k, v in scope.get("headers", ()):
        if k == b"content-length" and v.isdigit() and int(v) > cap:
            raise ApiError(413, f"the body has {int(v)} bytes; at most {cap}", "invalid_request_error", "body_too_large")
    chunks, size = [], 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ApiError(400, "the client went away", "invalid_request_error", "disconnected")
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > cap:
            raise ApiError(413, f"the body passed {cap} bytes", "invalid_request_error", "body_too_large")
        chunks.append(chunk)
        if not msg.get("more_body"):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
