"""A three-node hub cluster, each node converged by its own `tonerwatch hub-sync` (deploy/k8s-hub).

Real processes on 127.0.0.1: three hub nats-servers routed into one JetStream cluster (domain
hub), a hub-sync beside each rendering that node's config (its name, ports, routes) from one
read-only hub folder and the bucket TW_HUB_SITES (R3), and a site's leaf nats-server dialling
one node. A revocation recorded in the bucket is taken up by every node (each reloads), and the
node holding the leaf drops it and refuses its redials.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import pytest

from tonerwatch_shared.embedded import EmbeddedNats, free_tcp_port, nats_server_binary, wait_for_tcp
from tonerwatch_shared.hub import HubLayout, SiteEntry, write_hub_config
from tonerwatch_shared.hub_sync import HUB_SITES_BUCKET, record_site
from tonerwatch_shared.sites import SiteCredentials, site_domain, site_leafnodes
from tonerwatch_shared.subjects import Subjects
from tonerwatch_shared.testing.infra import eventually
from tonerwatch_shared.testing.tls import make_tls

SITES = ("acme-hq", "globex-plant")
NODES = 3


class Node:
    def __init__(self, tmp: Path, index: int) -> None:
        self.name = f"hub-{index}"
        self.run = tmp / self.name
        self.client_port = free_tcp_port()
        self.leaf_port = free_tcp_port()
        self.monitor_port = free_tcp_port()
        self.cluster_port = free_tcp_port()
        self.store = tmp / f"{self.name}-store"
        self.server: subprocess.Popen[bytes] | None = None
        self.sync: subprocess.Popen[bytes] | None = None

    @property
    def conf(self) -> Path:
        return self.run / "hub.conf"

    @property
    def log(self) -> Path:
        return self.run / "nats-server.log"

    def hub_sync(self, folder: Path, routes: str, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "tonerwatch",
            "hub-sync",
            f"--hub-dir={folder}",
            f"--conf={self.conf}",
            f"--nats-url=nats://127.0.0.1:{self.client_port}",
            f"--server-name={self.name}",
            "--cluster-name=tonerwatch-hub",
            f"--cluster-port={self.cluster_port}",
            f"--routes={routes}",
            f"--client-port={self.client_port}",
            f"--leaf-port={self.leaf_port}",
            f"--monitor-port={self.monitor_port}",
            f"--store-dir={self.store}",
            *extra,
        ]

    async def load_time(self) -> str:
        async with httpx.AsyncClient(timeout=2.0) as c:
            varz = (await c.get(f"http://127.0.0.1:{self.monitor_port}/varz")).json()
        return str(varz["config_load_time"])


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Path, list[Node]]]:
    tls = make_tls(tmp_path / "pki", ["hub", *SITES])
    folder = tmp_path / "hub"
    layout = HubLayout(hub_tls=tls["hub"], store_dir=tmp_path / "unused", leaf_host="127.0.0.1")
    write_hub_config([SiteEntry(s, tls[s].cert, tls[s].key) for s in SITES], folder, layout)
    nodes = [Node(tmp_path, i) for i in range(NODES)]
    routes = ",".join(f"nats-route://127.0.0.1:{n.cluster_port}" for n in nodes)
    try:
        for node in nodes:
            subprocess.run(node.hub_sync(folder, routes, "--render-only"), check=True)
            node.server = subprocess.Popen(
                [str(nats_server_binary()), "-c", str(node.conf), "-l", str(node.log)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        for node in nodes:
            assert wait_for_tcp("127.0.0.1", node.client_port, 30.0)
            node.sync = subprocess.Popen(
                node.hub_sync(folder, routes, "--replicas=3", "--resync-s=600"),
                stdout=subprocess.DEVNULL,
                stderr=(node.run / "hub-sync.log").open("ab"),
            )
        yield folder, nodes
    finally:
        for node in nodes:
            for proc in (node.sync, node.server):
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    proc.wait(timeout=30)


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


async def _leafs(site: EmbeddedNats) -> int:
    async with httpx.AsyncClient(timeout=2.0) as c:
        return len((await c.get(f"http://127.0.0.1:{site.http_port}/leafz")).json()["leafs"] or [])


def _refusals(node: Node) -> int:
    text = node.log.read_text().lower() if node.log.exists() else ""
    return text.count("authorization violation") + text.count("authentication error")


async def test_each_node_converges_itself_and_the_leaf_is_dropped_where_it_is(
    cluster: tuple[Path, list[Node]], tmp_path: Path
) -> None:
    folder, nodes = cluster
    before = _digest(folder)
    hub_password = json.loads((folder / "secrets.json").read_text())["hub"]
    nc = await nats.connect(
        f"nats://127.0.0.1:{nodes[0].client_port}", user="hub", password=hub_password
    )
    site: EmbeddedNats | None = None
    try:
        js = nc.jetstream(timeout=5.0)
        bucket = Subjects().name(HUB_SITES_BUCKET)

        async def bucket_r3() -> bool:
            try:
                info = await js.stream_info(f"KV_{bucket}")
            except Exception:  # the cluster or the bucket not there yet
                return False
            return info.config.num_replicas == NODES

        await eventually(bucket_r3, 90.0)  # a sidecar made it: R3 across the cluster
        kv = await js.key_value(bucket)
        # A site's leaf on node 1 with the credentials hub-config issued.
        credentials = SiteCredentials.read(folder / "sites" / "acme-hq" / "credentials.json")
        site = leaf = EmbeddedNats(
            tmp_path / "site",
            http_port=free_tcp_port(),
            server_name="collector-acme-hq",
            domain=site_domain("acme-hq"),
            extra=site_leafnodes(f"tls://127.0.0.1:{nodes[1].leaf_port}", credentials),
        )
        await asyncio.to_thread(leaf.start)
        await eventually(lambda: _leafs(leaf), 30.0)
        loaded = [await n.load_time() for n in nodes]
        refused = _refusals(nodes[1])

        assert await record_site(kv, "acme-hq", revoked=True, by="test")

        async def all_reloaded() -> bool:
            return all([await n.load_time() != t for n, t in zip(nodes, loaded, strict=True)])

        await eventually(all_reloaded, 60.0)  # every node's hub-sync reloaded its own server
        for node in nodes:
            conf = node.conf.read_text()
            assert '"site-acme-hq"' not in conf and '"site-globex-plant"' in conf, node.name
            assert f"server_name: {node.name}" in conf

        async def dropped() -> bool:
            return await _leafs(leaf) == 0

        await eventually(dropped, 30.0)
        await eventually(lambda: _refusals(nodes[1]) > refused, 30.0)
        assert await _leafs(leaf) == 0
        assert _digest(folder) == before  # the folder is only read
    finally:
        if site is not None:
            await asyncio.to_thread(site.stop)
        await nc.close()
