"""The running pieces built once per process from the settings: database, schema, router, extractors.

>>> from triage.conversation import Conversation
>>> from triage.settings import load_settings
>>> parts = Components.build(load_settings({"TRIAGE_DATABASE_URL": "sqlite://"}))
>>> parts.rules.extract(Conversation.from_text("How do I set an alarm?")).extractor
'rules'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from triage.extraction.extractor import LLMExtractor
from triage.extraction.llm import LLMClient
from triage.extraction.model_chain import ModelChain
from triage.extraction.rules import RulesExtractor
from triage.ratelimit import RateLimiter, make_rate_limiter
from triage.routing import Router
from triage.schema import TicketSchema
from triage.settings import Settings
from triage.store.db import make_engine, make_sessionmaker


@dataclass
class Components:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    schema: TicketSchema
    router: Router
    rules: RulesExtractor = field(init=False)

    def __post_init__(self) -> None:
        self.rules = RulesExtractor(self.schema)

    @classmethod
    def build(cls, settings: Settings) -> Components:
        engine = make_engine(settings.database_url)
        return cls(settings=settings, engine=engine, sessions=make_sessionmaker(engine),
                   schema=TicketSchema.load(settings.schema_path), router=Router(settings.routing))

    @cached_property
    def limiter(self) -> RateLimiter:
        """The fleet's shared rate limiter (Redis when the broker is Redis, else the database)."""
        limits = self.settings.rate_limit
        return make_rate_limiter(limits, self.settings.broker_url, self.engine, window_seconds=limits.window_seconds)

    @cached_property
    def llm(self) -> LLMExtractor:
        """The MiMo extractor; raises :class:`~triage.settings.SettingsError` without a key."""
        self.settings.require_llm_ready()
        client = LLMClient.from_settings(self.settings)
        options = self.settings.extraction
        chain = ModelChain([self.settings.model, *options.fallback_models], failures_to_open=options.circuit_failures,
                           open_seconds=options.circuit_open_seconds, retired_seconds=options.retired_model_seconds)
        return LLMExtractor(client, self.schema, chain, options, acquire=self.limiter.acquire,
                            privacy=self.settings.privacy)

    @property
    def extractor(self) -> LLMExtractor | RulesExtractor:
        """The primary extractor chosen by ``TRIAGE_EXTRACTOR``."""
        return self.llm if self.settings.extractor == "llm" else self.rules
