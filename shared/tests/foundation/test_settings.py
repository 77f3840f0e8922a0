"""Settings: environment, .env, secret files, and one clear error per bad variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from tonerwatch_shared.settings import CommonSettings, SettingsError, load_settings


def test_environment_prefix_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONERWATCH_NATS_URL", "nats://127.0.0.1:4999")
    monkeypatch.setenv("TONERWATCH_LOG_LEVEL", "debug")
    s = load_settings(CommonSettings)
    assert s.nats_url == "nats://127.0.0.1:4999"
    assert s.log_level == "DEBUG"


def test_secret_files_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tonerwatch_database_url").write_text("postgresql://u:pw@db/tw")
    monkeypatch.delenv("TONERWATCH_DATABASE_URL", raising=False)
    s = load_settings(CommonSettings, secrets_dir=tmp_path)
    assert s.database_url == "postgresql://u:pw@db/tw"


def test_dotenv_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TONERWATCH_DEFAULT_SITE", raising=False)
    (tmp_path / ".env").write_text("TONERWATCH_DEFAULT_SITE=branch-7\n")
    assert load_settings(CommonSettings).default_site == "branch-7"


def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONERWATCH_NATS_CONNECT_TIMEOUT_S", "soon")
    with pytest.raises(SettingsError, match="TONERWATCH_NATS_CONNECT_TIMEOUT_S"):
        load_settings(CommonSettings)


def test_unsafe_site_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONERWATCH_DEFAULT_SITE", "a.b>")
    with pytest.raises(SettingsError, match="TONERWATCH_DEFAULT_SITE"):
        load_settings(CommonSettings)


def test_missing_nats_url_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TONERWATCH_NATS_URL", raising=False)
    with pytest.raises(SettingsError, match="tonerwatch up"):
        load_settings(CommonSettings).require_nats_url()
