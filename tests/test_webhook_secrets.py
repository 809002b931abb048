"""Standard Webhooks secrets as the reference library takes them (unpadded too); an unusable one stops `serve`."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from benchmarks.stack import free_port
from tests.factories import serve
from tests.harness import Stack
from triage.settings import SettingsError

#: 32 bytes: its base64 ends in one "=", which producers often leave out.
KEY = b"generic-secret-of-thirty-two-by!"
UNPADDED = "whsec_" + base64.b64encode(KEY).decode().rstrip("=")


def test_the_key_really_needs_padding() -> None:
    assert len(base64.b64encode(KEY).decode()) - len(UNPADDED.removeprefix("whsec_")) == 1


def test_an_unpadded_secret_verifies_what_the_reference_library_signs(migrated_sqlite_url: str) -> None:
    body = json.dumps({"external_id": "S-1", "text": "My router keeps rebooting"})
    stamp = datetime.fromtimestamp(int(time.time()), UTC)
    signature = Webhook(UNPADDED).sign("msg_unpadded", stamp, body)
    headers = {"content-type": "application/json", "webhook-id": "msg_unpadded",
               "webhook-timestamp": str(int(stamp.timestamp())), "webhook-signature": signature}
    with serve(migrated_sqlite_url, TRIAGE_WEBHOOK_SECRET_GENERIC=UNPADDED) as api:
        response = api.client.post("/webhooks/generic", content=body.encode(), headers=headers)
    assert response.status_code == 202, response.text


@pytest.mark.parametrize("secret", ["whsec_a", "whsec_not base64!", "whsec_"])
def test_an_undecodable_secret_is_refused_at_start_naming_the_variable(sqlite_url: str, secret: str) -> None:
    with pytest.raises(SettingsError, match="TRIAGE_WEBHOOK_SECRET_GENERIC") as refused, \
            serve(sqlite_url, TRIAGE_WEBHOOK_SECRET_GENERIC=secret):
        pass
    assert "whsec_" in str(refused.value) or "empty" in str(refused.value)
    if len(secret) > len("whsec_"):
        assert secret not in str(refused.value), "the secret is never echoed"


def test_serve_refuses_to_start_with_it(tmp_path: Path) -> None:
    stack = Stack(f"sqlite:///{tmp_path / 'triage.sqlite3'}", f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}",
                  api_base_url=None, extra_env={"TRIAGE_EXTRACTOR": "rules",
                                                "TRIAGE_WEBHOOK_SECRET_GENERIC": "whsec_s3cr3t!"})
    stack.migrate()
    result = stack.cli("serve", "--port", str(free_port()), timeout=60)
    stack.close()
    assert result.returncode == 2
    assert "TRIAGE_WEBHOOK_SECRET_GENERIC" in result.stderr and "s3cr3t" not in result.stderr
