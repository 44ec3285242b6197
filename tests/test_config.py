"""The typed configuration model: sources, priorities, one-line errors, masked secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.config import load_settings
from services.common.errors import ConfigError


def test_env_overrides_yaml_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "arcstream.yaml"
    config.write_text("db_batch_size: 50\nrdi: from-file\nkafka:\n  linger_ms: 7\n")
    monkeypatch.setenv("ARCSTREAM_CONFIG", str(config))
    monkeypatch.setenv("ARCSTREAM_RDI", "from-env")
    settings = load_settings()
    assert settings.db_batch_size == 50
    assert settings.rdi == "from-env"
    assert settings.kafka.linger_ms == 7


def test_well_known_env_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:pw@db:5432/x")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    settings = load_settings()
    assert settings.database_url.get_secret_value() == "postgresql://u:pw@db:5432/x"
    assert settings.kafka.bootstrap_servers == "broker:9092"
    assert "pw" not in repr(settings)


def test_bad_key_gives_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCSTREAM_DB_BATCH_SIZE", "zero")
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "db_batch_size" in message
    assert "\n" not in message


def test_unknown_key_in_file_is_rejected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "arcstream.yaml"
    config.write_text("db_batch_sise: 50\n")
    monkeypatch.setenv("ARCSTREAM_CONFIG", str(config))
    with pytest.raises(ConfigError, match="db_batch_sise"):
        load_settings()


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(Exception, match="frozen"):
        settings.rdi = "x"  # type: ignore[misc]
