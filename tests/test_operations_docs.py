"""The README documents every setting, and the shipped alert rules watch metrics the code exports."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tonerwatch.services import SERVICES, service_module
from tonerwatch_shared.settings import ENV_PREFIX, CommonSettings

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "shared" / "src", ROOT / "src", *sorted((ROOT / "services").glob("*/src"))]
# Agreed with the durable-NATS work (stream limits, replicas, overdue polls), which adds them in
# its own change: documented and alerted on here first. Once that lands, the code defines them
# and these sets only repeat what the checks below already find.
AGREED_SETTINGS = {
    "TONERWATCH_STREAM_REPLICAS",
    "TONERWATCH_EVENTS_MAX_BYTES",
    "TONERWATCH_EVENTS_MAX_AGE_S",
}
AGREED_METRICS = {"tonerwatch_poll_jobs_overdue", "tonerwatch_stream_fill_ratio"}
# Metrics Prometheus itself records about each scrape.
PROMETHEUS_METRICS = {"up"}


def _settings_classes() -> Iterator[type[CommonSettings]]:
    for name in SERVICES:
        service_module(name)  # each imports its Settings (wherever the service keeps them)

    todo: list[type[CommonSettings]] = [CommonSettings]
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("tonerwatch"):
            yield cls
        todo.extend(cls.__subclasses__())


def every_setting() -> set[str]:
    """Return the environment variable of every field of every Settings class."""
    names = {"TONERWATCH_SECRETS_DIR"}  # read by load_settings itself
    for cls in _settings_classes():
        prefix = cls.model_config.get("env_prefix", ENV_PREFIX)
        names |= {f"{prefix}{field}".upper() for field in cls.model_fields}
    return names


def _readme_settings() -> set[str]:
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## Configuration") : text.index("Webhooks and the upstream sync POST")]
    return set(re.findall(r"`(TONERWATCH_[A-Z0-9_]+)`", table))


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    settings = every_setting()
    # Common, api, poller, alerter, discovery and syncer fields: all found, not just some.
    assert len(settings) >= 77
    assert sorted(settings - _readme_settings()) == []


def test_the_readme_table_names_no_setting_that_does_not_exist() -> None:
    assert sorted(_readme_settings() - every_setting() - AGREED_SETTINGS) == []


def exported_metrics() -> set[str]:
    """Return every metric name the code exposes (with prometheus_client's suffixes)."""
    names: set[str] = set()
    for src in SOURCES:
        for path in src.rglob("*.py"):
            text = path.read_text()
            for kind, name in re.findall(
                r"\b(Counter|Gauge|Histogram|Summary)\(\s*\"(tonerwatch_\w+)\"", text
            ):
                names |= {
                    "Counter": {f"{name}_total", f"{name}_created"},
                    "Gauge": {name},
                    "Histogram": {f"{name}_bucket", f"{name}_sum", f"{name}_count"},
                    "Summary": {f"{name}_sum", f"{name}_count"},
                }[kind]
            # The api writes its exposition by hand: _family(out, "name", ...).
            names |= set(re.findall(r"_family\(\s*\w+,\s*\"(tonerwatch_\w+)\"", text))
    return names


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((ROOT / "k8s" / "prometheus-rules.yaml").read_text())
    assert doc["kind"] == "PrometheusRule"
    return [rule for group in doc["spec"]["groups"] for rule in group["rules"]]


def _metrics_in(expr: str) -> set[str]:
    without_labels = re.sub(r"\{[^}]*\}", "", expr)
    words = set(re.findall(r"\b([a-z_][a-z0-9_]*)\b", without_labels))
    return {w for w in words if w.startswith("tonerwatch_") or w in PROMETHEUS_METRICS}


def test_every_alert_watches_a_metric_the_code_exports() -> None:
    exported = exported_metrics() | AGREED_METRICS | PROMETHEUS_METRICS
    assert "tonerwatch_consumer_pending_messages" in exported
    assert "tonerwatch_api_outbox_dead_events" in exported
    for rule in _rules():
        used = _metrics_in(rule["expr"])
        assert used, rule["alert"]
        assert used <= exported, (rule["alert"], used - exported)


def test_the_alerts_cover_what_matters_and_link_their_runbook() -> None:
    watched = set().union(*(_metrics_in(rule["expr"]) for rule in _rules()))
    for metric in (
        "tonerwatch_poll_jobs_overdue",
        "tonerwatch_consumer_pending_messages",
        "tonerwatch_stream_fill_ratio",
        "tonerwatch_api_outbox_dead_events",
    ):
        assert metric in watched
    operations = (ROOT / "docs" / "operations.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", operations, re.M)
    }
    for rule in _rules():
        assert rule["labels"]["severity"] in ("page", "ticket")
        assert rule["for"]
        page, anchor = rule["annotations"]["runbook"].split("#")
        assert page == "docs/operations.md" and anchor in anchors, rule["alert"]
        assert rule["alert"] in operations


def _deployed_settings() -> set[str]:
    """Return every TONERWATCH_ variable compose and k8s set, and every secret file they mount."""
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    names = {
        key
        for service in compose["services"].values()
        for key in service.get("environment", {})
        if key.startswith("TONERWATCH_")
    }
    for path in (ROOT / "k8s").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "ConfigMap":
                names |= {k for k in doc["data"] if k.startswith("TONERWATCH_")}
            if doc and doc["kind"] in ("Deployment", "StatefulSet"):
                for container in doc["spec"]["template"]["spec"]["containers"]:
                    names |= {
                        e["name"]
                        for e in container.get("env", [])
                        if e["name"].startswith("TONERWATCH_")
                    }
    example = (ROOT / "k8s" / "secrets.env.example").read_text()
    names |= {key.upper() for key in re.findall(r"^(tonerwatch_\w+)=", example, re.M)}
    return names


def test_compose_and_k8s_set_only_settings_that_exist() -> None:
    deployed = _deployed_settings()
    assert {
        "TONERWATCH_NATS_USER",
        "TONERWATCH_SESSION_SECRET",
        "TONERWATCH_DATABASE_URL",
    } <= deployed
    assert sorted(deployed - every_setting() - AGREED_SETTINGS) == []
