"""compose.yaml and k8s/ describe every service with the command that really exists."""

from __future__ import annotations

from pathlib import Path

import yaml

from tonerwatch.services import SERVICES

ROOT = Path(__file__).resolve().parents[1]


def test_compose_runs_each_service_with_serve() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    for name in SERVICES:
        assert compose["services"][name]["command"] == ["serve", name]
        assert "/readyz" in " ".join(compose["services"][name]["healthcheck"]["test"])
    assert {"nats", "postgres"} <= set(compose["services"])


def test_k8s_has_a_deployment_per_service() -> None:
    docs = [d for f in sorted((ROOT / "k8s").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    deployments = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Deployment"}
    assert set(deployments) == set(SERVICES)
    for name, d in deployments.items():
        container = d["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == ["serve", name]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
