"""Webhook adapters, authentication side: known-answer signatures per vendor, tampering, wrong
secrets, replay windows, malformed headers, unsigned installs, and the registry."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from triage.intake.platforms import (
    FRESHDESK_RULE_BODY,
    PLATFORMS,
    Ignored,
    InboundMessage,
    WebhookAuthError,
    WebhookConfigError,
    WebhookPayloadError,
    get_platform,
    html_to_text,
    sample_payloads,
    sign,
    signed_request,
)
from triage.intake.platforms import freshdesk as freshdesk_module

NOW = 1_700_000_000
SECRETS = {
    "generic": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "zendesk": "zd-signing-secret",
    "intercom": "intercom-client-secret",
    "chatwoot": "chatwoot-secret",
    "zammad": "zammad-token",
    "freshdesk": "fd-shared-secret",
}
SIGNATURE_HEADERS = {
    "generic": "webhook-signature", "zendesk": "X-Zendesk-Webhook-Signature", "intercom": "X-Hub-Signature",
    "chatwoot": "X-Chatwoot-Signature", "zammad": "X-Hub-Signature", "freshdesk": "X-Triage-Secret",
}
ALL = sorted(PLATFORMS)
BODY_SIGNED = [name for name in ALL if name != "freshdesk"]
TIMESTAMPED = ["chatwoot", "generic", "zendesk"]


def _request(name: str, now: float = NOW) -> tuple[bytes, dict[str, str]]:
    return signed_request(name, sample_payloads()[name], SECRETS[name], now)


def _without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() != name.lower()}


# ---- known answers, computed independently of the adapters ----------------------------------

def test_standard_webhooks_published_test_vector() -> None:
    secret, msg_id, timestamp = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    headers = sign("generic", body, secret, timestamp, delivery_id=msg_id)
    assert headers["webhook-signature"] == expected
    assert headers["webhook-id"] == msg_id and headers["webhook-timestamp"] == str(timestamp)
    PLATFORMS["generic"].verify(headers, body, secret, now=timestamp)
    key = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    assert "v1," + base64.b64encode(mac).decode() == expected


def test_zendesk_known_answer() -> None:
    body, timestamp = b'{"type":"zen:event-type:ticket.created"}', "2024-04-17T17:18:10Z"
    headers = sign("zendesk", body, "zd-signing-secret", 1_713_374_290)
    assert headers["X-Zendesk-Webhook-Signature-Timestamp"] == timestamp
    computed = base64.b64encode(hmac.new(b"zd-signing-secret", timestamp.encode() + body, hashlib.sha256).digest())
    assert headers["X-Zendesk-Webhook-Signature"] == computed.decode() == "nI7tu2dBrqcdHxNK0UXj8pqxoLYRhg45LisQt9FZ0oA="
    PLATFORMS["zendesk"].verify(headers, body, "zd-signing-secret", now=1_713_374_290)


def test_intercom_known_answer() -> None:
    body = b'{"topic":"ping"}'
    computed = "sha1=" + hmac.new(b"intercom-client-secret", body, hashlib.sha1).hexdigest()
    assert computed == "sha1=657c4b2773e904ea1f60c47d29b0f4cb53b118ce"
    assert sign("intercom", body, "intercom-client-secret", NOW)["X-Hub-Signature"] == computed
    PLATFORMS["intercom"].verify({"X-Hub-Signature": computed}, body, "intercom-client-secret", now=NOW)


def test_chatwoot_known_answer() -> None:
    body = b'{"event":"message_created"}'
    computed = "sha256=" + hmac.new(b"chatwoot-secret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert computed == "sha256=3fdcca276239854b135f64beb3774a398b59725f26b41eabcdee09f06dd55d44"
    headers = sign("chatwoot", body, "chatwoot-secret", NOW)
    assert headers["X-Chatwoot-Signature"] == computed and headers["X-Chatwoot-Timestamp"] == "1700000000"
    PLATFORMS["chatwoot"].verify({"X-Chatwoot-Signature": computed, "X-Chatwoot-Timestamp": "1700000000"},
                                 body, "chatwoot-secret", now=NOW)


def test_zammad_known_answer() -> None:
    body = b'{"ticket":{"id":5}}'
    computed = "sha1=" + hmac.new(b"zammad-token", body, hashlib.sha1).hexdigest()
    assert computed == "sha1=bd1add9cb7874afe456856fa7daed7051b7e2a17"
    assert sign("zammad", body, "zammad-token", NOW)["X-Hub-Signature"] == computed
    PLATFORMS["zammad"].verify({"X-Hub-Signature": computed}, body, "zammad-token", now=NOW)


def test_freshdesk_shared_secret_header() -> None:
    assert sign("freshdesk", b"{}", "fd-shared-secret", NOW)["X-Triage-Secret"] == "fd-shared-secret"
    PLATFORMS["freshdesk"].verify({"X-Triage-Secret": "fd-shared-secret"}, b"{}", "fd-shared-secret", now=NOW)


# ---- every platform: accept the genuine request, refuse the rest -------------------------------

@pytest.mark.parametrize("name", ALL)
def test_signed_sample_is_accepted_and_parsed(name: str) -> None:
    body, headers = _request(name)
    result = PLATFORMS[name].receive(headers, body, SECRETS[name], now=NOW)
    assert isinstance(result, InboundMessage) and result.source == name
    assert result.conversation_key and result.message_key and result.conversation.customer_text().strip()
    assert result.raw == json.loads(body)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("case", [str.lower, str.upper, str.title])
def test_header_names_are_case_insensitive(name: str, case: object) -> None:
    body, headers = _request(name)
    changed = {case(k): v for k, v in headers.items()}  # type: ignore[operator]
    assert isinstance(PLATFORMS[name].receive(changed, body, SECRETS[name], now=NOW), InboundMessage)


@pytest.mark.parametrize("name", BODY_SIGNED)
def test_tampered_body_is_refused(name: str) -> None:
    body, headers = _request(name)
    tampered = body.replace(b"e", b"E", 1)
    with pytest.raises(WebhookAuthError) as caught:
        PLATFORMS[name].verify(headers, tampered, SECRETS[name], now=NOW)
    assert caught.value.status == 401


@pytest.mark.parametrize("name", ALL)
def test_wrong_secret_is_refused(name: str) -> None:
    body, headers = _request(name)
    other = "whsec_" + base64.b64encode(b"another-secret").decode() if name == "generic" else "another-secret"
    with pytest.raises(WebhookAuthError):
        PLATFORMS[name].verify(headers, body, other, now=NOW)


@pytest.mark.parametrize("name", ALL)
def test_missing_signature_header_is_refused(name: str) -> None:
    body, headers = _request(name)
    with pytest.raises(WebhookAuthError, match="missing"):
        PLATFORMS[name].verify(_without(headers, SIGNATURE_HEADERS[name]), body, SECRETS[name], now=NOW)


@pytest.mark.parametrize(("name", "header"), [("generic", "webhook-id"), ("generic", "webhook-timestamp"),
                                              ("zendesk", "X-Zendesk-Webhook-Signature-Timestamp"),
                                              ("chatwoot", "X-Chatwoot-Timestamp")])
def test_missing_signed_companion_header_is_refused(name: str, header: str) -> None:
    body, headers = _request(name)
    with pytest.raises(WebhookAuthError, match="missing"):
        PLATFORMS[name].verify(_without(headers, header), body, SECRETS[name], now=NOW)


@pytest.mark.parametrize("name", ALL)
def test_non_ascii_signature_is_refused_not_crashed(name: str) -> None:
    body, headers = _request(name)
    headers = {**_without(headers, SIGNATURE_HEADERS[name]), SIGNATURE_HEADERS[name]: "sha256=签名é"}
    with pytest.raises(WebhookAuthError):
        PLATFORMS[name].verify(headers, body, SECRETS[name], now=NOW)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("secret", [None, ""])
def test_no_configured_secret_is_our_error_not_the_senders(name: str, secret: str | None) -> None:
    body, headers = _request(name)
    with pytest.raises(WebhookConfigError) as caught:
        PLATFORMS[name].verify(headers, body, secret, now=NOW)
    assert caught.value.status == 500


@pytest.mark.parametrize("name", TIMESTAMPED)
@pytest.mark.parametrize("skew", [-301, 301, -3600, 86400])
def test_stale_or_future_timestamp_is_refused(name: str, skew: int) -> None:
    body, headers = _request(name, now=NOW)
    with pytest.raises(WebhookAuthError, match="window"):
        PLATFORMS[name].verify(headers, body, SECRETS[name], now=NOW + skew)


@pytest.mark.parametrize("name", TIMESTAMPED)
@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_timestamp_inside_the_window_is_accepted(name: str, skew: int) -> None:
    body, headers = _request(name, now=NOW)
    PLATFORMS[name].verify(headers, body, SECRETS[name], now=NOW + skew)


@pytest.mark.parametrize("name", TIMESTAMPED)
def test_window_is_a_parameter(name: str) -> None:
    body, headers = _request(name, now=NOW)
    with pytest.raises(WebhookAuthError):
        get_platform(name, tolerance=30).verify(headers, body, SECRETS[name], now=NOW + 31)
    get_platform(name, tolerance=3600).verify(headers, body, SECRETS[name], now=NOW + 3000)


@pytest.mark.parametrize(("name", "header", "value"), [
    ("generic", "webhook-timestamp", "1700000000.5"), ("generic", "webhook-timestamp", "soon"),
    ("chatwoot", "X-Chatwoot-Timestamp", "-1700000000"), ("chatwoot", "X-Chatwoot-Timestamp", "9" * 5000),
    ("generic", "webhook-timestamp", "\uff11" + "\uff10" * 9),  # full-width digits
    ("zendesk", "X-Zendesk-Webhook-Signature-Timestamp", "x"),
])
def test_malformed_timestamp_is_refused(name: str, header: str, value: str) -> None:
    body, headers = _request(name)
    with pytest.raises(WebhookAuthError):
        PLATFORMS[name].verify({**_without(headers, header), header: value}, body, SECRETS[name], now=NOW)


def test_zendesk_timestamp_with_nanoseconds_and_offset_is_understood() -> None:
    zendesk = PLATFORMS["zendesk"]
    body = b"{}"
    for stamp in ("2023-11-14T22:13:20.123456789Z", "2023-11-14T23:13:20+01:00", "2023-11-14T22:13:20"):
        mac = base64.b64encode(hmac.new(b"k", stamp.encode() + body, hashlib.sha256).digest()).decode()
        zendesk.verify({"X-Zendesk-Webhook-Signature": mac, "X-Zendesk-Webhook-Signature-Timestamp": stamp},
                       body, "k", now=NOW)


# ---- Standard Webhooks: multi-signature headers and secrets ----------------------------------

def test_generic_skips_malformed_signature_entries() -> None:
    body, headers = _request("generic")
    valid = headers["webhook-signature"]
    noisy = f"v1 v1, ,,, v2,{valid[3:]} v1a,abc v1,@@@notbase64 garbage  v1,AAAA {valid} v1,zzz"
    PLATFORMS["generic"].verify({**headers, "webhook-signature": noisy}, body, SECRETS["generic"], now=NOW)


@pytest.mark.parametrize("value", ["", "   ", "v1", "v1,", "v1,@@@ v2,abc ,", "v2," + "A" * 44, "\x00,\x00"])
def test_generic_all_malformed_entries_is_an_auth_error_never_a_crash(value: str) -> None:
    body, headers = _request("generic")
    with pytest.raises(WebhookAuthError):
        PLATFORMS["generic"].verify({**headers, "webhook-signature": value}, body, SECRETS["generic"], now=NOW)


def test_generic_secret_without_prefix_is_the_same_key() -> None:
    body, headers = _request("generic")
    PLATFORMS["generic"].verify(headers, body, SECRETS["generic"].removeprefix("whsec_"), now=NOW)


@pytest.mark.parametrize("secret", ["whsec_not base64!", "whsec_", "whsec_abcde"])
def test_generic_malformed_secret_is_a_config_error(secret: str) -> None:
    body, headers = _request("generic")
    with pytest.raises(WebhookConfigError, match=r"whsec_|empty"):
        PLATFORMS["generic"].verify(headers, body, secret, now=NOW)
    with pytest.raises(WebhookConfigError):
        PLATFORMS["generic"].check_secret(secret)


# ---- installs that cannot sign (Chatwoot before signing, Zammad without a token) --------------

@pytest.mark.parametrize("name", ["chatwoot", "zammad"])
def test_unsigned_requests_need_explicit_permission(name: str) -> None:
    body = json.dumps(sample_payloads()[name]).encode()
    with pytest.raises(WebhookConfigError):
        PLATFORMS[name].verify({}, body, None, now=NOW)
    permissive = get_platform(name, allow_unsigned=True)
    permissive.check_secret(None)
    assert isinstance(permissive.receive({}, body, None, now=NOW), InboundMessage)


@pytest.mark.parametrize("name", ["chatwoot", "zammad"])
def test_allow_unsigned_never_downgrades_a_configured_secret(name: str) -> None:
    body, headers = _request(name)
    permissive = get_platform(name, allow_unsigned=True)
    permissive.verify(headers, body, SECRETS[name], now=NOW)
    with pytest.raises(WebhookAuthError, match="missing"):
        permissive.verify(_without(headers, SIGNATURE_HEADERS[name]), body, SECRETS[name], now=NOW)
    with pytest.raises(WebhookAuthError):
        permissive.verify(headers, body + b" ", SECRETS[name], now=NOW)


def test_allow_unsigned_exists_only_where_the_vendor_may_not_sign() -> None:
    for name in ("generic", "zendesk", "intercom", "freshdesk"):
        with pytest.raises(TypeError):
            get_platform(name, allow_unsigned=True)


# ---- registry, samples, helpers -------------------------------------------------------------

def test_registry_and_errors() -> None:
    assert sorted(PLATFORMS) == ["chatwoot", "freshdesk", "generic", "intercom", "zammad", "zendesk"]
    with pytest.raises(KeyError):
        get_platform("helpscout")
    assert get_platform("zendesk") is PLATFORMS["zendesk"]
    assert (WebhookAuthError("x").status, WebhookPayloadError("x").status, WebhookConfigError("x").status) == (
        401, 400, 500)
    assert WebhookPayloadError("why").reason == "why"


def test_sample_payloads_are_fresh_copies_with_english_customer_text() -> None:
    samples = sample_payloads()
    assert sorted(samples) == ALL
    samples["chatwoot"]["content"] = "changed"
    assert sample_payloads()["chatwoot"]["content"] != "changed"
    for name, payload in sample_payloads().items():
        result = PLATFORMS[name].parse({}, json.dumps(payload).encode())
        assert isinstance(result, InboundMessage)
        assert result.conversation.customer_text().isascii()


def test_signed_request_keeps_chinese_text_as_utf8() -> None:
    body, headers = signed_request("generic", {"external_id": "C-1", "text": "路由器一直重启，怎么办？"},
                                   SECRETS["generic"], NOW)
    assert "路由器".encode() in body
    result = PLATFORMS["generic"].receive(headers, body, SECRETS["generic"], now=NOW)
    assert isinstance(result, InboundMessage) and result.conversation.customer_text() == "路由器一直重启，怎么办？"


def test_sign_derives_a_stable_delivery_id_when_none_is_given() -> None:
    for name, header in (("generic", "webhook-id"), ("chatwoot", "X-Chatwoot-Delivery"),
                         ("zammad", "X-Zammad-Delivery")):
        first, second = sign(name, b"{}", SECRETS[name], NOW), sign(name, b"{}", SECRETS[name], NOW + 5)
        assert first[header] == second[header] != sign(name, b"[]", SECRETS[name], NOW)[header]


def test_freshdesk_rule_body_is_documented_and_valid_once_substituted() -> None:
    assert FRESHDESK_RULE_BODY in (freshdesk_module.__doc__ or "").replace("\n    ", "\n")
    values = {"ticket.id": "5123", "ticket.subject": "Broken zipper",
              "ticket.description_text": "The zipper broke\non day two.", "ticket.requester.name": "Li Lei",
              "ticket.requester.email": "li@example.com"}
    body = FRESHDESK_RULE_BODY
    for key, value in values.items():
        body = body.replace("{{" + key + "}}", value)
    assert "{{" not in body
    result = PLATFORMS["freshdesk"].parse({}, body.encode())
    assert isinstance(result, InboundMessage)
    assert result.conversation.customer_text() == "Broken zipper\n\nThe zipper broke\non day two."
    assert result.customer == {"name": "Li Lei", "email": "li@example.com"}


@pytest.mark.parametrize(("html", "text"), [
    ("<p>One</p><p>Two</p>", "One\nTwo"),
    ("a<br>b<br/>c", "a\nb\nc"),
    ("<ul><li>x</li><li>y</li></ul>", "x\ny"),
    ("<style>p{color:red}</style><script>alert(1)</script><p>kept</p>", "kept"),
    ("Tom &amp; Jerry &lt;3 &#20320;&#22909;", "Tom & Jerry <3 你好"),
    ("<div>  spaced\n\n  out  </div>", "spaced out"),
    ("<p>我的洗衣机显示 <b>E21</b> 错误。</p>", "我的洗衣机显示 E21 错误。"),
    ("no markup at all", "no markup at all"),
    ("<p>unclosed <b>bold", "unclosed bold"),
])
def test_html_to_text(html: str, text: str) -> None:
    assert html_to_text(html) == text


def test_ignored_is_a_plain_value() -> None:
    assert Ignored("ping") == Ignored("ping") and Ignored("ping").reason == "ping"
