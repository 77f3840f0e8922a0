"""`tonerwatch collector --check`: one line saying whether the hub takes the site's link, and why not.

Real processes on loopback: the hub's nats-server runs the hub.conf `tonerwatch hub-config`
wrote; the check dials its leaf listener with the site's folder, as a collector would.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from tonerwatch.cli import main
from tonerwatch.collector import run_collector
from tonerwatch_shared.embedded import free_tcp_port, nats_server_binary, wait_for_tcp
from tonerwatch_shared.sites import SiteCredentials
from tonerwatch_shared.testing.tls import make_tls

SITES = ("acme-hq", "globex-plant")


def _hub(tmp_path: Path) -> tuple[Path, int]:
    """Write the hub's folder for two sites; return it and the leaf port."""
    pki = tmp_path / "pki"
    make_tls(pki, ["hub", *SITES])
    sites = pki / "sites.json"
    sites.write_text(
        json.dumps(
            {"sites": [{"site": s, "cert": f"{s}.pem", "key": f"{s}-key.pem"} for s in SITES]}
        )
    )
    out, leaf_port = tmp_path / "hub", free_tcp_port()
    args = ["hub-config", "--sites", str(sites), "--out", str(out), "--ca", str(pki / "ca.pem")]
    args += ["--hub-cert", str(pki / "hub.pem"), "--hub-key", str(pki / "hub-key.pem")]
    args += ["--store-dir", str(tmp_path / "hub-store"), "--leaf-port", str(leaf_port)]
    assert main([*args, "--client-port", str(free_tcp_port())]) == 0
    return out, leaf_port


def _box(out: Path, site: str, box: Path) -> Path:
    """Copy the site's folder to its box, as the README says; return the credentials file."""
    box.mkdir(parents=True)
    for name in ("credentials.json", "ca.pem", "cert.pem", "key.pem"):
        (box / name).write_bytes((out / "sites" / site / name).read_bytes())
    return box / "credentials.json"


def _check(
    credentials: Path, leaf_port: int, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    hub = f"tls://127.0.0.1:{leaf_port}"
    code = main(
        [
            "collector",
            "--check",
            "--check-timeout",
            "4",
            "--credentials",
            str(credentials),
            "--hub",
            hub,
        ]
    )
    printed = capsys.readouterr()
    return code, printed.out + printed.err


def test_check_says_in_one_line_whether_the_hub_takes_the_sites_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, leaf_port = _hub(tmp_path)
    capsys.readouterr()
    good = _box(out, "acme-hq", tmp_path / "box")

    # No hub running yet: nothing listens on the leaf port.
    code, line = _check(good, leaf_port, capsys)
    assert code == 2 and line.count("\n") == 1, line
    assert "link to the hub" in line and "down" in line and "Traceback" not in line

    hub = subprocess.Popen(
        [str(nats_server_binary()), "-c", str(out / "hub.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for_tcp("127.0.0.1", leaf_port, 15.0)
        code, line = _check(good, leaf_port, capsys)
        assert code == 0, line
        assert line.startswith("tonerwatch: link to the hub") and "up: site acme-hq" in line
        assert line.count("\n") == 1

        # A wrong password (say, a revoked site's old file): refused, and said so.
        wrong = _box(out, "acme-hq", tmp_path / "box-wrong")
        data = json.loads(wrong.read_text())
        wrong.write_text(json.dumps(data | {"password": "not-the-password"}))
        code, line = _check(wrong, leaf_port, capsys)
        assert code == 2 and "refused the site's credentials" in line, line

        # A certificate from another CA: the hub's TLS drops the handshake, and it says so (from
        # the site, nats-server sees only the connection closed).
        other = tmp_path / "other-pki"
        make_tls(other, ["acme-hq"])
        foreign = _box(out, "acme-hq", tmp_path / "box-foreign")
        for name, source in (("cert.pem", "acme-hq.pem"), ("key.pem", "acme-hq-key.pem")):
            (foreign.parent / name).write_bytes((other / source).read_bytes())
        code, line = _check(foreign, leaf_port, capsys)
        assert code == 2 and "closed the connection during the handshake" in line, line
        assert "certificate" in line
    finally:
        hub.terminate()
        hub.wait(timeout=30)


def test_check_with_a_running_collectors_data_dir_judges_its_own_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The healthcheck of the image, compose and Kubernetes: the collector's own leaf, not a new one."""
    out, leaf_port = _hub(tmp_path)
    credentials = _box(out, "acme-hq", tmp_path / "box")
    data_dir = tmp_path / "site"
    hub_url = f"tls://127.0.0.1:{leaf_port}"
    # Without --hub (Kubernetes probes cannot pass it): the running collector's file says it.
    check = ["collector", "--check", "--check-timeout", "4", "--credentials", str(credentials)]
    check += ["--data-dir", str(data_dir)]
    hub = subprocess.Popen(
        [str(nats_server_binary()), "-c", str(out / "hub.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    async def scenario() -> list[tuple[int, str]]:
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(
            run_collector(
                hub_url, SiteCredentials.read(credentials), data_dir, stop=stop, ready=ready
            )
        )
        seen: list[tuple[int, str]] = []

        async def checked() -> tuple[int, str]:
            code = await asyncio.to_thread(main, check)
            printed = capsys.readouterr()
            return code, printed.out + printed.err

        try:
            await asyncio.wait_for(ready.wait(), 60)
            seen.append(await checked())  # link up
            hub.terminate()
            await asyncio.to_thread(hub.wait, 30)
            for _ in range(40):  # the leaf notices the hub is gone (bounded: 40 x 0.25 s)
                code, line = await checked()
                if code != 0:
                    break
                await asyncio.sleep(0.25)
            seen.append((code, line))
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)
        # No collector any more: the throwaway dial, which needs the hub's URL.
        check.extend(["--hub", hub_url])
        seen.append(await checked())
        return seen

    try:
        assert wait_for_tcp("127.0.0.1", leaf_port, 15.0)
        up, down, after = asyncio.run(scenario())
    finally:
        if hub.poll() is None:
            hub.terminate()
            hub.wait(timeout=30)
    assert up[0] == 0 and "up: site acme-hq (the running collector's own link)" in up[1], up
    assert down[0] == 2 and "has no leaf connection" in down[1], down
    assert down[1].count("\n") == 1
    assert not (data_dir / "collector.json").exists()
    assert after[0] == 2 and "running collector" not in after[1] and "down:" in after[1], after


def test_our_own_shutdown_mid_handshake_does_not_hide_the_hubs_refusal() -> None:
    from tonerwatch.collector import _link_failure

    log_text = (
        "[1] 2026/12/06 23:20:01.1 [ERR] 127.0.0.1:7422 - lid:8 - Leafnode Error "
        "'Authorization Violation'\n"
        "[1] 2026/12/06 23:20:02.1 [ERR] 127.0.0.1:7422 - lid:9 - TLS leafnode handshake error: "
        "read tcp 127.0.0.1:46380->127.0.0.1:7422: use of closed network connection\n"
    )
    assert _link_failure(log_text, 4.0).startswith("the hub refused the site's credentials")
