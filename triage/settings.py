"""One typed settings object, built from environment variables and ``config/`` files.

Sources, lowest priority first:

1. the defaults below;
2. the TOML file named by ``TRIAGE_CONFIG`` (default ``config/triage.toml`` in the working
   directory, else the one shipped beside the ``triage`` package);
3. the environment variables listed in :data:`ENV_KEYS`, and any ``TRIAGE__SECTION__KEY``
   variable, which sets ``key`` in ``[section]`` (e.g. ``TRIAGE__RETRY__MAX_RETRIES=3``).

Any bad value stops start-up with :class:`SettingsError`, naming the key and the value::

    >>> load_settings({"TRIAGE_EXTRACTOR": "magic"})
    Traceback (most recent call last):
    ...
    triage.settings.SettingsError: TRIAGE_EXTRACTOR='magic': Input should be 'llm', 'rules' or 'learned'
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, TypeVar, get_args
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from triage.errors import ConfigError
from triage.resources import CONFIG_DIR
from triage.standard_webhooks import SecretFormatError, secret_key
from triage.states.autonomy import Level, Thresholds

DEFAULT_CONFIG_PATH = Path("config/triage.toml")
#: The config shipped with the package, used when the working directory has no config/.
SHIPPED_CONFIG_PATH = CONFIG_DIR / DEFAULT_CONFIG_PATH.name
VAR_DIR = Path("var")


class SettingsError(ConfigError):
    """A setting is missing or invalid; the message names the key and what to do."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SchemaSettings(_Section):
    #: The ticket JSON Schema; the prompt is generated from it.
    path: Path = Path("config/ticket_schema.json")


class ModelPrice(_Section):
    """``[extraction.prices."<model>"]``: what a model's tokens cost, per million (any one currency)."""

    #: Price of a million prompt tokens (any one currency).
    input_per_million: float = Field(ge=0)
    #: Price of a million completion tokens (the same currency).
    output_per_million: float = Field(ge=0)


class ExtractionSettings(_Section):
    #: LLM answers per extraction, re-asks included.
    attempts: int = Field(3, ge=1, le=10)
    #: The first answer's token budget.
    max_completion_tokens: int = Field(1024, ge=16)
    #: A truncated answer (``finish_reason: length``) doubles the budget up to this.
    max_completion_tokens_cap: int = Field(4096, ge=16)
    #: MiMo's ``thinking`` switch, sent on every call.
    thinking: bool = False
    #: Stream the answer (SSE); the result is identical.
    stream: bool = False
    #: Timeout of one HTTP call to the LLM API.
    timeout_seconds: float = Field(60.0, gt=0)
    #: Sampling temperature, sent when thinking is off.
    temperature: float = Field(0.0, ge=0, le=2)
    #: Longest conversation transcript sent, in characters; longer ones are trimmed
    #: (first customer message + latest turns, see triage.extraction.trim).
    max_input_chars: int = Field(24_000, ge=1_000)
    #: Models to move to, in order, when the main one (TRIAGE_MODEL) is retired (404) or failing.
    fallback_models: list[str] = Field(default_factory=list)
    #: Models a call may go to, in order, when the one chosen (TRIAGE_MODEL, or the fallback chain's current
    #: model) has no rate budget left in this window; each has its own budget (``rate_limit``). A model may be
    #: here and in ``fallback_models`` too (budget and failure are separate questions).
    overflow_models: list[str] = Field(default_factory=list)
    #: A conversation whose normalised text (whitespace and case folded, PII placeholders applied), schema and
    #: prompt version match an LLM extraction routed within this many seconds reuses it with no call; 0: off.
    dedupe_window_seconds: float = Field(3600.0, ge=0)
    #: Sources (``conversations.source``, e.g. ``zendesk``) left out of de-duplication both ways: their tickets
    #: never reuse an earlier extraction and are never reused.
    dedupe_sources_off: list[str] = Field(default_factory=list)
    #: Consecutive 5xx answers that open a model's circuit, and how long it stays open.
    circuit_failures: int = Field(5, ge=1)
    #: How long an open circuit keeps a model out before one trial call may close it again.
    circuit_open_seconds: float = Field(60.0, gt=0)
    #: How long a model that answered 404 is skipped.
    retired_model_seconds: float = Field(3600.0, gt=0)
    #: A suspected injection whose answer would put the ticket on a route of ``injection_review_priorities``
    #: goes to review instead.
    injection_review: bool = True
    #: The priorities a ticket flagged ``injection_suspected`` is not given on the model's word alone.
    injection_review_priorities: list[str] = Field(default_factory=lambda: ["P0", "P1"])
    #: Injection patterns, name -> regular expression over folded customer text; empty: the shipped
    #: ones (triage.extraction.injection_patterns). A non-empty table replaces them.
    injection_patterns: dict[str, str] = Field(default_factory=dict)
    #: Several conversations in one call (see docs/extraction.md, "Batched extraction"): ``auto`` when the leasable
    #: queue is longer than the model's requests per window (one call per ticket would not keep up),
    #: ``always`` whenever other tickets are waiting, ``never``: one call per ticket.
    batch_mode: Literal["auto", "always", "never"] = "auto"
    #: Most conversations in one call (the keys are ``c1``..``cK``).
    batch_size: int = Field(10, ge=1, le=100)
    #: Most estimated prompt tokens in one batch call; what does not fit goes in the next call.
    batch_max_input_tokens: int = Field(32_000, ge=1_000)
    #: A batch's answer budget is ``max_completion_tokens`` per conversation, capped by this.
    batch_max_completion_tokens: int = Field(8_192, ge=16)
    #: Token prices by model (``triage evaluate`` reports tokens and cost per 1,000 tickets from them).
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    #: Ask the API for the answer's token log probabilities (``logprobs: true``); each routing field's value then
    #: gets a probability (``ExtractionResult.logprob_confidence``, triage.extraction.logprobs) that the ticket's
    #: confidence combines. A model whose endpoint answers 400 to the parameter is asked without it from then on
    #: (in this process, logged once), and that call is sent again at once without it: it never costs a ticket.
    logprobs: bool = Field(False, description="ask the LLM API for token log probabilities (logprobs: true); "
                                              "dropped for a model that answers 400 to it")

    @field_validator("injection_patterns")
    @classmethod
    def _patterns_compile(cls, patterns: dict[str, str]) -> dict[str, str]:
        for name, pattern in patterns.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {name!r} is not a valid regular expression: {exc}") from None
        return patterns


class PrivacySettings(_Section):
    """What is redacted from the text sent to the LLM API (the stored conversation keeps all).

    ``redact_pii`` switches redaction off altogether; the others switch one kind each.
    ``retention_days``: conversations (with their tickets, attempts and events) older than this
    are purged by the scheduled retention job; ``None`` (the default) keeps everything.
    """

    #: Replace personal data in the text sent to the LLM API with placeholders (false: none of the kinds below); the
    #: stored conversation keeps the original.
    redact_pii: bool = True
    #: E-mail addresses become ``[EMAIL]``.
    emails: bool = True
    #: Phone numbers become ``[PHONE]``.
    phones: bool = True
    #: 13-19 digit numbers passing the Luhn check become ``[CARD]``.
    cards: bool = True
    #: Chinese resident ID numbers with a valid check character become ``[ID_NUMBER]``.
    id_numbers: bool = True
    #: Conversations older than this are purged by the scheduled retention job, as ``triage purge`` does; unset keeps
    #: everything.
    retention_days: int | None = Field(None, ge=1)


class EvaluationSettings(_Section):
    """``triage evaluate``: where the labelled public data sets are (``TRIAGE_EVAL_DATA``)."""

    #: The folder holding ``banking77/``, ``bitext/`` and ``stc3/`` for ``triage evaluate`` and ``triage learn``
    #: (relative to the config file; ``--data`` wins).
    data: Path | None = None


class FallbackSettings(_Section):
    """The fallback queue's extractor: ``auto`` is the learned one once a model is stored, else the rules."""

    #: The fallback queue's extractor: ``auto`` (the learned one once a model is stored, else the rules), ``rules``, or
    #: ``learned`` (a worker stops at start-up while no model is stored).
    extractor: Literal["auto", "rules", "learned"] = "auto"


class LearnSettings(_Section):
    """The learned extractor (``triage learn``; see triage.learning): how it is fitted and how workers follow it.

    The featurizer's settings are stored with each model version, so a version is scored as it was fitted.
    """

    #: The scheduled retraining runs once this many new reviews arrived since the latest version.
    min_new_labels: int = Field(200, ge=1)
    #: How often a worker asks the database whether a newer version is stored (at most a minute).
    poll_seconds: float = Field(30.0, gt=0, le=60)
    #: Folds of the seeded, stratified cross-validation (learn's report, evaluate --split test, retraining).
    folds: int = Field(5, ge=2, le=20)
    #: Seed of the cross-validation's folds.
    seed: int = Field(0, ge=0)
    #: Word n-grams and character n-grams (within word boundaries: Chinese, unspaced, works) of the TF-IDF.
    word_ngrams: tuple[int, int] = (1, 2)
    #: Lengths of the character n-grams of the TF-IDF, within word boundaries.
    char_ngrams: tuple[int, int] = (2, 5)
    #: A term is kept when it is in at least this many texts; each part keeps at most ``max_features`` terms.
    min_df: int = Field(2, ge=1)
    #: The most terms each part of the TF-IDF (words, characters) keeps.
    max_features: int = Field(100_000, ge=100)
    #: The linear SVM's regularisation (scikit-learn's ``C``; smaller: smoother).
    c: float = Field(0.5, gt=0)
    #: A class with fewer labelled rows than this is left out of its field's model (the rules decide it).
    min_class_rows: int = Field(10, ge=2)
    #: Model versions kept in the database; older ones are deleted when a new one is stored.
    keep_versions: int = Field(5, ge=1)

    @field_validator("word_ngrams", "char_ngrams")
    @classmethod
    def _ngram_range(cls, value: tuple[int, int]) -> tuple[int, int]:
        low, high = value
        if not 1 <= low <= high <= 8:
            raise ValueError("give [lowest, highest] n-gram lengths, 1 <= lowest <= highest <= 8")
        return value


class CalibrateSettings(_Section):
    """``triage calibrate`` and its scheduled job (see triage.confidence): fitting the confidence on the reviews."""

    #: The scheduled calibration runs once this many new reviews arrived since the latest version.
    min_new_labels: int = Field(200, ge=1)
    #: A (routing field, extractor) head is fitted only with at least this many labelled decisions, right and
    #: wrong ones among them; with fewer, the documented default combination stays in use for it.
    min_labels: int = Field(50, ge=10)
    #: Calibration versions kept in the database; older ones are deleted when a new one is stored.
    keep_versions: int = Field(5, ge=1)


class QualitySettings(_Section):
    """What "good enough" means for the confidence thresholds: the Quality page and the route-accuracy alert."""

    #: The share of tickets at or above a confidence threshold that should survive review: `triage calibrate`
    #: and the Quality page report the lowest thresholds that reach it; the route-accuracy alert's target.
    target_precision: float = Field(0.95, gt=0, le=1, description=(
        "share of tickets at or above a confidence threshold that should survive review; triage calibrate "
        "and the Quality page report the lowest thresholds reaching it, and the route-accuracy alert's target"))


class RetrySettings(_Section):
    #: Celery retries for 429, 5xx, timeouts and connection errors of the LLM API, then the fallback queue.
    max_retries: int = Field(8, ge=0)
    #: Exponential backoff: half of ``base * 2^n`` plus jitter.
    backoff_base_seconds: float = Field(2.0, gt=0)
    #: The cap of one backoff wait.
    backoff_max_seconds: float = Field(300.0, gt=0)
    #: A longer ``Retry-After`` is clamped to this.
    retry_after_max_seconds: float = Field(900.0, gt=0)


class DatabasePoolSettings(_Section):
    """Each process's pool of database connections (SQLAlchemy's ``QueuePool``; SQLite keeps its own)."""

    #: Connections a process keeps open for reuse. It should cover what the process runs at once (a worker's
    #: threads and their lease renewals, serve's request threads: 40): past it, every transaction opens a new
    #: connection and closes it again, which costs both the process and the server a connection's start.
    size: int = Field(40, ge=1)
    #: Connections opened beyond ``size`` at a peak, closed again after use.
    max_overflow: int = Field(10, ge=0)


class WorkerSettings(_Section):
    #: Threads per worker process (``triage worker --concurrency`` overrides it).
    concurrency: int = Field(4, ge=1)
    #: How long a worker's lease on a ticket lasts without a renewal: a killed worker's tickets come back after it.
    lease_seconds: float = Field(60, gt=0)
    #: How often a working worker renews the lease of each ticket it holds (shorter than the lease).
    heartbeat_seconds: float = Field(20, gt=0)
    #: A ``queued``/``fallback`` ticket nobody holds is published again after waiting this long.
    stuck_after_seconds: float = Field(900, gt=0)
    #: How often beat runs the sweep (expired leases, stuck tickets, lost deliveries).
    sweep_interval_seconds: float = Field(15, gt=0)
    #: Redis redelivers a message not acknowledged for this long; must exceed the longest retry wait plus the longest
    #: task (checked at start).
    visibility_timeout_seconds: int = Field(3600, gt=0)
    #: Port of the worker's Prometheus endpoint (``triage worker --metrics-port``); 0 turns it off.
    metrics_port: int = Field(0, ge=0, le=65535)


class JobSettings(_Section):
    """The scheduled jobs run by ``triage beat`` (each also a CLI command)."""

    #: A ticket re-enqueued this many times by the sweep goes to needs_review with reason ``poison``.
    max_requeues: int = Field(5, ge=1)
    #: needs_review tickets that failed for a transient reason get one fresh LLM pass after this long.
    retry_fallback_after_seconds: float = Field(900, ge=0)
    #: How often beat looks for tickets due their fresh LLM pass.
    retry_fallback_interval_seconds: float = Field(300, gt=0)
    #: Fallback reasons counted as transient (the API was down, rate limited or timing out).
    transient_reasons: list[str] = Field(default_factory=lambda: [
        "retries_exhausted", "api_error", "api_error_429", "api_error_500", "api_error_502", "api_error_503",
        "api_error_504"])
    #: How often beat runs the retention purge (it does nothing unless ``privacy.retention_days`` is set).
    purge_interval_seconds: float = Field(3600, gt=0)
    #: How often beat retrains the learned extractor on the stored training set plus the reviews (it stores a new
    #: version only once ``learn.min_new_labels`` new reviews arrived, and only when it is at least as good); 0: off.
    learn_interval_hours: float = Field(6, ge=0)
    #: How often beat refits the confidence's calibration on the reviews (it stores a new version only once
    #: ``calibrate.min_new_labels`` new reviews arrived since the latest one); 0: off.
    calibrate_interval_hours: float = Field(6, ge=0)
    #: The share of a job's interval its lock is held, so a second beat's run of the same slot is skipped.
    lock_share: float = Field(0.9, gt=0, le=1)


class RouteTarget(_Section):
    #: The route (a team's queue) the ticket goes to.
    route: str = Field(min_length=1)
    #: The priority it gets (``P1``...).
    priority: str = Field(min_length=1)
    #: Hours from the start of the customer's wait to the ticket's SLA due time.
    sla_hours: float = Field(gt=0)


#: A value a routing rule can ask a field to have (TOML has no null).
RuleValue = str | int | float | bool


class RouteRule(RouteTarget):
    """Matches when every ``when`` field (any field of the ticket schema) equals the value, or one of the listed
    values; checked against the schema at start-up (:func:`triage.tickets.routing.check_rules`)."""

    #: Field -> value or list of values; the rule matches when every field named has one of its values (empty: every
    #: ticket).
    when: dict[str, RuleValue | list[RuleValue]] = Field(default_factory=dict)


class RoutingSettings(_Section):
    #: The routing rules, in order: a ticket takes the first that matches; one no rule matches, or that ended in the
    #: fallback queue, takes ``fallback``.
    rules: list[RouteRule] = Field(default_factory=list)
    fallback: RouteTarget = RouteTarget(route="manual-review", priority="P2", sla_hours=4)


class WebhookSettings(_Section):
    #: Larger webhook bodies get 413, before the body is read whole.
    max_body_bytes: int = Field(256 * 1024, gt=0)
    #: Signed timestamps further off than this, either way, get 401.
    timestamp_tolerance_seconds: float = Field(300, gt=0)
    #: Accept requests without a signature from installs that cannot sign (no secret configured).
    chatwoot_allow_unsigned: bool = False
    #: Accept unsigned requests from Zammad triggers without an HMAC token (no secret configured).
    zammad_allow_unsigned: bool = False
    #: Per-source secret, from ``TRIAGE_WEBHOOK_SECRET_<SOURCE>``.
    secrets: dict[str, SecretStr] = Field(default_factory=dict)


class IntakeSettings(_Section):
    #: ``triage submit`` stores this many lines in one transaction and publishes them over one broker
    #: connection (a line the database refuses still costs only itself).
    submit_chunk_lines: int = Field(200, ge=1, le=5000)


#: The shortest ``TRIAGE_SESSION_SECRET`` accepted.
MIN_SESSION_SECRET_CHARS = 32
#: The shortest access token ``triage serve`` starts with (``triage token new NAME`` makes one of 43).
MIN_TOKEN_CHARS = 32


class ApiSettings(_Section):
    #: The address ``triage serve`` listens on (``--host`` overrides it).
    host: str = "127.0.0.1"
    #: The port ``triage serve`` listens on (``--port`` overrides it).
    port: int = Field(8000, ge=1, le=65535)
    #: Bearer tokens by actor name, from ``TRIAGE_API_TOKENS=name:token,name:token``.
    tokens: dict[str, SecretStr] = Field(default_factory=dict)
    #: The largest ``limit`` of ``GET /tickets``.
    page_size_max: int = Field(200, ge=1)
    #: Extracted fields ``GET /tickets`` filters on (each must be a field of the ticket schema).
    filter_fields: list[str] = Field(default_factory=lambda: ["problem_type", "urgent_level"])
    #: Signs the dispatch desk's session cookies (``TRIAGE_SESSION_SECRET``); unset: a random key per process.
    session_secret: SecretStr | None = None
    #: How long a desk sign-in lasts.
    session_hours: float = Field(12, gt=0)
    #: How often the desk's queue view refreshes itself.
    desk_refresh_seconds: float = Field(15, gt=0)
    #: Failed sign-ins and bad bearer tokens one client address may make per minute (counted across every
    #: serve process in the shared limiter's store); past it every authentication attempt from that address
    #: gets 429 with Retry-After until its minute is over.
    auth_failures_per_minute: int = Field(10, ge=1)
    #: Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (uvicorn's ``forwarded_allow_ips``):
    #: addresses or networks, or ``*``. Behind a TLS proxy listed here, HTTPS answers carry HSTS and the
    #: session cookie is Secure.
    forwarded_allow_ips: list[str] = Field(default_factory=lambda: ["127.0.0.1"])
    #: The largest request body taken on any route or form but the webhooks (which keep
    #: ``webhooks.max_body_bytes``): above it, 413 before it is read whole.
    max_body_bytes: int = Field(1024 * 1024, gt=0)

    @field_validator("forwarded_allow_ips", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value

    @field_validator("tokens", mode="before")
    @classmethod
    def _parse_pairs(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        pairs: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            name, sep, token = item.partition(":")
            if not sep or not name.strip() or not token.strip():
                raise ValueError(f"expected name:token pairs separated by commas; check the entry for {name!r}")
            pairs[name.strip()] = token.strip()
        return pairs

    @field_validator("session_secret", mode="before")
    @classmethod
    def _session_secret(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None  # TRIAGE_SESSION_SECRET= means unset
        if isinstance(value, str) and len(value) < MIN_SESSION_SECRET_CHARS:
            raise ValueError(f"use at least {MIN_SESSION_SECRET_CHARS} random characters "
                             "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        return value


@dataclass(frozen=True)
class Budget:
    """One model's budget: requests and tokens per window (one minute by contract)."""

    rpm: int
    tpm: int


class ModelBudget(_Section):
    """A model's own budget; a missing value falls back to the section's ``rpm`` / ``tpm``."""

    #: The model's requests per window; unset: ``rate_limit.rpm``.
    rpm: int | None = Field(None, ge=1)
    #: The model's tokens per window; unset: ``rate_limit.tpm``.
    tpm: int | None = Field(None, ge=1)


class RateLimitSettings(_Section):
    """Fleet-wide budgets per model (MiMo: 100 requests and 10M tokens per minute, per account and model).

    ``TRIAGE_RATE_LIMIT_RPM`` / ``TRIAGE_RATE_LIMIT_TPM`` set the overrides, which win for every model.

    >>> settings = RateLimitSettings(per_model={"mimo-v2.5-pro": {"rpm": 30}})
    >>> settings.budget("mimo-v2.5-pro"), settings.budget("mimo-v2-flash")
    (Budget(rpm=30, tpm=10000000), Budget(rpm=100, tpm=10000000))
    """

    #: Every model's requests per window, across the fleet.
    rpm: int = Field(100, ge=1)
    #: Every model's tokens per window, across the fleet.
    tpm: int = Field(10_000_000, ge=1)
    #: A model's own budget, e.g. ``[rate_limit.per_model."mimo-v2.5-pro"]`` with ``rpm = 30``.
    per_model: dict[str, ModelBudget] = Field(default_factory=dict)
    #: Where the budget is counted: ``redis`` (the broker's Redis), ``database``, or ``auto`` (Redis when the broker is
    #: Redis).
    backend: Literal["auto", "redis", "database"] = "auto"
    #: Prefix of the limiter's Redis keys and database rows; one prefix per MiMo account.
    key_prefix: str = Field("triage:ratelimit", min_length=1, max_length=100)
    #: The API counts per 60 s; one more second covers a granted call's way to the API.
    window_seconds: float = Field(61.0, gt=0)
    #: Requests per window for every model, over ``rpm`` and ``per_model``.
    rpm_override: int | None = Field(None, ge=1)
    #: Tokens per window for every model, over ``tpm`` and ``per_model``.
    tpm_override: int | None = Field(None, ge=1)

    def budget(self, model: str) -> Budget:
        """The budget ``model`` runs under."""
        own = self.per_model.get(model) or ModelBudget()
        return Budget(rpm=self.rpm_override or own.rpm or self.rpm, tpm=self.tpm_override or own.tpm or self.tpm)


# ---- write-back, outbound events, alerts ---------------------------------------------------------

#: Tags triage writes: one spelling every platform takes (Chatwoot allows only these characters).
TAG_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
#: Ids a platform hands out (team, admin): letters, digits, ``_`` and ``-``.
IDENT_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


def _blank_is_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


def _number_as_text(value: object) -> object:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def check_http_url(value: str, *, allow_query: bool = False) -> str:
    """An ``http(s)`` URL with a host and no credentials in it (trailing ``/`` dropped).

    The message never repeats the value (some URLs, like Slack's, are secrets themselves).

    >>> check_http_url("https://acme.zendesk.com/")
    'https://acme.zendesk.com'
    >>> check_http_url("ftp://acme.zendesk.com")
    Traceback (most recent call last):
    ...
    ValueError: must be an http:// or https:// URL with a host
    """
    text = value.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials (user:password@); they have their own settings")
    if not allow_query and (parts.query or parts.fragment):
        raise ValueError("must be a base URL, without ?query or #fragment")
    return text.rstrip("/")


def _endpoint_url(value: str) -> str:
    return check_http_url(value, allow_query=True)


def _printable_token(value: SecretStr | None) -> SecretStr | None:
    if value is not None and not all("!" <= char <= "~" for char in value.get_secret_value()):
        raise ValueError("must be printable ASCII without spaces or line breaks")
    return value


def _secret_url(value: SecretStr | None) -> SecretStr | None:
    if value is not None:
        check_http_url(value.get_secret_value(), allow_query=True)
    return value


def _standard_webhooks_secret(value: SecretStr) -> SecretStr:
    try:
        secret_key(value.get_secret_value())
    except SecretFormatError as exc:
        raise ValueError(str(exc)) from None
    return value


#: An empty value (``TRIAGE_WRITEBACK_ZENDESK_URL=``) means unset.
Blank = BeforeValidator(_blank_is_none)
BaseUrl = Annotated[Annotated[str, AfterValidator(check_http_url)] | None, Blank]
Token = Annotated[SecretStr | None, Blank, AfterValidator(_printable_token)]
Tag = Annotated[str, Field(pattern=TAG_PATTERN, max_length=80)]
Ident = Annotated[str, BeforeValidator(_number_as_text), Field(pattern=IDENT_PATTERN)]
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]


class RouteMapping(_Section):
    """What one route sets on one platform; ``tags`` are added besides ``triage_<route>`` / ``triage_<priority>``."""

    #: Tags added besides ``triage_<route>`` and ``triage_<priority>`` (lower-case letters, digits, ``_`` and ``-``).
    tags: list[Tag] = Field(default_factory=list)


ZendeskPriority = Literal["urgent", "high", "normal", "low"]
ChatwootPriority = Literal["urgent", "high", "medium", "low"]
FreshdeskPriority = Annotated[int, Field(ge=1, le=4)]  # 1 low, 2 medium, 3 high, 4 urgent


class ZendeskRoute(RouteMapping):
    #: The Zendesk group (``GET /api/v2/groups``).
    group_id: int | None = Field(None, ge=1)
    #: The Zendesk priority: ``urgent``, ``high``, ``normal`` or ``low``.
    priority: ZendeskPriority | None = None


class IntercomRoute(RouteMapping):
    #: The Intercom team the conversation is assigned to (``GET /teams``).
    team_id: Ident | None = None
    #: Written only when ``writeback.intercom.priority_via`` is not ``none``.
    priority: str | None = Field(None, min_length=1, max_length=64)


class ChatwootRoute(RouteMapping):
    #: The Chatwoot team (``GET /api/v1/accounts/{id}/teams``).
    team_id: int | None = Field(None, ge=1)
    #: The Chatwoot priority: ``urgent``, ``high``, ``medium`` or ``low``.
    priority: ChatwootPriority | None = None


class ZammadRoute(RouteMapping):
    """Zammad takes a group by id or by name (ids are safer: sub-group names are undocumented)."""

    #: The Zammad group by id (``GET /api/v1/groups``).
    group_id: int | None = Field(None, ge=1)
    #: The Zammad group by name, instead of ``group_id``.
    group: str | None = Field(None, min_length=1, max_length=160)
    #: The Zammad priority id (``GET /api/v1/ticket_priorities``; by default 1 low, 2 normal, 3 high).
    priority_id: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_group(self) -> ZammadRoute:
        if self.group_id is not None and self.group is not None:
            raise ValueError("set group_id or group, not both")
        return self


class FreshdeskRoute(RouteMapping):
    #: The Freshdesk group (``GET /api/v2/groups``).
    group_id: int | None = Field(None, ge=1)
    #: The Freshdesk priority: 1 low, 2 medium, 3 high, 4 urgent.
    priority: FreshdeskPriority | None = None


RouteT = TypeVar("RouteT", bound=RouteMapping)
PriorityT = TypeVar("PriorityT")


class PlatformWriteback(_Section, Generic[RouteT, PriorityT]):
    """One platform's write-back: where, as whom, and what each route and priority sets there.

    ``routes`` maps a triage route to the platform's own terms; ``priorities`` maps a triage
    priority (``P1``...) to the platform's priority, used when the route's mapping sets none.
    ``rate_limited_wait_seconds``: how long to wait after a 429 that names no wait (unset: backoff).
    """

    #: The platform's base URL; write-back to the platform is on when it is set (Intercom: when its token is).
    url: BaseUrl = None
    #: The API token (Freshdesk: the agent's API key) write-back authenticates with.
    token: Token = None
    #: Triage route -> what it sets on the platform, in the platform's terms; each key must be a route of ``[routing]``.
    routes: dict[str, RouteT] = Field(default_factory=dict)
    #: Triage priority (``P1``...) -> the platform's priority, for routes whose mapping sets none.
    priorities: dict[str, PriorityT] = Field(default_factory=dict)
    #: How long to wait after a 429 that names no wait; unset: the backoff.
    rate_limited_wait_seconds: float | None = Field(None, gt=0)

    @property
    def enabled(self) -> bool:
        """Write-back to this platform is on when its URL is set."""
        return self.url is not None


class ZendeskWriteback(PlatformWriteback[ZendeskRoute, ZendeskPriority]):
    """Zendesk: ``clear_assignee_on_group_change`` re-sends a group change Zendesk refused because the
    ticket's assignee is not a member of the new group with ``assignee_id: null`` (off: the delivery fails
    naming the conflict).

    ``user_id`` is the Zendesk user triage writes back as (the one ``email`` + ``token`` sign in as, ``GET
    /api/v2/users/me``): a group or priority change made by anyone else on a ticket triage wrote back is
    taken as a review label (README, "Labels from the helpdesk"); unset, no change is taken (triage could
    not tell its own write-backs from an agent's) and a warning says so once."""

    #: The e-mail of the agent whose API token ``token`` is (Basic ``{email}/token:{token}``).
    email: Annotated[Email | None, Blank] = None
    #: A group change Zendesk refuses because the assignee is not in the new group is sent again with ``assignee_id:
    #: null`` (the note names the agent); false: the delivery fails naming the conflict.
    clear_assignee_on_group_change: bool = True
    user_id: Annotated[Ident | None, Blank] = Field(
        None, description="triage's own Zendesk user id: group and priority changes by any other user on a ticket "
                          "triage wrote back are review labels; unset: none are taken")


INTERCOM_US = "https://api.intercom.io"
#: The one Intercom-Version whose conversation update takes ``priority`` (``priority_via = "priority_field"``).
INTERCOM_PREVIEW = "Preview"


class IntercomWriteback(PlatformWriteback[IntercomRoute, str]):
    """Intercom: on when the token is set (the URL defaults to the US region).

    Intercom documents no stable way to write a conversation's priority, so ``priority_via``
    chooses: ``none`` (the ``triage_<priority>`` tag only), ``custom_attribute`` (the conversation
    attribute ``priority_attribute``) or ``priority_field`` (``priority``, Preview versions only).
    """

    url: BaseUrl = INTERCOM_US
    #: The Intercom admin the writes are made as (``GET /me``).
    admin_id: Annotated[Ident | None, Blank] = None
    #: The ``Intercom-Version`` header sent.
    version: str = Field("2.14", pattern=r"^[A-Za-z0-9.]{1,16}$")
    #: How a priority is written: ``none`` (the ``triage_<priority>`` tag only), ``custom_attribute`` (the conversation
    #: attribute ``priority_attribute``) or ``priority_field`` (needs version ``Preview``).
    priority_via: Literal["none", "custom_attribute", "priority_field"] = "none"
    #: The conversation attribute ``priority_via = "custom_attribute"`` writes.
    priority_attribute: str = Field("triage_priority", min_length=1, max_length=190)
    #: No Retry-After and no X-RateLimit-Reset on a 429: Intercom counts in 10-second windows.
    rate_limited_wait_seconds: float | None = Field(10.0, gt=0)

    @property
    def enabled(self) -> bool:
        return self.token is not None


class ChatwootWriteback(PlatformWriteback[ChatwootRoute, ChatwootPriority]):
    #: The Chatwoot account; conversations stored from another account are never written.
    account_id: Annotated[Annotated[int, Field(ge=1)] | None, Blank] = None


class ZammadWriteback(PlatformWriteback[ZammadRoute, int]):
    """``priorities`` maps a triage priority to a Zammad ``priority_id``."""


class FreshdeskWriteback(PlatformWriteback[FreshdeskRoute, FreshdeskPriority]):
    pass


#: The platforms triage writes back to, in the order their sections appear.
WRITEBACK_PLATFORMS = ("zendesk", "intercom", "chatwoot", "zammad", "freshdesk")
#: The variable that switches write-back to a platform on.
WRITEBACK_SWITCHES = {name: f"TRIAGE_WRITEBACK_{name.upper()}_URL" for name in WRITEBACK_PLATFORMS} | {
    "intercom": "TRIAGE_WRITEBACK_INTERCOM_TOKEN"}
#: What each platform needs besides its switch, by the environment variable that sets it.
WRITEBACK_REQUIRED = {
    "zendesk": (("TRIAGE_WRITEBACK_ZENDESK_EMAIL", "email"), ("TRIAGE_WRITEBACK_ZENDESK_TOKEN", "token")),
    "intercom": (("TRIAGE_WRITEBACK_INTERCOM_ADMIN_ID", "admin_id"),),
    "chatwoot": (("TRIAGE_WRITEBACK_CHATWOOT_TOKEN", "token"), ("TRIAGE_WRITEBACK_CHATWOOT_ACCOUNT_ID", "account_id")),
    "zammad": (("TRIAGE_WRITEBACK_ZAMMAD_TOKEN", "token"),),
    "freshdesk": (("TRIAGE_WRITEBACK_FRESHDESK_TOKEN", "token"),),
}


class WritebackSettings(_Section):
    """Write-back of routing decisions to the helpdesk each conversation came from."""

    #: Transient answers (429, 5xx, timeouts, no connection) are retried until this many hours after a
    #: delivery's creation or its last ``triage deliveries --retry`` (fractions allowed).
    give_up_after_hours: float = Field(24.0, gt=0)
    #: Attempts that met an answer the adapter cannot classify (or whose worker died) before a delivery fails.
    max_attempts: int = Field(10, ge=1)
    #: How long an adapter keeps the answer of its configuration probe (is a 404 a gone ticket or a wrong
    #: URL or account?) and of its token check.
    probe_cache_seconds: float = Field(600.0, gt=0)
    #: Connect, read, write and pool timeout of one HTTP call to a platform.
    timeout_seconds: float = Field(15.0, gt=0)
    #: A longer Retry-After / rate-limit reset is clamped to this.
    retry_after_max_seconds: float = Field(900.0, gt=0)
    #: Post an internal note with the extracted fields (and a link, with ``triage_url``).
    note: bool = False
    #: triage's own base URL; links read ``{triage_url}/tickets/{id}``.
    triage_url: BaseUrl = None
    #: Prefix of the route and priority tags: ``triage_hardware-escalation``, ``triage_p1``.
    tag_prefix: str = Field("triage_", pattern=r"^[a-z0-9_-]{1,40}$")
    zendesk: ZendeskWriteback = Field(default_factory=ZendeskWriteback)
    intercom: IntercomWriteback = Field(default_factory=IntercomWriteback)
    chatwoot: ChatwootWriteback = Field(default_factory=ChatwootWriteback)
    zammad: ZammadWriteback = Field(default_factory=ZammadWriteback)
    freshdesk: FreshdeskWriteback = Field(default_factory=FreshdeskWriteback)

    def platform(self, name: str) -> PlatformWriteback[Any, Any]:
        """The section of platform ``name`` (one of :data:`WRITEBACK_PLATFORMS`)."""
        if name not in WRITEBACK_PLATFORMS:
            raise KeyError(name)
        section: PlatformWriteback[Any, Any] = getattr(self, name)
        return section

    def enabled_platforms(self) -> tuple[str, ...]:
        """The platforms write-back is on for."""
        return tuple(name for name in WRITEBACK_PLATFORMS if self.platform(name).enabled)

    def problems(self, routes: set[str], priorities: set[str]) -> list[str]:
        """What is missing or unknown: credentials of enabled platforms, routes and priorities no rule has."""
        found = []
        for name in WRITEBACK_PLATFORMS:
            section = self.platform(name)
            if section.enabled:
                missing = [env for env, key in WRITEBACK_REQUIRED[name] if getattr(section, key) is None]
                if missing:
                    verb = "is" if len(missing) == 1 else "are"
                    found.append(f"{WRITEBACK_SWITCHES[name]} is set, so write-back to {name} is on, "
                                 f"but {' and '.join(missing)} {verb} not set")
            found += _unknown(f"writeback.{name}.routes", section.routes, routes, "route")
            found += _unknown(f"writeback.{name}.priorities", section.priorities, priorities, "priority")
        intercom = self.intercom
        if intercom.priority_via == "priority_field" and intercom.version != INTERCOM_PREVIEW:
            found.append(f'writeback.intercom.priority_via = "priority_field" needs writeback.intercom.version = '
                         f'"{INTERCOM_PREVIEW}" (version {intercom.version!r} has no writable conversation '
                         'priority): set the version, or priority_via = "custom_attribute" or "none"')
        return found


def _unknown(where: str, keys: Mapping[str, Any] | list[str], known: set[str], what: str) -> list[str]:
    return [f"{where}: {key!r} is not a {what} of [routing] (known: {', '.join(sorted(known))})"
            for key in keys if key not in known]


EventType = Literal["ticket.routed", "ticket.needs_review", "ticket.corrected", "ticket.claimed",
                    "ticket.resolved", "ticket.reopened", "delivery.failed", "ticket.confirmed"]
#: Every outbound event type, in the order the docs list them (docs/events.md).
EVENT_TYPES: tuple[str, ...] = get_args(EventType)


class EventEndpoint(_Section):
    """One ``[[events.endpoints]]`` entry: a receiver of Standard Webhooks signed with ``secret``."""

    #: The receiver's URL (it can hold a credential: it is never stored or echoed).
    url: Annotated[str, AfterValidator(_endpoint_url)]
    #: The Standard Webhooks signing secret, ``whsec_`` and base64; one per endpoint.
    secret: Annotated[SecretStr, AfterValidator(_standard_webhooks_secret)]
    #: The event types this receiver takes.
    events: list[EventType] = Field(min_length=1)


class EventsSettings(_Section):
    #: Receivers of signed outbound events, one ``[[events.endpoints]]`` table each.
    endpoints: list[EventEndpoint] = Field(default_factory=list)
    #: One HTTP call to an endpoint (the spec suggests 15-30 s).
    timeout_seconds: float = Field(15.0, gt=0)

    @field_validator("endpoints")
    @classmethod
    def _urls_unique(cls, endpoints: list[EventEndpoint]) -> list[EventEndpoint]:
        urls = [endpoint.url for endpoint in endpoints]
        for index, url in enumerate(urls):
            if url in urls[:index]:
                raise ValueError(f"endpoint {index + 1} has the same url as endpoint {urls.index(url) + 1}; "
                                 "list each receiver once with all its events")
        return endpoints

    def endpoints_for(self, event_type: str) -> list[EventEndpoint]:
        """The endpoints that take ``event_type``."""
        return [endpoint for endpoint in self.endpoints if event_type in endpoint.events]

    def endpoint(self, url: str) -> EventEndpoint | None:
        """The configured endpoint at ``url`` (a delivery names its endpoint by URL), or None."""
        return next((endpoint for endpoint in self.endpoints if endpoint.url == url), None)


class AlertsSettings(_Section):
    """Short messages to a Slack-compatible incoming webhook: P1 tickets and SLA breaches."""

    #: The incoming-webhook URL; it is a credential, so it is never echoed.
    webhook_url: Annotated[SecretStr | None, BeforeValidator(_blank_is_none), AfterValidator(_secret_url)] = None
    #: One HTTP call to the alerts webhook.
    timeout_seconds: float = Field(10.0, gt=0)
    #: Triage priorities that alert when a ticket is routed with them.
    priorities: list[str] = Field(default_factory=lambda: ["P1"])
    #: How often beat looks for SLA breaches to alert on (each breach alerts once).
    sla_check_interval_seconds: float = Field(60, gt=0)


#: A confidence threshold: a share in [0, 1].
Threshold = Annotated[float, Field(ge=0, le=1)]


class RouteAutonomy(_Section):
    """``[autonomy.routes."<route>"]``: one route's own level and thresholds (unset: ``[autonomy]``'s)."""

    level: Level | None = Field(None, description="auto | suggest | review | shadow for this route")
    auto_above: Threshold | None = Field(None, description="at or above: the route's level applies")
    review_below: Threshold | None = Field(None, description="below: needs_review, reason low_confidence")


class AutonomySettings(_Section):
    """What triage writes to the helpdesk by itself, per route and per confidence (triage.states.autonomy).

    The shipped thresholds are 0: every ticket gets its route's level, and the default level is ``auto``,
    so every routed ticket is written back in full, as before autonomy levels existed.
    """

    default: Level = Field(Level.AUTO, description="the level of every route without its own")
    auto_above: Threshold = Field(0.0, description="at or above: the route's level applies (0: every ticket)")
    review_below: Threshold = Field(0.0, description="below: needs_review, reason low_confidence (0: none)")
    routes: dict[str, RouteAutonomy] = Field(default_factory=dict,
                                             description="per route (a route of [routing]): level and thresholds")

    def problems(self, routes: set[str]) -> list[str]:
        """Routes [routing] does not have, and thresholds out of order (review_below above auto_above)."""
        found = _unknown("autonomy.routes", self.routes, routes, "route")
        for route in [None, *self.routes]:
            limits = self.thresholds(route)
            if limits.review_below > limits.auto_above:
                where = f'autonomy.routes."{route}"' if route else "autonomy"
                found.append(f"{where}.review_below={limits.review_below:g} is above {where}.auto_above="
                             f"{limits.auto_above:g}: below review_below a ticket needs review, between the two it "
                             "is a suggestion, so review_below must not exceed auto_above")
        return found

    def level(self, route: str | None) -> Level:
        """The level of ``route``: its own, else ``default``."""
        own = self.routes.get(route) if route else None
        return own.level if own is not None and own.level is not None else self.default

    def thresholds(self, route: str | None) -> Thresholds:
        """The thresholds of ``route``: each its own where set, else ``[autonomy]``'s."""
        own = self.routes.get(route) if route else None
        auto_above = own.auto_above if own is not None and own.auto_above is not None else self.auto_above
        review_below = own.review_below if own is not None and own.review_below is not None else self.review_below
        return Thresholds(auto_above=auto_above, review_below=review_below)


def _default_sqlite(name: str) -> str:
    return f"sqlite:///{VAR_DIR / name}"


class Settings(_Section):
    """Everything triage reads at start-up. Build it with :func:`load_settings`."""

    #: SQLAlchemy URL of the database; production: ``postgresql+psycopg://...``.
    database_url: str = Field(default_factory=lambda: _default_sqlite("triage.sqlite3"))
    #: Celery broker URL; production: ``redis://...`` or ``amqp://...``. The default is the embedded broker (kombu's
    #: SQLAlchemy transport on a SQLite file).
    broker_url: str = Field(default_factory=lambda: "sqla+" + _default_sqlite("broker.sqlite3"))
    #: The MiMo API key (``sk-...``); required when ``extractor`` is ``llm``.
    mimo_api_key: SecretStr | None = None
    #: Base URL of the OpenAI-compatible chat API; Token Plan keys use ``https://token-plan-cn.xiaomimimo.com/v1``.
    mimo_base_url: str = "https://api.xiaomimimo.com/v1"
    #: The model asked first; then ``extraction.fallback_models``, in order.
    model: str = "mimo-v2-flash"
    #: ``llm`` (MiMo), ``rules`` (the offline rules extractor) or ``learned``: the model ``triage learn`` stored
    #: (enum fields), free-text fields from the rules.
    extractor: Literal["llm", "rules", "learned"] = "llm"
    #: ``json``: every log line of serve, worker and beat is one JSON object (``TRIAGE_LOG_FORMAT``).
    log_format: Literal["text", "json"] = "text"
    #: The main config file: ``config/triage.toml`` in the working directory, else the one shipped in the package; paths
    #: inside it are relative to it.
    config_path: Path = DEFAULT_CONFIG_PATH
    schema_: SchemaSettings = Field(default_factory=SchemaSettings, alias="schema")
    extraction: ExtractionSettings = Field(default_factory=ExtractionSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    database_pool: DatabasePoolSettings = Field(default_factory=DatabasePoolSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    intake: IntakeSettings = Field(default_factory=IntakeSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    fallback: FallbackSettings = Field(default_factory=FallbackSettings)
    learn: LearnSettings = Field(default_factory=LearnSettings)
    calibrate: CalibrateSettings = Field(default_factory=CalibrateSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    writeback: WritebackSettings = Field(default_factory=WritebackSettings)
    events: EventsSettings = Field(default_factory=EventsSettings)
    alerts: AlertsSettings = Field(default_factory=AlertsSettings)
    autonomy: AutonomySettings = Field(default_factory=AutonomySettings)

    @field_validator("mimo_api_key")
    @classmethod
    def _blank_key_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            return None
        return value

    @model_validator(mode="after")
    def _visibility_outlasts_waits(self) -> Settings:
        longest_wait = max(self.retry.backoff_max_seconds, self.retry.retry_after_max_seconds,
                           self.writeback.retry_after_max_seconds)
        longest_task = self.extraction.attempts * self.extraction.timeout_seconds
        if self.worker.visibility_timeout_seconds <= longest_wait + longest_task:
            raise ValueError(
                f"worker.visibility_timeout_seconds={self.worker.visibility_timeout_seconds} must be above the "
                f"longest retry wait plus the longest task ({longest_wait + longest_task:.0f}s), or Redis "
                "redelivers messages that are still waiting"
            )
        return self

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> Settings:
        worker = self.worker
        if worker.heartbeat_seconds >= worker.lease_seconds:
            raise ValueError(
                f"worker.heartbeat_seconds={worker.heartbeat_seconds:g} must be shorter than "
                f"worker.lease_seconds={worker.lease_seconds:g}, or a working worker's lease runs out between "
                "two renewals (a third of the lease leaves room for two missed ones)"
            )
        return self

    @model_validator(mode="after")
    def _outbound_complete(self) -> Settings:
        rules = [*self.routing.rules, self.routing.fallback]
        routes, priorities = {rule.route for rule in rules}, {rule.priority for rule in rules}
        problems = self.writeback.problems(routes, priorities)
        if self.alerts.webhook_url is not None:
            problems += _unknown("alerts.priorities", self.alerts.priorities, priorities, "priority")
        problems += self.autonomy.problems(routes)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def schema_path(self) -> Path:
        return self.schema_.path

    def require_llm_ready(self) -> None:
        """Refuse to run LLM work without a key; the message says how to fix it."""
        if self.extractor == "llm" and self.mimo_api_key is None:
            raise SettingsError(
                "MIMO_API_KEY is not set but TRIAGE_EXTRACTOR=llm: set MIMO_API_KEY to your "
                "MiMo key, or set TRIAGE_EXTRACTOR=rules to use the offline rules extractor"
            )


#: Environment variable -> dotted settings key it overrides.
ENV_KEYS: dict[str, str] = {
    "TRIAGE_DATABASE_URL": "database_url",
    "TRIAGE_BROKER_URL": "broker_url",
    "MIMO_API_KEY": "mimo_api_key",
    "MIMO_BASE_URL": "mimo_base_url",
    "TRIAGE_MODEL": "model",
    "TRIAGE_EXTRACTOR": "extractor",
    "TRIAGE_LOG_FORMAT": "log_format",
    "TRIAGE_CONCURRENCY": "worker.concurrency",
    "TRIAGE_API_TOKENS": "api.tokens",
    "TRIAGE_SESSION_SECRET": "api.session_secret",
    "TRIAGE_RATE_LIMIT_RPM": "rate_limit.rpm_override",
    "TRIAGE_RATE_LIMIT_TPM": "rate_limit.tpm_override",
    "TRIAGE_EVAL_DATA": "evaluation.data",
    "TRIAGE_WRITEBACK_ZENDESK_URL": "writeback.zendesk.url",
    "TRIAGE_WRITEBACK_ZENDESK_EMAIL": "writeback.zendesk.email",
    "TRIAGE_WRITEBACK_ZENDESK_TOKEN": "writeback.zendesk.token",
    "TRIAGE_WRITEBACK_ZENDESK_USER_ID": "writeback.zendesk.user_id",
    "TRIAGE_WRITEBACK_INTERCOM_URL": "writeback.intercom.url",
    "TRIAGE_WRITEBACK_INTERCOM_TOKEN": "writeback.intercom.token",
    "TRIAGE_WRITEBACK_INTERCOM_ADMIN_ID": "writeback.intercom.admin_id",
    "TRIAGE_WRITEBACK_CHATWOOT_URL": "writeback.chatwoot.url",
    "TRIAGE_WRITEBACK_CHATWOOT_TOKEN": "writeback.chatwoot.token",
    "TRIAGE_WRITEBACK_CHATWOOT_ACCOUNT_ID": "writeback.chatwoot.account_id",
    "TRIAGE_WRITEBACK_ZAMMAD_URL": "writeback.zammad.url",
    "TRIAGE_WRITEBACK_ZAMMAD_TOKEN": "writeback.zammad.token",
    "TRIAGE_WRITEBACK_FRESHDESK_URL": "writeback.freshdesk.url",
    "TRIAGE_WRITEBACK_FRESHDESK_TOKEN": "writeback.freshdesk.token",
}
WEBHOOK_SECRET_PREFIX = "TRIAGE_WEBHOOK_SECRET_"
#: Settings whose values are never echoed in an error.
#: Outbound URLs count: a URL can carry credentials (and a Slack webhook URL is one).
SECRET_KEYS = ("mimo_api_key", "api.tokens", "api.session_secret", "webhooks.secrets", "events.endpoints",
               "alerts.webhook_url",
               *(f"writeback.{name}.{key}" for name in WRITEBACK_PLATFORMS for key in ("token", "url")))


NESTED_PREFIX = "TRIAGE__"


def _set_dotted(data: dict[str, Any], dotted: str, value: object, env_name: str) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SettingsError(f"{env_name}: {part!r} is not a section of the settings")
    node[leaf] = value


def _structured(value: str, env_name: str) -> object:
    """A ``TRIAGE__SECTION__KEY`` value: a JSON list or table when it looks like one (``["mimo-v2.5"]``),
    else the string as it is (pydantic converts numbers and booleans).

    >>> _structured('["mimo-v2.5", "mimo-v2-pro"]', "TRIAGE__EXTRACTION__FALLBACK_MODELS"), _structured("3", "X")
    (['mimo-v2.5', 'mimo-v2-pro'], '3')
    """
    if not value.lstrip().startswith(("[", "{")):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{env_name}: not a JSON list or table: {exc.msg} at column {exc.colno}") from None


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    for section, key in (("schema", "path"), ("evaluation", "data")):
        table = data.get(section)
        if isinstance(table, dict) and isinstance(table.get(key), str):
            table[key] = str(base / table[key])


def _describe(loc: tuple[int | str, ...], sources: dict[str, str], config_path: Path) -> str:
    dotted = ".".join(str(part) for part in loc)
    for env_name, key in sources.items():
        if dotted == key or dotted.startswith(key + ".") or key.startswith(dotted + "."):
            return env_name
    return f"{config_path}: {dotted}"


def _lookup(data: Mapping[str, Any], loc: tuple[int | str, ...]) -> object:
    node: Any = data
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _default_config_path() -> Path:
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else SHIPPED_CONFIG_PATH


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build and validate the settings from ``environ`` (default ``os.environ``).

    >>> load_settings({"TRIAGE_EXTRACTOR": "rules"}).extractor
    'rules'
    """
    env = os.environ if environ is None else environ
    config_path = Path(env.get("TRIAGE_CONFIG") or _default_config_path())
    data: dict[str, Any] = {}
    if config_path.exists():
        try:
            data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"TRIAGE_CONFIG={str(config_path)!r}: not valid TOML: {exc}") from exc
        _resolve_paths(data, config_path.parent)
    elif "TRIAGE_CONFIG" in env:
        raise SettingsError(f"TRIAGE_CONFIG={str(config_path)!r}: no such file")
    data["config_path"] = config_path

    used: dict[str, str] = {}
    overrides = {name: name[len(NESTED_PREFIX):].lower().replace("__", ".")
                 for name in env if name.startswith(NESTED_PREFIX)}
    overrides |= {name: "webhooks.secrets." + name[len(WEBHOOK_SECRET_PREFIX):].lower()
                  for name in env if name.startswith(WEBHOOK_SECRET_PREFIX)}
    for env_name, key in {**overrides, **ENV_KEYS}.items():
        if env_name in env:
            value = _structured(env[env_name], env_name) if env_name in overrides else env[env_name]
            _set_dotted(data, key, value, env_name)
            used[env_name] = key
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            if not error["loc"]:  # a check across several keys: its message names them
                problems.append(str(error["msg"]).removeprefix("Value error, "))
                continue
            where = _describe(error["loc"], used, config_path)
            value = _lookup(data, error["loc"])
            dotted = ".".join(map(str, error["loc"]))
            secret = any(dotted == key or dotted.startswith(key + ".") for key in SECRET_KEYS)
            shown = "" if value is None else "=<redacted>" if secret else f"={value!r}"
            problems.append(f"{where}{shown}: {str(error['msg']).removeprefix('Value error, ')}")
        raise SettingsError("; ".join(problems)) from None
