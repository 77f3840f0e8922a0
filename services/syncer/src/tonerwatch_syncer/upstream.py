"""The syncer's one seam to the portal: the HTTP client (TLS, proxy) and signed, measured POSTs."""

from __future__ import annotations

import ssl
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tonerwatch_shared.signing import SignatureRejected, check, document_headers
from tonerwatch_shared.upstream import gzip_body

if TYPE_CHECKING:
    import httpx

# Answers that mean the portal has the document: taken now (2xx) or already (409, a repeat id).
TAKEN = frozenset({409})
# The downlink's answer to If-None-Match when nothing came after the cursor: no body.
NOT_MODIFIED = 304


class UpstreamError(Exception):
    """The upstream refused or did not answer; the delivery will be retried."""

    def __init__(self, message: str, response: httpx.Response | None = None) -> None:
        super().__init__(message)
        # The refusal, when there was one: its bytes crossed the wire and count too.
        self.response = response


@dataclass(frozen=True)
class TlsProxy:
    """How to reach the portal: TLS trust, client certificate, proxy (None: HTTPS_PROXY/NO_PROXY)."""

    verify: bool = True
    ca_bundle: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    proxy: str | None = None
    proxy_user: str | None = None
    proxy_password: str | None = None


def build_client(how: TlsProxy, timeout_s: float) -> httpx.AsyncClient:
    """Return the HTTP/1.1 client the syncer talks to the portal with."""
    import httpx  # at use: a syncer without TONERWATCH_SYNC_URL never loads it (issue 15)

    verify: ssl.SSLContext | bool = how.verify
    if how.verify and (how.ca_bundle or how.client_cert):
        context = ssl.create_default_context(cafile=str(how.ca_bundle) if how.ca_bundle else None)
        if how.client_cert:
            context.load_cert_chain(
                str(how.client_cert), str(how.client_key) if how.client_key else None
            )
        verify = context
    elif how.client_cert:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.load_cert_chain(
            str(how.client_cert), str(how.client_key) if how.client_key else None
        )
        verify = context
    proxy: httpx.Proxy | None = None
    if how.proxy:
        auth = (how.proxy_user, how.proxy_password or "") if how.proxy_user else None
        proxy = httpx.Proxy(how.proxy, auth=auth)
    # Without a proxy setting, httpx follows HTTPS_PROXY/ALL_PROXY and NO_PROXY (trust_env).
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s), verify=verify, proxy=proxy, trust_env=True
    )


def endpoint(base: str, path: str) -> str:
    """Return the URL of a contract path under the portal's base URL."""
    return base.rstrip("/") + path


async def post(
    client: httpx.AsyncClient,
    url: str,
    doc_id: uuid.UUID | str,
    doc_type: str,
    body: bytes,
    secret: str | None,
    *,
    compress: bool = False,
    extra_headers: dict[str, str] | None = None,
    also_ok: frozenset[int] = frozenset(),
    timeout_s: float | None = None,
) -> httpx.Response:
    """Return the portal's answer to one signed POST of body, when it took it; else raise UpstreamError.

    also_ok: more statuses that are an answer (304 to a downlink request with If-None-Match);
    timeout_s: this request's timeout instead of the client's (a long poll).
    """
    import httpx  # at use: a syncer without TONERWATCH_SYNC_URL never loads it (issue 15)

    sent = gzip_body(body) if compress else body
    headers = document_headers(doc_id, doc_type, sent, secret or None, int(time.time()))
    if compress:
        headers["Content-Encoding"] = "gzip"
    headers.update(extra_headers or {})
    try:
        if timeout_s is not None:  # a long poll: longer than the client's default
            resp = await client.post(
                url, content=sent, headers=headers, timeout=httpx.Timeout(timeout_s)
            )
        else:
            resp = await client.post(url, content=sent, headers=headers)
    except httpx.ProxyError as exc:
        raise UpstreamError(f"proxy refused the way to {url}: {exc}") from exc
    except httpx.HTTPError as exc:
        raise UpstreamError(f"upstream {url} unreachable: {exc!r}") from exc
    if resp.status_code >= 300 and resp.status_code not in TAKEN | also_ok:
        raise UpstreamError(f"upstream {url} answered {resp.status_code}", resp)
    return resp


def check_answer(response: httpx.Response, secret: str | None) -> None:
    """Raise UpstreamError unless the portal's answer carries its signature (when a secret is set).

    A 304 (nothing new since the cursor) has no body and applies nothing: it needs no signature.
    """
    if not secret or response.status_code == NOT_MODIFIED:
        return
    try:
        check(response.headers, response.content, secret)
    except SignatureRejected as exc:
        raise UpstreamError(f"portal answer not signed rightly: {exc}", response) from exc


def _header_bytes(headers: httpx.Headers) -> int:
    # Each field as "Name: value\r\n", then the empty line ending the head.
    return sum(len(name) + 2 + len(value) + 2 for name, value in headers.raw) + 2


def exchange_bytes(response: httpx.Response) -> tuple[int, int]:
    """Return (bytes sent, bytes received) of one answered HTTP/1.1 exchange."""
    # Counted as h11 writes and reads them: request line, header fields and body out; status
    # line, header fields and body (as it came, before any content decoding) back. Like the
    # poller's SNMP UDP payloads, TCP/IP and TLS framing are not counted, nor what a proxy adds
    # (CONNECT, absolute target) or the size lines of a chunked answer. The client speaks HTTP/1.1 only (no HTTP/2).
    request = response.request
    line = len(request.method) + 1 + len(request.url.raw_path) + len(" HTTP/1.1\r\n")
    sent = line + _header_bytes(request.headers) + len(request.content)
    version = response.extensions.get("http_version", b"HTTP/1.1")
    reason = response.extensions.get("reason_phrase", b"")
    # "HTTP/1.1 202 Accepted\r\n": version, space, three digits, then the reason if any.
    status = len(version) + 4 + (1 + len(reason) if reason else 0) + 2
    received = status + _header_bytes(response.headers) + response.num_bytes_downloaded
    return sent, received
