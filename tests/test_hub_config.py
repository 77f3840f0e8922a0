"""`tonerwatch hub-config`: nats-server accepts the hub config it writes, and a site joins with its folder.

Real processes on loopback: the hub's nats-server runs the generated hub.conf, and a site's leaf
nats-server, configured from the credentials file exactly as `tonerwatch collector` reads it,
connects to it over TLS. Certificates come from tonerwatch_shared.testing.tls.
"""

from __future__ import annotations

import asyncio
import json
import re
import stat
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import nats
import pytest

from tonerwatch.cli import main
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.embedded import EmbeddedNats, free_tcp_port, nats_server_binary
from tonerwatch_shared.hub import HubLayout, SiteEntry, revoke_in_config, write_hub_config
from tonerwatch_shared.sites import (
    DOWN_STREAM,
    SiteCredentials,
    site_domain,
    site_leafnodes,
    site_subjects,
)
from tonerwatch_shared.subjects import Subjects
from tonerwatch_shared.testing.tls import make_tls

SITES = ("acme-hq", "globex-plant")
HUB = Subjects()


def _sites_file(folder: Path, revoked: tuple[str, ...] = ()) -> Path:
    make = [{"site": s, "cert": f"{s}.pem", "key": f"{s}-key.pem"} for s in SITES]
    for entry in make:
        entry["revoked"] = entry["site"] in revoked  # type: ignore[assignment]
    path = folder / "sites.json"
    path.write_text(json.dumps({"sites": make}))
    return path


@pytest.fixture
def tls_dir(tmp_path: Path) -> Path:
    make_tls(tmp_path / "pki", ["hub", *SITES])
    return tmp_path / "pki"


def _hub_config(tls_dir: Path, out: Path, *extra: str, revoked: tuple[str, ...] = ()) -> int:
    return main(
        [
            "hub-config",
            "--sites",
            str(_sites_file(tls_dir, revoked)),
            "--out",
            str(out),
            "--ca",
            str(tls_dir / "ca.pem"),
            "--hub-cert",
            str(tls_dir / "hub.pem"),
            "--hub-key",
            str(tls_dir / "hub-key.pem"),
            *extra,
        ]
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_nats_server_accepts_the_hub_config_and_each_site_gets_its_private_folder(
    tls_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "hub"
    assert _hub_config(tls_dir, out, "--store-dir", str(tmp_path / "store")) == 0
    checked = subprocess.run(
        [str(nats_server_binary()), "-t", "-c", str(out / "hub.conf")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert _mode(out / "hub.conf") == 0o600 and _mode(out / "secrets.json") == 0o600
    passwords = json.loads((out / "secrets.json").read_text())
    for site in SITES:
        folder = out / "sites" / site
        credentials = SiteCredentials.read(folder / "credentials.json")
        assert (credentials.site, credentials.user) == (site, f"site-{site}")
        assert credentials.password == passwords["sites"][site]["password"]
        assert credentials.tls.cert.read_bytes() == (tls_dir / f"{site}.pem").read_bytes()
        assert credentials.tls.ca.read_bytes() == (tls_dir / "ca.pem").read_bytes()
        assert _mode(folder / "credentials.json") == 0o600 and _mode(folder / "key.pem") == 0o600
        assert json.dumps(credentials.password) in (out / "hub.conf").read_text()


def test_revoking_a_site_drops_its_folder_and_leaf_user_and_keeps_the_others_passwords(
    tls_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "hub"
    assert _hub_config(tls_dir, out) == 0
    before = json.loads((out / "secrets.json").read_text())
    assert _hub_config(tls_dir, out, revoked=("globex-plant",)) == 0
    after = json.loads((out / "secrets.json").read_text())
    assert after["hub"] == before["hub"] and after["system"] == before["system"]
    assert after["sites"]["acme-hq"] == before["sites"]["acme-hq"]
    # The revoked site's leaf password is forgotten: re-admitting it makes a new one.
    assert "password" not in after["sites"]["globex-plant"]
    assert not (out / "sites" / "globex-plant").exists()
    conf = (out / "hub.conf").read_text()
    assert '"site-acme-hq"' in conf and '"site-globex-plant"' not in conf
    assert "SITE_globex-plant" in conf  # its account (and its data at the hub) stay
    # Revocation is sticky: a run from a sites file that no longer says so keeps it revoked.
    assert _hub_config(tls_dir, out) == 0
    assert not (out / "sites" / "globex-plant").exists()
    assert '"site-globex-plant"' not in (out / "hub.conf").read_text()
    assert json.loads((out / "hub.json").read_text())["revoked"] == ["globex-plant"]


def _leaf_connected(http_port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            leafz = httpx.get(f"http://127.0.0.1:{http_port}/leafz", timeout=2.0).json()
            if leafz.get("leafnodes"):
                return True
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.1)
    return False


async def _make_hub_events_stream(url: str, out: Path) -> None:
    """Do what the hub's services do at start: declare their events stream (as user hub)."""
    made = json.loads((out / "secrets.json").read_text())
    bus = await Bus.connect(url, subjects=HUB, name="hub-api", user="hub", password=made["hub"])
    try:
        await bus.ensure_event_stream()
    finally:
        await bus.drain()


async def _hub_side(url: str, out: Path) -> tuple[list[str], dict[str, str]]:
    """Return the hub events stream's sources and, per site, the work stream in its account."""
    made = json.loads((out / "secrets.json").read_text())
    hub = await nats.connect(url, user="hub", password=made["hub"])
    info = await hub.jetstream().stream_info(HUB.events_stream)
    await hub.close()
    down: dict[str, str] = {}
    for site in SITES:
        admin = await nats.connect(
            url, user=f"admin-{site}", password=made["sites"][site]["admin_password"]
        )
        down[site] = (await admin.jetstream().stream_info(DOWN_STREAM)).config.name or ""
        await admin.close()
    return [s.name for s in info.config.sources or []], down


def test_a_site_joins_the_hub_with_the_folder_hub_config_wrote_and_hub_sites_brings_it_in(
    tls_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "hub"
    leaf_port, client_port = free_tcp_port(), free_tcp_port()
    assert (
        _hub_config(
            tls_dir,
            out,
            "--store-dir",
            str(tmp_path / "hub-store"),
            "--leaf-port",
            str(leaf_port),
            "--client-port",
            str(client_port),
        )
        == 0
    )
    # The hub's listener is on 0.0.0.0 for real sites; the test dials it on loopback only.
    hub = subprocess.Popen(
        [str(nats_server_binary()), "-c", str(out / "hub.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # The folder as a site's box receives it: copied elsewhere, read as the collector reads it.
    box = tmp_path / "site-box"
    box.mkdir()
    for name in ("credentials.json", "ca.pem", "cert.pem", "key.pem"):
        (box / name).write_bytes((out / "sites" / "acme-hq" / name).read_bytes())
    credentials = SiteCredentials.read(box / "credentials.json")
    site = EmbeddedNats(
        tmp_path / "site-store",
        http_port=free_tcp_port(),
        server_name="collector-acme-hq",
        domain=site_domain("acme-hq"),
        extra=site_leafnodes(f"tls://127.0.0.1:{leaf_port}", credentials),
    )
    try:
        site.start()
        assert _leaf_connected(site.http_port, 20.0)
        hub_url = f"nats://127.0.0.1:{client_port}"
        provision = ["hub-sites", "--sites", str(tls_dir / "sites.json"), "--out", str(out)]
        # Before the hub's services made their events stream, it says so and changes nothing.
        assert main([*provision, "--nats-url", hub_url]) == 2
        assert "start the hub's services" in capsys.readouterr().err
        asyncio.run(_make_hub_events_stream(hub_url, out))
        assert main([*provision, "--nats-url", hub_url]) == 0
        assert main([*provision, "--nats-url", hub_url]) == 0  # re-run: nothing doubled
        sources, down = asyncio.run(_hub_side(hub_url, out))
        assert sources == [site_subjects(HUB, s).events_stream for s in SITES]
        assert down == {s: DOWN_STREAM for s in SITES}
    finally:
        site.stop()
        hub.terminate()
        hub.wait(timeout=30)


def test_concurrent_revocations_each_land(tmp_path: Path) -> None:
    """Eight admins revoking eight sites at once: the folder's lock makes every one count."""
    names = [f"branch-{n}" for n in range(8)]
    tls = make_tls(tmp_path / "pki", ["hub", *names])
    layout = HubLayout(hub_tls=tls["hub"], store_dir=tmp_path / "store", leaf_host="127.0.0.1")
    out = tmp_path / "hub"
    write_hub_config([SiteEntry(n, tls[n].cert, tls[n].key) for n in names], out, layout)
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        changed = list(pool.map(lambda n: revoke_in_config(out, n), names))
    assert changed == [True] * len(names)
    state = json.loads((out / "hub.json").read_text())
    assert state["revoked"] == sorted(names)
    conf = (out / "hub.conf").read_text()
    assert not [n for n in names if f'"site-{n}"' in conf]
    assert not list((out / "sites").iterdir())
    # And a second revocation of one of them changes nothing.
    assert revoke_in_config(out, names[0]) is False


def _listens(conf: str) -> tuple[str, str, str]:
    """Return (client port, leaf port, store dir) as hub.conf says them."""
    leaf = conf[conf.index("leafnodes") :]
    return (
        re.search(r"^port:\s*(\d+)", conf, re.M).group(1),  # type: ignore[union-attr]
        re.search(r"port:\s*(\d+)", leaf).group(1),  # type: ignore[union-attr]
        re.search(r"store_dir:\s*(\S+)", conf).group(1),  # type: ignore[union-attr]
    )


def test_a_re_run_keeps_the_ports_and_store_of_the_first_run(tls_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "hub"
    store = tmp_path / "hub-store"
    first = ["--store-dir", str(store), "--leaf-port", "17422", "--client-port", "14222"]
    assert _hub_config(tls_dir, out, *first) == 0
    made = _listens((out / "hub.conf").read_text())
    assert made[:2] == ("14222", "17422") and str(store) in made[2]
    # Adding a site later, without repeating the options: nothing a reload cannot change moves.
    assert _hub_config(tls_dir, out) == 0
    assert _listens((out / "hub.conf").read_text()) == made
    state = json.loads((out / "hub.json").read_text())
    assert (state["leaf_port"], state["client_port"]) == (17422, 14222)
    # An option given on a re-run still wins, and is what the next run keeps.
    assert _hub_config(tls_dir, out, "--leaf-port", "17423") == 0
    assert _hub_config(tls_dir, out) == 0
    again = _listens((out / "hub.conf").read_text())
    assert again == (made[0], "17423", made[2])
    # A new folder gets the documented defaults.
    assert _hub_config(tls_dir, tmp_path / "fresh") == 0
    fresh = _listens((tmp_path / "fresh" / "hub.conf").read_text())
    assert fresh[:2] == ("4222", "7422") and "/data/nats" in fresh[2]


def test_a_hub_conf_for_a_container_names_the_folder_where_it_is_mounted(
    tls_dir: Path, tmp_path: Path
) -> None:
    """`--conf-dir`: the compose overlay and Kubernetes mount the folder at /etc/tonerwatch-hub."""
    out = tmp_path / "hub"
    mounted = tmp_path / "etc-tonerwatch-hub"  # stands in for the container's mount point
    container = ["--conf-dir", str(mounted), "--client-host", "0.0.0.0", "--monitor-port", "8222"]
    assert _hub_config(tls_dir, out, "--store-dir", "/data/nats", *container) == 0
    conf = (out / "hub.conf").read_text()
    assert re.search(r"^host: 0\.0\.0\.0$", conf, re.M)
    assert 'http: "127.0.0.1:8222"' in conf
    assert f'"{mounted}/tls/ca.pem"' in conf and str(tls_dir) not in conf
    for name in ("ca.pem", "hub.pem", "hub-key.pem"):
        assert _mode(out / "tls" / name) == 0o600
    assert (out / "tls" / "hub.pem").read_bytes() == (tls_dir / "hub.pem").read_bytes()
    # nats-server takes it where the folder is mounted (store in tmp here: -t creates it).
    mounted.symlink_to(out)
    (out / "check.conf").write_text(
        conf.replace('store_dir: "/data/nats"', f'store_dir: "{tmp_path / "store"}"')
    )
    checked = subprocess.run(
        [str(nats_server_binary()), "-t", "-c", str(mounted / "check.conf")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The folder records its own files relative to itself: moved (mounted in the api's
    # container elsewhere), it still revokes a site, and a re-run keeps the container options.
    state = json.loads((out / "hub.json").read_text())
    assert state["hub_tls"]["ca"] == "tls/ca.pem"
    assert {s["cert"] for s in state["sites"]} == {f"sites/{s}/cert.pem" for s in SITES}
    moved = tmp_path / "hub-in-the-api-container"
    out.rename(moved)
    assert revoke_in_config(moved, "globex-plant") is True
    assert '"site-globex-plant"' not in (moved / "hub.conf").read_text()
    assert _hub_config(tls_dir, moved) == 0
    again = (moved / "hub.conf").read_text()
    assert re.search(r"^host: 0\.0\.0\.0$", again, re.M) and 'http: "127.0.0.1:8222"' in again
    assert f'"{mounted}/tls/hub.pem"' in again
