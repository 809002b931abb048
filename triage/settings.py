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
    triage.settings.SettingsError: TRIAGE_EXTRACTOR='magic': Input should be 'llm' or 'rules'
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from triage.errors import ConfigError
from triage.resources import CONFIG_DIR

DEFAULT_CONFIG_PATH = Path("config/triage.toml")
#: The config shipped with the package, used when the working directory has no config/.
SHIPPED_CONFIG_PATH = CONFIG_DIR / DEFAULT_CONFIG_PATH.name
VAR_DIR = Path("var")


class SettingsError(ConfigError):
    """A setting is missing or invalid; the message names the key and what to do."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SchemaSettings(_Section):
    path: Path = Path("config/ticket_schema.json")


class ExtractionSettings(_Section):
    attempts: int = Field(3, ge=1, le=10)
    max_completion_tokens: int = Field(1024, ge=16)
    max_completion_tokens_cap: int = Field(4096, ge=16)
    thinking: bool = False
    stream: bool = False
    timeout_seconds: float = Field(60.0, gt=0)
    temperature: float = Field(0.0, ge=0, le=2)
    #: Longest conversation transcript sent, in characters; longer ones are trimmed
    #: (first customer message + latest turns, see triage.extraction.trim).
    max_input_chars: int = Field(24_000, ge=1_000)
    #: Models to move to, in order, when the main one (TRIAGE_MODEL) is retired (404) or failing.
    fallback_models: list[str] = Field(default_factory=list)
    #: Consecutive 5xx answers that open a model's circuit, and how long it stays open.
    circuit_failures: int = Field(5, ge=1)
    circuit_open_seconds: float = Field(60.0, gt=0)
    #: How long a model that answered 404 is skipped.
    retired_model_seconds: float = Field(3600.0, gt=0)
    #: A suspected injection whose answer would put the ticket on a P1 route goes to review instead.
    injection_review: bool = True
    #: Injection patterns, name -> regular expression over folded customer text; empty: the shipped
    #: ones (triage.extraction.injection_patterns). A non-empty table replaces them.
    injection_patterns: dict[str, str] = Field(default_factory=dict)

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

    redact_pii: bool = True
    emails: bool = True
    phones: bool = True
    cards: bool = True
    id_numbers: bool = True
    retention_days: int | None = Field(None, ge=1)


class EvaluationSettings(_Section):
    """``triage evaluate``: where the labelled public data sets are (``TRIAGE_EVAL_DATA``)."""

    data: Path | None = None


class RetrySettings(_Section):
    max_retries: int = Field(8, ge=0)
    backoff_base_seconds: float = Field(2.0, gt=0)
    backoff_max_seconds: float = Field(300.0, gt=0)
    retry_after_max_seconds: float = Field(900.0, gt=0)


class WorkerSettings(_Section):
    concurrency: int = Field(4, ge=1)
    stuck_after_seconds: float = Field(900, gt=0)
    sweep_interval_seconds: float = Field(60, gt=0)
    visibility_timeout_seconds: int = Field(3600, gt=0)


class JobSettings(_Section):
    """The scheduled jobs run by ``triage beat`` (each also a CLI command)."""

    #: A ticket re-enqueued this many times by the sweep goes to needs_review with reason ``poison``.
    max_requeues: int = Field(5, ge=1)
    #: needs_review tickets that failed for a transient reason get one fresh LLM pass after this long.
    retry_fallback_after_seconds: float = Field(900, ge=0)
    retry_fallback_interval_seconds: float = Field(300, gt=0)
    #: Fallback reasons counted as transient (the API was down, rate limited or timing out).
    transient_reasons: list[str] = Field(default_factory=lambda: [
        "retries_exhausted", "api_error", "api_error_429", "api_error_500", "api_error_502", "api_error_503",
        "api_error_504"])
    #: How often beat runs the retention purge (it does nothing unless ``privacy.retention_days`` is set).
    purge_interval_seconds: float = Field(3600, gt=0)
    #: The share of a job's interval its lock is held, so a second beat's run of the same slot is skipped.
    lock_share: float = Field(0.9, gt=0, le=1)


class RouteTarget(_Section):
    route: str = Field(min_length=1)
    priority: str = Field(min_length=1)
    sla_hours: float = Field(gt=0)


#: A value a routing rule can ask a field to have (TOML has no null).
RuleValue = str | int | float | bool


class RouteRule(RouteTarget):
    """Matches when every ``when`` field (any field of the ticket schema) equals the value, or one of the listed
    values; checked against the schema at start-up (:func:`triage.routing.check_rules`)."""

    when: dict[str, RuleValue | list[RuleValue]] = Field(default_factory=dict)


class RoutingSettings(_Section):
    rules: list[RouteRule] = Field(default_factory=list)
    fallback: RouteTarget = RouteTarget(route="manual-review", priority="P2", sla_hours=4)


class WebhookSettings(_Section):
    max_body_bytes: int = Field(256 * 1024, gt=0)
    timestamp_tolerance_seconds: float = Field(300, gt=0)
    #: Accept requests without a signature from installs that cannot sign (no secret configured).
    chatwoot_allow_unsigned: bool = False
    zammad_allow_unsigned: bool = False
    #: Per-source secret, from ``TRIAGE_WEBHOOK_SECRET_<SOURCE>``.
    secrets: dict[str, SecretStr] = Field(default_factory=dict)


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    #: Bearer tokens by actor name, from ``TRIAGE_API_TOKENS=name:token,name:token``.
    tokens: dict[str, SecretStr] = Field(default_factory=dict)
    page_size_max: int = Field(200, ge=1)
    #: Extracted fields ``GET /tickets`` filters on (each must be a field of the ticket schema).
    filter_fields: list[str] = Field(default_factory=lambda: ["problem_type", "urgent_level"])

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


@dataclass(frozen=True)
class Budget:
    """One model's budget: requests and tokens per window (one minute by contract)."""

    rpm: int
    tpm: int


class ModelBudget(_Section):
    """A model's own budget; a missing value falls back to the section's ``rpm`` / ``tpm``."""

    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)


class RateLimitSettings(_Section):
    """Fleet-wide budgets per model (MiMo: 100 requests and 10M tokens per minute, per account and model).

    ``TRIAGE_RATE_LIMIT_RPM`` / ``TRIAGE_RATE_LIMIT_TPM`` set the overrides, which win for every model.

    >>> settings = RateLimitSettings(per_model={"mimo-v2.5-pro": {"rpm": 30}})
    >>> settings.budget("mimo-v2.5-pro"), settings.budget("mimo-v2-flash")
    (Budget(rpm=30, tpm=10000000), Budget(rpm=100, tpm=10000000))
    """

    rpm: int = Field(100, ge=1)
    tpm: int = Field(10_000_000, ge=1)
    per_model: dict[str, ModelBudget] = Field(default_factory=dict)
    backend: Literal["auto", "redis", "database"] = "auto"
    key_prefix: str = Field("triage:ratelimit", min_length=1, max_length=100)
    #: The API counts per 60 s; one more second covers a granted call's way to the API.
    window_seconds: float = Field(61.0, gt=0)
    rpm_override: int | None = Field(None, ge=1)
    tpm_override: int | None = Field(None, ge=1)

    def budget(self, model: str) -> Budget:
        """The budget ``model`` runs under."""
        own = self.per_model.get(model) or ModelBudget()
        return Budget(rpm=self.rpm_override or own.rpm or self.rpm, tpm=self.tpm_override or own.tpm or self.tpm)


def _default_sqlite(name: str) -> str:
    return f"sqlite:///{VAR_DIR / name}"


class Settings(_Section):
    """Everything triage reads at start-up. Build it with :func:`load_settings`."""

    database_url: str = Field(default_factory=lambda: _default_sqlite("triage.sqlite3"))
    broker_url: str = Field(default_factory=lambda: "sqla+" + _default_sqlite("broker.sqlite3"))
    mimo_api_key: SecretStr | None = None
    mimo_base_url: str = "https://api.xiaomimimo.com/v1"
    model: str = "mimo-v2-flash"
    extractor: Literal["llm", "rules"] = "llm"
    config_path: Path = DEFAULT_CONFIG_PATH
    schema_: SchemaSettings = Field(default_factory=SchemaSettings, alias="schema")
    extraction: ExtractionSettings = Field(default_factory=ExtractionSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)

    @field_validator("mimo_api_key")
    @classmethod
    def _blank_key_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            return None
        return value

    @model_validator(mode="after")
    def _visibility_outlasts_waits(self) -> Settings:
        longest_wait = max(self.retry.backoff_max_seconds, self.retry.retry_after_max_seconds)
        longest_task = self.extraction.attempts * self.extraction.timeout_seconds
        if self.worker.visibility_timeout_seconds <= longest_wait + longest_task:
            raise ValueError(
                f"worker.visibility_timeout_seconds={self.worker.visibility_timeout_seconds} must be above the "
                f"longest retry wait plus the longest task ({longest_wait + longest_task:.0f}s), or Redis "
                "redelivers messages that are still waiting"
            )
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
    "TRIAGE_CONCURRENCY": "worker.concurrency",
    "TRIAGE_API_TOKENS": "api.tokens",
    "TRIAGE_RATE_LIMIT_RPM": "rate_limit.rpm_override",
    "TRIAGE_RATE_LIMIT_TPM": "rate_limit.tpm_override",
    "TRIAGE_EVAL_DATA": "evaluation.data",
}
WEBHOOK_SECRET_PREFIX = "TRIAGE_WEBHOOK_SECRET_"
#: Settings whose values are never echoed in an error.
SECRET_KEYS = ("mimo_api_key", "api.tokens", "webhooks.secrets")


NESTED_PREFIX = "TRIAGE__"


def _set_dotted(data: dict[str, Any], dotted: str, value: object, env_name: str) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SettingsError(f"{env_name}: {part!r} is not a section of the settings")
    node[leaf] = value


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
            _set_dotted(data, key, env[env_name], env_name)
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
            problems.append(f"{where}{shown}: {error['msg']}")
        raise SettingsError("; ".join(problems)) from None
