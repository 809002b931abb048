"""Settings: defaults, config file, environment overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import REPO
from triage.settings import SettingsError, load_settings

CONFIG = str(REPO / "config" / "triage.toml")


def test_defaults_use_embedded_sqlite_and_mimo_flash() -> None:
    settings = load_settings({"TRIAGE_CONFIG": CONFIG})
    assert settings.database_url == "sqlite:///var/triage.sqlite3"
    assert settings.broker_url == "sqla+sqlite:///var/broker.sqlite3"
    assert (settings.mimo_base_url, settings.model, settings.extractor) == (
        "https://api.xiaomimimo.com/v1", "mimo-v2-flash", "llm")
    assert settings.extraction.attempts == 3 and settings.extraction.thinking is False
    assert settings.schema_path == REPO / "config" / "ticket_schema.json"
    assert len(settings.routing.rules) == 8 and settings.routing.fallback.route == "manual-review"


def test_contract_environment_variables_override_the_file() -> None:
    settings = load_settings({"TRIAGE_CONFIG": CONFIG, "TRIAGE_DATABASE_URL": "postgresql+psycopg://db/x",
                              "TRIAGE_BROKER_URL": "redis://r:6379/0", "MIMO_API_KEY": "sk-1",
                              "MIMO_BASE_URL": "http://127.0.0.1:9/v1", "TRIAGE_MODEL": "mimo-v2.5",
                              "TRIAGE_EXTRACTOR": "rules", "TRIAGE__EXTRACTION__ATTEMPTS": "5"})
    assert settings.database_url == "postgresql+psycopg://db/x" and settings.broker_url == "redis://r:6379/0"
    assert settings.mimo_api_key is not None and settings.mimo_api_key.get_secret_value() == "sk-1"
    assert (settings.model, settings.extractor, settings.extraction.attempts) == ("mimo-v2.5", "rules", 5)


@pytest.mark.parametrize(("env", "named"), [
    ({"TRIAGE_EXTRACTOR": "magic"}, "TRIAGE_EXTRACTOR='magic'"),
    ({"TRIAGE__EXTRACTION__ATTEMPTS": "0"}, "TRIAGE__EXTRACTION__ATTEMPTS='0'"),
    ({"TRIAGE__RETRY__NO_SUCH_KEY": "1"}, "TRIAGE__RETRY__NO_SUCH_KEY"),
    ({"TRIAGE_CONFIG": "/nonexistent/triage.toml"}, "TRIAGE_CONFIG='/nonexistent/triage.toml'"),
    ({"TRIAGE_LOG_FORMAT": "xml"}, "TRIAGE_LOG_FORMAT='xml': Input should be 'text' or 'json'"),
    ({"TRIAGE__WORKER__METRICS_PORT": "70000"}, "TRIAGE__WORKER__METRICS_PORT='70000'"),
])
def test_bad_values_name_the_key_and_value(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named.replace("*", r"\*")):
        load_settings({"TRIAGE_CONFIG": CONFIG, **env})


def test_bad_config_file_value_names_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "triage.toml"
    path.write_text("[extraction]\nmax_completion_tokens = 'lots'\n")
    with pytest.raises(SettingsError, match=r"triage.toml: extraction.max_completion_tokens='lots'"):
        load_settings({"TRIAGE_CONFIG": str(path)})


def test_visibility_timeout_must_outlast_retry_waits() -> None:
    with pytest.raises(SettingsError, match=r"worker\.visibility_timeout_seconds=60"):
        load_settings({"TRIAGE_CONFIG": CONFIG, "TRIAGE__WORKER__VISIBILITY_TIMEOUT_SECONDS": "60"})


def test_llm_extractor_without_key_is_refused_with_what_to_do() -> None:
    settings = load_settings({"TRIAGE_CONFIG": CONFIG, "MIMO_API_KEY": "  "})
    with pytest.raises(SettingsError, match=r"MIMO_API_KEY is not set.*TRIAGE_EXTRACTOR=rules"):
        settings.require_llm_ready()
    load_settings({"TRIAGE_CONFIG": CONFIG, "TRIAGE_EXTRACTOR": "rules"}).require_llm_ready()


def test_list_settings_come_from_the_environment_as_json() -> None:
    settings = load_settings({"TRIAGE__EXTRACTION__FALLBACK_MODELS": '["mimo-v2.5", "mimo-v2-pro"]'})
    assert settings.extraction.fallback_models == ["mimo-v2.5", "mimo-v2-pro"]
    with pytest.raises(SettingsError, match="TRIAGE__EXTRACTION__FALLBACK_MODELS: not a JSON list"):
        load_settings({"TRIAGE__EXTRACTION__FALLBACK_MODELS": '["mimo-v2.5",'})
