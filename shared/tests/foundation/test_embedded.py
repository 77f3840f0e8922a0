"""The embedded nats-server (tonerwatch up) fsyncs every write: sync_interval always, from its config file."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tonerwatch_shared.embedded import (
    EMBEDDED_GO_MEMORY,
    EmbeddedNats,
    free_tcp_port,
    nats_server_config,
)


def test_config_has_sync_always_and_explicit_store_limits(tmp_path: Path) -> None:
    text = nats_server_config(store_dir=tmp_path, port=4333)
    assert "sync_interval: always" in text
    assert "max_file_store: 10GB" in text
    assert "max_memory_store: 256MB" in text
    assert "host: 127.0.0.1" in text


def test_running_embedded_server_reports_sync_always_in_varz(tmp_path: Path) -> None:
    monitor = free_tcp_port()
    with EmbeddedNats(tmp_path / "nats", http_port=monitor, max_file_store="1GB") as server:
        varz = httpx.get(f"http://127.0.0.1:{monitor}/varz", timeout=5).json()
        assert server.config_file.exists()
    js = varz["jetstream"]["config"]
    assert js["sync_always"] is True
    assert js["max_storage"] == 1024**3
    assert js["max_memory"] == 256 * 1024**2
    assert js["store_dir"] == str(tmp_path / "nats" / "jetstream")
    major, minor, patch = (int(p) for p in varz["version"].split("-")[0].split(".")[:3])
    assert (major, minor, patch) >= (2, 10, 23)  # 2.10.22 lost streams on process crashes


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_the_go_memory_settings_reach_the_server_unless_the_environment_has_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOGC", raising=False)
    monkeypatch.setenv("GOMEMLIMIT", "96MiB")  # an operator's choice
    go = {"GOGC": "50", "GOMEMLIMIT": "48MiB"}
    with EmbeddedNats(tmp_path / "nats", go_memory=go) as server:
        assert server.proc is not None
        env = _environ(server.proc.pid)
    assert env["GOGC"] == "50"
    assert env["GOMEMLIMIT"] == "96MiB"


@pytest.mark.parametrize("operator_gogc", [None, "100"])
def test_up_s_gogc_reaches_the_server_and_an_operators_gogc_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, operator_gogc: str | None
) -> None:
    monkeypatch.delenv("GOMEMLIMIT", raising=False)
    if operator_gogc is None:
        monkeypatch.delenv("GOGC", raising=False)
    else:
        monkeypatch.setenv("GOGC", operator_gogc)
    with EmbeddedNats(tmp_path / "nats", go_memory=EMBEDDED_GO_MEMORY) as server:
        assert server.proc is not None
        env = _environ(server.proc.pid)
    assert env["GOGC"] == (operator_gogc or EMBEDDED_GO_MEMORY["GOGC"])
    assert "GOMEMLIMIT" not in env, "no limit: past the live heap the collector never rests"
