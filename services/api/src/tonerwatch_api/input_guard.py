"""Hostile input refused at the door: oversized bodies, malformed JSON, NUL and other invalid text.

An ASGI middleware in front of every route (REST and UI). PostgreSQL cannot store a NUL character
or a lone surrogate, JSON's NaN and Infinity cannot be sent back, and a body of any size would be
read into memory: each is answered here, in the API's error shape, naming the field at fault,
before a route can fail on it with a 500.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_BODY_BYTES = 1 << 20
"""The largest request body taken (a bulk add of a few thousand printers fits)."""

MAX_QUERY_BYTES = 8 << 10
"""The longest query string taken (uvicorn itself answers far longer ones in plain text)."""


class Refused(Exception):
    """Input refused: status, message, and the field at fault (name, location)."""

    def __init__(self, status: int, message: str, field: str, location: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.location = location

    def body(self) -> bytes:
        """Return the JSON error body, in the shape every other API error has."""
        fields = [{"field": self.field, "location": self.location, "message": self.message}]
        prefix = "invalid request" if self.status == 422 else "refused"
        out = {
            "error": f"{prefix}: {self.field}: {self.message}",
            "status": self.status,
            "fields": fields,
        }
        return json.dumps(out).encode()


def text_problem(value: str) -> str | None:
    """Return why value cannot be stored as text (a NUL or a lone surrogate), or None."""
    if "\x00" in value:
        return "contains a NUL character"
    if any("\ud800" <= c <= "\udfff" for c in value):
        return "contains invalid text (a lone UTF-16 surrogate)"
    return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _walk(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Yield (field path, problem) for every string or key in a parsed JSON value that is invalid."""
    if isinstance(value, str):
        if (problem := text_problem(value)) is not None:
            yield path, problem
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if (problem := text_problem(key)) is not None:
                yield (path or "body"), f"a key {problem}"
                continue
            yield from _walk(item, where)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}.{i}" if path else str(i))


def check_json(raw: bytes) -> None:
    """Raise Refused when raw is not UTF-8 JSON without NaN, or holds text that cannot be stored."""
    if not raw.strip():
        return  # an empty body: the route says whether it needs one
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise Refused(422, "the body is not UTF-8 text", "body", "body") from None
    except RecursionError:
        raise Refused(422, "the JSON is nested too deeply", "body", "body") from None
    except ValueError as exc:
        message = str(exc) if "JSON number" in str(exc) else f"malformed JSON ({exc})"
        raise Refused(422, message, "body", "body") from None
    for field, problem in _walk(doc, ""):
        raise Refused(422, problem, field or "body", "body")


def check_form(raw: bytes) -> None:
    """Raise Refused when a url-encoded form field holds text that cannot be stored."""
    for key, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True, encoding="latin-1"):
        _check_encoded(key, value, "body")


def check_query(raw: bytes) -> None:
    """Raise Refused when the query string is too long or a parameter holds invalid text."""
    if len(raw) > MAX_QUERY_BYTES:
        raise Refused(
            414, f"the query string is longer than {MAX_QUERY_BYTES} bytes", "query", "query"
        )
    for key, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True, encoding="latin-1"):
        _check_encoded(key, value, "query")


def _check_encoded(key: str, value: str, location: str) -> None:
    # parse_qsl decoded %xx as latin-1: back to bytes, then the UTF-8 the client meant.
    name = _utf8(key.encode("latin-1"), location, location)
    if (problem := text_problem(name)) is not None:
        raise Refused(422, f"a parameter name {problem}", location, location)
    text = _utf8(value.encode("latin-1"), name, location)
    if (problem := text_problem(text)) is not None:
        raise Refused(422, problem, name, location)


def _utf8(raw: bytes, field: str, location: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(422, "is not UTF-8 text", field, location) from None


def check_path(raw_path: bytes) -> None:
    """Raise Refused when the path holds a percent-encoded NUL or is not UTF-8."""
    text = _utf8(unquote_to_bytes(raw_path), "path", "path")
    if (problem := text_problem(text)) is not None:
        raise Refused(422, problem, "path", "path")


def _content_type(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return str(value.decode("latin-1").split(";")[0].strip().lower())
    return ""


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class InputGuard:
    """ASGI middleware refusing hostile input with 413/414/422 before any route runs."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            check_path(scope.get("raw_path") or scope["path"].encode())
            check_query(scope.get("query_string", b""))
            declared = _declared_length(scope)
            if declared is not None and declared > self.max_body_bytes:
                raise self._too_large()
            kind = _content_type(scope)
            if kind == "application/json" or kind.endswith("+json"):
                body = await self._read(receive)
                check_json(body)
            elif kind == "application/x-www-form-urlencoded":
                body = await self._read(receive)
                check_form(body)
            else:
                # Other bodies (text, multipart) are only bounded: read here, counted.
                body = await self._read(receive)
        except Refused as refused:
            await _answer(send, refused)
            return
        await self.app(scope, _replay(body, receive), send)

    def _too_large(self) -> Refused:
        return Refused(413, f"the body is larger than {self.max_body_bytes} bytes", "body", "body")

    async def _read(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """Return a receive() that hands the body once, then whatever the client sends (disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(send: Send, refused: Refused) -> None:
    payload = refused.body()
    await send(
        {
            "type": "http.response.start",
            "status": refused.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class JsonErrorHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering requests it cannot parse (a request line past the
    parser's limit, bytes that are not HTTP) in JSON like every other error, not plain text."""

    def send_400_response(self, msg: str) -> None:
        """Write a 400 with the API's JSON error body and close the connection."""
        body = Refused(400, msg.rstrip(".") or "invalid HTTP request", "request", "request").body()
        content = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
