"""`tonerwatch portal`: the reference portal an integrator runs takes signed deliveries and refuses forged ones."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx

from tonerwatch_shared import events as ev
from tonerwatch_shared.embedded import free_tcp_port
from tonerwatch_shared.signing import delivery_headers

SECRET = "integrator-secret"


def test_the_portal_command_takes_a_signed_event_and_refuses_a_forged_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_tcp_port()
    store = tmp_path / "received.jsonl"
    env = {**os.environ, "TONERWATCH_PORTAL_SECRET": SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tonerwatch", "portal", "--port", str(port), "--store", str(store)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{base}/admin/received", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, "portal did not start"
                time.sleep(0.2)
        event = ev.SupplyReplaced(
            source="alerter/test",
            site_id="hq",
            printer_id="kyocera-m2540dn-01",
            supply_index="1.1",
            description="TK-1160 toner",
        )
        body = event.to_bytes()
        forged = delivery_headers(event, body, "not-the-secret")
        assert httpx.post(f"{base}/v1/events", content=body, headers=forged).status_code == 401
        signed = delivery_headers(event, body, SECRET)
        assert httpx.post(f"{base}/v1/events", content=body, headers=signed).status_code == 202
        assert httpx.post(f"{base}/v1/events", content=body, headers=signed).status_code == 200
        taken = httpx.get(f"{base}/admin/received").json()
        assert [t["document"]["event_id"] for t in taken] == [str(event.event_id)]
        assert str(event.event_id) in store.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
