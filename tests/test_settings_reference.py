"""The settings reference page (docs/reference/settings.md) is the settings model's, and it is current; the
hand-written tables of docs/configuration.md and docs/writeback.md name only settings the model has."""

from __future__ import annotations

import re
from itertools import takewhile
from pathlib import Path

import pytest

from triage import settings_reference
from triage.settings import ENV_KEYS, WRITEBACK_PLATFORMS, Settings, load_settings
from triage.settings_reference import COMMAND, PAGE, MissingDescriptionError, main, render, rows

REPO = Path(__file__).resolve().parents[1]


def test_the_committed_page_is_what_the_model_gives() -> None:
    committed = (REPO / PAGE).read_text(encoding="utf-8")
    assert committed == render(), f"{PAGE} is stale: run `{COMMAND}` from the checkout and commit the page"


def test_every_key_is_listed_once_with_a_description() -> None:
    found = list(rows())
    keys = [row.key for row in found]
    assert len(keys) == len(set(keys))
    assert all(row.description.strip() for row in found)
    assert {"database_url", "worker.lease_seconds", "writeback.zendesk.routes", 'routing.rules[].when',
            "writeback.intercom.priority_via", "alerts.webhook_url"} <= set(keys)


def test_every_dedicated_variable_is_named_on_its_key() -> None:
    env_of = {row.key: row.env for row in rows()}
    for env, key in ENV_KEYS.items():
        assert env_of[key] == env, (env, key)
    assert env_of["config_path"] == "TRIAGE_CONFIG"
    assert env_of["webhooks.secrets"] == "TRIAGE_WEBHOOK_SECRET_<SOURCE>"


def test_a_nested_variable_named_on_the_page_sets_its_key() -> None:
    env_of = {row.key: row.env for row in rows()}
    assert env_of["worker.lease_seconds"] == "TRIAGE__WORKER__LEASE_SECONDS"
    settings = load_settings({env_of["worker.lease_seconds"]: "90", env_of["writeback.intercom.version"]: "2.13"})
    assert settings.worker.lease_seconds == 90 and settings.writeback.intercom.version == "2.13"


def test_defaults_are_the_models_own() -> None:
    by_key = {row.key: row for row in rows()}
    defaults = Settings()
    assert by_key["worker.lease_seconds"].default == f"`{defaults.worker.lease_seconds:g}`"
    assert by_key["routing.fallback.route"].default == f'`"{defaults.routing.fallback.route}"`'
    assert by_key["mimo_api_key"].default == "unset"
    assert by_key["routing.rules[].route"].default == "required"


def test_check_names_the_command_when_the_page_is_stale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "settings.md"
    assert main(["--output", str(page)]) == 0 and page.read_text(encoding="utf-8") == render()
    assert main(["--check", "--output", str(page)]) == 0
    page.write_text(render().replace("Threads per worker process", "Threads"), encoding="utf-8")
    assert main(["--check", "--output", str(page)]) == 1
    assert f"is stale: run `{COMMAND}`" in capsys.readouterr().err


def test_a_setting_without_a_description_stops_the_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_reference, "_doc_comments", lambda cls: {})
    with pytest.raises(MissingDescriptionError, match=r"database_url: no description: add a #: comment"):
        render()


def _first_cells(page: str, header: str) -> list[str]:
    """The first cell of each row of the table under ``header`` in docs/``page``."""
    lines = (REPO / "docs" / page).read_text(encoding="utf-8").split("\n")
    body = lines[lines.index(header) + 2:]
    return [line.split(" | ")[0].removeprefix("| ") for line in takewhile(lambda line: line.startswith("|"), body)]


def _is_setting(token: str, keys: set[str]) -> bool:
    """A key or a section of the model; ``<platform>`` stands for each write-back platform."""
    token = re.sub(r'\."<name>"$', "", re.sub(r'"<\w+>"', '"<name>"', token.strip("[]")))
    forms = [token.replace("<platform>", name) for name in WRITEBACK_PLATFORMS]
    return all(form in keys or any(key.startswith(form + ".") for key in keys) for form in forms)


@pytest.mark.parametrize(("page", "header"), [("configuration.md", "| key | default | meaning |"),
                                              ("writeback.md", "| key | default | meaning |")])
def test_the_hand_written_key_tables_name_only_real_settings(page: str, header: str) -> None:
    keys = {row.key for row in rows()}
    for cell in _first_cells(page, header):
        section = ""
        for token in re.findall(r"`([^`]+)`", cell):  # `a.b`, `c`: c is a key of a's section
            token = token if "." in token or token.startswith("[") else f"{section}.{token}"
            section = token.strip("[]") if token.startswith("[") else token.rsplit(".", 1)[0]
            assert _is_setting(token, keys), f"docs/{page} names {token!r}, which the settings model does not have"


def test_the_hand_written_variable_table_names_only_real_variables() -> None:
    names = {row.env for row in rows()} | {"TRIAGE__SECTION__KEY"}
    for cell in _first_cells("configuration.md", "| environment variable | default | meaning |"):
        first = ""
        for token in re.findall(r"`([^`]+)`", cell):  # `TRIAGE_X_URL`, `_TOKEN`: TRIAGE_X_TOKEN
            name = first.rsplit("_", 1)[0] + token if token.startswith("_") else token
            first = first if token.startswith("_") else token
            assert name in names, f"docs/configuration.md names {name}, which no setting reads"
