"""Settings of the outbound side: the contract's names (``[writeback.zendesk.routes."..."]``,
``TRIAGE_WRITEBACK_*``, ``[[events.endpoints]]``, ``[alerts] webhook_url``), write-back switched
on by its URL (Intercom: its token), and malformed values refused at start-up naming the
variable or key, without ever echoing a secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import ready_environ
from tests.harness import REPO
from tests.writeback_cases import ROUTING_TOML
from triage.settings import AlertsSettings, EventsSettings, Settings, SettingsError, WritebackSettings, load_settings

EVENTS_SECRET = "whsec_dHJpYWdlLWV2ZW50cy10ZXN0LXNlY3JldC0zMmI="
ZENDESK_ENV = {"TRIAGE_WRITEBACK_ZENDESK_URL": "https://acme.zendesk.com/", "TRIAGE_WRITEBACK_ZENDESK_EMAIL":
               "bot@acme.test", "TRIAGE_WRITEBACK_ZENDESK_TOKEN": "zd-token-7f3a"}
CONTRACT_TOML = '''
[writeback.zendesk.routes."hardware-escalation"]
group_id = 360001
priority = "urgent"
tags = ["triage-hw"]

[[events.endpoints]]
url = "https://hooks.example.com/triage?source=prod"
secret = "whsec_dHJpYWdlLWV2ZW50cy10ZXN0LXNlY3JldC0zMmI="
events = ["ticket.routed", "delivery.failed"]

[alerts]
webhook_url = "https://hooks.slack.com/services/T000/B000/XXXXXXXX"
'''


def _load(tmp_path: Path, toml: str = "", env: dict[str, str] | None = None) -> Settings:
    config = tmp_path / "triage.toml"
    config.write_text(ROUTING_TOML + toml, encoding="utf-8")
    return load_settings({"TRIAGE_CONFIG": str(config), **(env or {})})


def _refused(tmp_path: Path, toml: str = "", env: dict[str, str] | None = None) -> str:
    with pytest.raises(SettingsError) as caught:
        _load(tmp_path, toml, env)
    return str(caught.value)


def test_the_contract_names_configure_zendesk_events_and_alerts(tmp_path: Path) -> None:
    settings = _load(tmp_path, CONTRACT_TOML, ZENDESK_ENV)
    zendesk = settings.writeback.zendesk
    assert settings.writeback.enabled_platforms() == ("zendesk",)
    assert (zendesk.url, zendesk.email) == ("https://acme.zendesk.com", "bot@acme.test")
    assert zendesk.token is not None and zendesk.token.get_secret_value() == "zd-token-7f3a"
    route = zendesk.routes["hardware-escalation"]
    assert (route.group_id, route.priority, route.tags) == (360001, "urgent", ["triage-hw"])
    assert settings.writeback.max_attempts == 10 and settings.writeback.note is False
    [endpoint] = settings.events.endpoints
    assert endpoint.events == ["ticket.routed", "delivery.failed"] and endpoint.url.endswith("?source=prod")
    assert settings.alerts.webhook_url is not None and settings.alerts.priorities == ["P1"]
    assert "XXXXXXXX" not in repr(settings) and "zd-token-7f3a" not in repr(settings)


@pytest.mark.parametrize(("platform", "env"), [
    ("intercom", {"TRIAGE_WRITEBACK_INTERCOM_TOKEN": "ic-token", "TRIAGE_WRITEBACK_INTERCOM_ADMIN_ID": "991"}),
    ("chatwoot", {"TRIAGE_WRITEBACK_CHATWOOT_URL": "https://app.chatwoot.com", "TRIAGE_WRITEBACK_CHATWOOT_TOKEN": "t",
                  "TRIAGE_WRITEBACK_CHATWOOT_ACCOUNT_ID": "3"}),
    ("zammad", {"TRIAGE_WRITEBACK_ZAMMAD_URL": "https://support.acme.test", "TRIAGE_WRITEBACK_ZAMMAD_TOKEN": "t"}),
    ("freshdesk", {"TRIAGE_WRITEBACK_FRESHDESK_URL": "https://acme.freshdesk.com",
                   "TRIAGE_WRITEBACK_FRESHDESK_TOKEN": "key"}),
])
def test_each_platform_is_switched_on_by_its_variables(tmp_path: Path, platform: str, env: dict[str, str]) -> None:
    settings = _load(tmp_path, env=env)
    assert settings.writeback.enabled_platforms() == (platform,)
    section = settings.writeback.platform(platform)
    assert section.token is not None


def test_intercom_defaults_us_region_and_a_pinned_version(tmp_path: Path) -> None:
    intercom = _load(tmp_path).writeback.intercom
    assert (intercom.url, intercom.version, intercom.priority_via) == ("https://api.intercom.io", "2.14", "none")
    assert not intercom.enabled


def test_an_empty_variable_leaves_write_back_off(tmp_path: Path) -> None:
    settings = _load(tmp_path, env={"TRIAGE_WRITEBACK_ZENDESK_URL": "", "TRIAGE_WRITEBACK_ZENDESK_TOKEN": " "})
    assert settings.writeback.enabled_platforms() == ()


@pytest.mark.parametrize(("toml", "env", "named"), [
    ("", {**ZENDESK_ENV, "TRIAGE_WRITEBACK_ZENDESK_URL": "acme.zendesk.com"},
     "TRIAGE_WRITEBACK_ZENDESK_URL=<redacted>: must be an http:// or https:// URL with a host"),
    ("", {**ZENDESK_ENV, "TRIAGE_WRITEBACK_ZENDESK_URL": "https://bot:hunter2@acme.zendesk.com"},
     "TRIAGE_WRITEBACK_ZENDESK_URL=<redacted>: must not carry credentials"),
    ("", {**ZENDESK_ENV, "TRIAGE_WRITEBACK_ZENDESK_URL": "https://acme.zendesk.com/?x=1"},
     "TRIAGE_WRITEBACK_ZENDESK_URL=<redacted>: must be a base URL"),
    ("", {"TRIAGE_WRITEBACK_ZENDESK_URL": "https://acme.zendesk.com"},
     "TRIAGE_WRITEBACK_ZENDESK_URL is set, so write-back to zendesk is on, but TRIAGE_WRITEBACK_ZENDESK_EMAIL and "
     "TRIAGE_WRITEBACK_ZENDESK_TOKEN are not set"),
    ("", {**ZENDESK_ENV, "TRIAGE_WRITEBACK_ZENDESK_TOKEN": "zd token\n"},
     "TRIAGE_WRITEBACK_ZENDESK_TOKEN=<redacted>: must be printable ASCII"),
    ("", {**ZENDESK_ENV, "TRIAGE_WRITEBACK_ZENDESK_EMAIL": "bot"}, "TRIAGE_WRITEBACK_ZENDESK_EMAIL='bot'"),
    ("", {"TRIAGE_WRITEBACK_INTERCOM_TOKEN": "ic-token"}, "but TRIAGE_WRITEBACK_INTERCOM_ADMIN_ID is not set"),
    ("", {"TRIAGE_WRITEBACK_CHATWOOT_ACCOUNT_ID": "acme"},
     "TRIAGE_WRITEBACK_CHATWOOT_ACCOUNT_ID='acme': Input should be a valid integer"),
    ("", {"TRIAGE_WRITEBACK_CHATWOOT_URL": "https://app.chatwoot.com", "TRIAGE_WRITEBACK_CHATWOOT_TOKEN": "t"},
     "but TRIAGE_WRITEBACK_CHATWOOT_ACCOUNT_ID is not set"),
    ("", {"TRIAGE_WRITEBACK_ZAMMAD_URL": "https://support.acme.test"}, "but TRIAGE_WRITEBACK_ZAMMAD_TOKEN is not set"),
    ('[writeback.zendesk.routes."hardware-escalation"]\npriority = "critical"\n', {},
     "writeback.zendesk.routes.hardware-escalation.priority='critical': Input should be 'urgent', 'high', 'normal' "
     "or 'low'"),
    ('[writeback.freshdesk.routes."hardware-escalation"]\npriority = 5\n', {},
     "writeback.freshdesk.routes.hardware-escalation.priority=5: Input should be less than or equal to 4"),
    ('[writeback.freshdesk.priorities]\nP1 = 0\n', {}, "writeback.freshdesk.priorities.P1=0"),
    ('[writeback.chatwoot.routes."hardware-escalation"]\npriority = "normal"\n', {},
     "writeback.chatwoot.routes.hardware-escalation.priority='normal'"),
    ('[writeback.zendesk.routes."hardware-escalaton"]\ngroup_id = 1\n', {},
     "writeback.zendesk.routes: 'hardware-escalaton' is not a route of [routing]"),
    ('[writeback.zendesk.priorities]\nP9 = "low"\n', {}, "writeback.zendesk.priorities: 'P9' is not a priority"),
    ('[writeback.zendesk.routes."hardware-escalation"]\ntags = ["Triage HW"]\n', {},
     "writeback.zendesk.routes.hardware-escalation.tags.0='Triage HW': String should match pattern"),
    ('[writeback.zammad.routes."hardware-escalation"]\ngroup_id = 1\ngroup = "Users"\n', {},
     "set group_id or group, not both"),
    ('[writeback.intercom]\npriority_via = "tag"\n', {}, "writeback.intercom.priority_via='tag'"),
    ('[writeback.intercom]\npriority_via = "priority_field"\n', {},
     'writeback.intercom.priority_via = "priority_field" needs writeback.intercom.version = "Preview"'),
    ('[writeback]\ngive_up_after_hours = 0\n', {}, "writeback.give_up_after_hours=0: Input should be greater than 0"),
    ('[writeback]\nprobe_cache_seconds = -1\n', {}, "writeback.probe_cache_seconds=-1"),
    ('[writeback.zendesk]\nclear_assignee_on_group_change = "sometimes"\n', {},
     "writeback.zendesk.clear_assignee_on_group_change='sometimes'"),
    ('[writeback]\ntag_prefix = "Triage "\n', {}, "writeback.tag_prefix='Triage '"),
    ('[writeback]\ntriage_url = "triage.example.com"\n', {}, "writeback.triage_url='triage.example.com'"),
    ('[[events.endpoints]]\nurl = "https://h.example"\nsecret = "whsec_not*base64"\nevents = ["ticket.routed"]\n', {},
     "events.endpoints.0.secret=<redacted>: a Standard Webhooks secret must be whsec_<base64>"),
    (f'[[events.endpoints]]\nurl = "https://h.example"\nsecret = "{EVENTS_SECRET}"\nevents = ["ticket.deleted"]\n', {},
     "events.endpoints.0.events.0=<redacted>: Input should be 'ticket.routed'"),
    (f'[[events.endpoints]]\nurl = "file:///etc/passwd"\nsecret = "{EVENTS_SECRET}"\nevents = ["ticket.routed"]\n',
     {}, "events.endpoints.0.url=<redacted>: must be an http:// or https:// URL"),
    (f'[[events.endpoints]]\nurl = "https://h.example"\nsecret = "{EVENTS_SECRET}"\nevents = []\n', {},
     "events.endpoints.0.events=<redacted>: List should have at least 1 item"),
    (f'[[events.endpoints]]\nurl = "https://h.example"\nsecret = "{EVENTS_SECRET}"\nevents = ["ticket.routed"]\n'
     f'[[events.endpoints]]\nurl = "https://h.example"\nsecret = "{EVENTS_SECRET}"\nevents = ["ticket.claimed"]\n',
     {}, "endpoint 2 has the same url as endpoint 1"),
    ('[alerts]\nwebhook_url = "hooks.slack.com/services/T000/B000/XXXXXXXX"\n', {},
     "alerts.webhook_url=<redacted>: must be an http:// or https:// URL"),
    ('[alerts]\nwebhook_url = "https://hooks.slack.com/services/T000/B000/XXXXXXXX"\npriorities = ["urgent"]\n', {},
     "alerts.priorities: 'urgent' is not a priority of [routing]"),
])
def test_malformed_values_are_refused_naming_the_key(tmp_path: Path, toml: str, env: dict[str, str],
                                                     named: str) -> None:
    message = _refused(tmp_path, toml, env)
    assert named in message
    secrets = ("hunter2", "zd-token-7f3a", "zd token", "XXXXXXXX", "not*base64", EVENTS_SECRET.removeprefix("whsec_"))
    assert not [secret for secret in secrets if secret in message]


def test_the_deadline_and_the_zendesk_switch_are_settings_fractions_allowed(tmp_path: Path) -> None:
    defaults = _load(tmp_path).writeback
    assert (defaults.give_up_after_hours, defaults.max_attempts, defaults.probe_cache_seconds) == (24.0, 10, 600.0)
    assert defaults.zendesk.clear_assignee_on_group_change is True
    toml = ('[writeback]\ngive_up_after_hours = 1.5\n[writeback.zendesk]\nclear_assignee_on_group_change = false\n'
            '[writeback.intercom]\npriority_via = "priority_field"\nversion = "Preview"\n')
    chosen = _load(tmp_path, toml, {"TRIAGE__WRITEBACK__PROBE_CACHE_SECONDS": "30"}).writeback
    assert (chosen.give_up_after_hours, chosen.probe_cache_seconds) == (1.5, 30.0)
    assert chosen.zendesk.clear_assignee_on_group_change is False and chosen.intercom.priority_via == "priority_field"


def test_priority_field_without_preview_makes_the_worker_exit_2_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "triage.toml"
    config.write_text(ROUTING_TOML + '[writeback.intercom]\npriority_via = "priority_field"\nversion = "2.14"\n',
                      encoding="utf-8")
    env = {**ready_environ(tmp_path), "TRIAGE_CONFIG": str(config), "TRIAGE_WRITEBACK_INTERCOM_TOKEN": "ic-token-77",
           "TRIAGE_WRITEBACK_INTERCOM_ADMIN_ID": "991"}
    worker = subprocess.run([sys.executable, "-m", "triage", "worker"], env=env, cwd=REPO, capture_output=True,
                            text=True, timeout=120, check=False)
    assert worker.returncode == 2 and worker.stdout == ""
    [line] = worker.stderr.splitlines()
    assert line.startswith('triage: writeback.intercom.priority_via = "priority_field" needs '
                           'writeback.intercom.version = "Preview"') and "ic-token-77" not in line


def test_the_shipped_config_states_the_defaults_and_switches_nothing_on() -> None:
    settings = load_settings({"TRIAGE_CONFIG": str(REPO / "config" / "triage.toml")})
    assert settings.writeback == WritebackSettings() and settings.writeback.enabled_platforms() == ()
    assert settings.events == EventsSettings() and settings.alerts == AlertsSettings()
