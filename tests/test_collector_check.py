"""`tonerwatch collector --check`: one line saying whether the hub takes the site's link, and why not.

Real processes on loopback: the hub's nats-server runs the hub.conf `tonerwatch hub-config`
wrote; the check dials its leaf listener with the site's folder, as a collector would.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tonerwatch.cli import main
from tonerwatch_shared.embedded import free_tcp_port, nats_server_binary, wait_for_tcp
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
