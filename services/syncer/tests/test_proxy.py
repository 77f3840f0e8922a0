"""The syncer reaches the portal over HTTPS through a real CONNECT proxy process (Basic
credentials): right credentials deliver; wrong ones are one clear error, retried (the
consumer pauses: RetryLater), never a crash."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tonerwatch_shared.embedded import free_tcp_port
from tonerwatch_shared.portal import Portal, serving
from tonerwatch_shared.testing.connect_proxy import running as connect_proxy
from tonerwatch_shared.upstream import SNAPSHOTS_PATH
from tonerwatch_syncer.service import upstream_down
from tonerwatch_syncer.upstream import TlsProxy, UpstreamError, build_client, endpoint, post

from ._tls import make_tls

SECRET = "proxy-test-secret"


async def test_https_through_an_office_proxy_with_right_and_wrong_credentials(
    tmp_path: Path,
) -> None:
    tls = make_tls(tmp_path)
    portal = Portal(secret=SECRET)
    body = b'{"type": "tonerwatch.fleet_snapshot.v1"}'
    with connect_proxy("office", "pr0xy-pass") as proxy:
        port, proc = proxy.port, proxy.proc
        async with serving(portal, "127.0.0.1", free_tcp_port(), tls.server_context()) as url:
            assert url.startswith("https://")
            target = endpoint(url, SNAPSHOTS_PATH)
            right = TlsProxy(
                ca_bundle=tls.ca_file,
                proxy=f"http://127.0.0.1:{port}",
                proxy_user="office",
                proxy_password="pr0xy-pass",
            )
            async with build_client(right, 10.0) as client:
                r = await post(
                    client, target, "doc-1", "tonerwatch.fleet_snapshot.v1", body, SECRET
                )
            assert r.status_code == 202 and len(portal.received) == 1

            wrong = TlsProxy(
                ca_bundle=tls.ca_file,
                proxy=f"http://127.0.0.1:{port}",
                proxy_user="office",
                proxy_password="not-the-password",
            )
            errors = []
            async with build_client(wrong, 10.0) as client:
                # Retried three times: the same clear error each time, the client still usable.
                for _ in range(3):
                    with pytest.raises(UpstreamError) as caught:
                        await post(
                            client, target, "doc-2", "tonerwatch.fleet_snapshot.v1", body, SECRET
                        )
                    errors.append(caught.value)
            assert all("proxy refused" in str(e) and "407" in str(e) for e in errors)
            # No answer from the portal: the consumer pauses and retries (RetryLater), it does not
            # blame the event nor crash.
            assert all(upstream_down(e) for e in errors)
            assert len(portal.received) == 1
            # The proxy process is still serving, and the right credentials still get through.
            assert proc.poll() is None
            async with build_client(right, 10.0) as client:
                r = await post(
                    client, target, "doc-2", "tonerwatch.fleet_snapshot.v1", body, SECRET
                )
            assert r.status_code == 202 and len(portal.received) == 2


def test_without_a_proxy_setting_the_client_follows_https_proxy_and_no_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    monkeypatch.setenv("NO_PROXY", "portal.internal")
    client = build_client(TlsProxy(), 5.0)
    mounts = {str(k.pattern): v for k, v in client._mounts.items()}
    assert any("https" in k for k in mounts)
    asyncio.run(client.aclose())
