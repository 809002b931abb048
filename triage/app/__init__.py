"""The app wiring: the application object, everything a process needs, built once from the settings
and handed around; with it the Celery app and publisher (:mod:`.queues`) and the checks a process makes
before it takes any work (:mod:`.startup`).

The HTTP app, the CLI, the demo and the Celery tasks receive an :class:`App` instead of reading
module globals; only the Celery entry module (:mod:`triage.worker`) builds one at import. The
app carries the clock, so leases, SLAs, countdowns and jobs are tested by moving it.

Every audited decision records the outbox's deliveries in its own transaction (:class:`Outbox`, installed
on the app's sessions, publishes them after the commit).

Building checks what every process relies on before it takes any work: the database and broker
URLs (:func:`triage.app.startup.check_urls`), the schema file, every routing rule against the schema,
and the fields the listings filter on; each failure is a :class:`~triage.errors.ConfigError`
naming the key.

>>> from triage.conversation import Conversation
>>> from triage.settings import load_settings
>>> app = App.build(load_settings({"TRIAGE_DATABASE_URL": "sqlite://", "TRIAGE_BROKER_URL": "memory://"}))
>>> app.rules.extract(Conversation.from_text("How do I set an alarm?")).extractor
'rules'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from celery import Celery
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from triage.app.queues import Publisher, create_celery
from triage.app.startup import check_urls
from triage.clock import Clock, SystemClock
from triage.errors import ConfigError
from triage.extraction.rules import RulesExtractor
from triage.outbox.outbox import Outbox
from triage.outbox.send import Senders
from triage.ratelimit import RateLimiter, make_rate_limiter
from triage.schema import TicketSchema
from triage.settings import Settings
from triage.store.db import make_engine, make_sessionmaker
from triage.store.queries import VIEW_KEYS
from triage.tickets.routing import Router

if TYPE_CHECKING:
    from triage.confidence.scorer import ConfidenceScorer
    from triage.extraction.extractor import LLMExtractor
    from triage.learning.extractor import LearnedExtractor


def check_fields(settings: Settings, schema: TicketSchema) -> None:
    """The listings' filter fields exist in the schema, and no schema field takes a name a listed ticket uses."""
    missing = [name for name in settings.api.filter_fields if name not in schema.properties]
    if missing:
        raise ConfigError(f"api.filter_fields: {missing} not in the ticket schema {settings.schema_path} "
                          f"(its fields: {', '.join(schema.properties)})")
    clashing = sorted(VIEW_KEYS & set(schema.properties))
    if clashing:
        raise ConfigError(f"{settings.schema_path}: field name(s) {clashing} are reserved for the ticket's own "
                          "columns in listings; rename them in the schema")


@dataclass
class App:
    settings: Settings
    clock: Clock
    engine: Engine
    sessions: sessionmaker[Session]
    schema: TicketSchema
    router: Router
    celery: Celery
    publisher: Publisher
    rules: RulesExtractor = field(init=False)
    outbox: Outbox = field(init=False)

    def __post_init__(self) -> None:
        self.rules = RulesExtractor(self.schema)
        # publishes through whatever self.publisher is at commit time (tests swap it for a recording one)
        # a delivery attempt has no heartbeat: its lease lasts as long as any attempt may (all steps' timeouts)
        self.outbox = Outbox(self.settings, self.sessions, lambda key: self.publisher.delivery_or_log(key),
                             lease_seconds=self.settings.worker.stuck_after_seconds)
        self.outbox.install()

    @classmethod
    def build(cls, settings: Settings, *, clock: Clock | None = None) -> App:
        """The app for ``settings``; raises :class:`~triage.errors.ConfigError` for a bad URL, schema or rule."""
        check_urls(settings)
        schema = TicketSchema.load(settings.schema_path)
        router = Router(settings.routing, schema)
        check_fields(settings, schema)
        engine = make_engine(settings.database_url, settings.database_pool)
        celery = create_celery(settings)
        return cls(settings=settings, clock=clock or SystemClock(), engine=engine,
                   sessions=make_sessionmaker(engine), schema=schema, router=router, celery=celery,
                   publisher=Publisher(celery))

    @property
    def lease_seconds(self) -> float:
        """How long a worker's lease on a ticket lasts between two renewals (``worker.lease_seconds``)."""
        return self.settings.worker.lease_seconds

    @cached_property
    def limiter(self) -> RateLimiter:
        """The fleet's shared rate limiter (Redis when the broker is Redis, else the database)."""
        limits = self.settings.rate_limit
        return make_rate_limiter(limits, self.settings.broker_url, self.engine, window_seconds=limits.window_seconds)

    @cached_property
    def llm(self) -> LLMExtractor:
        """The MiMo extractor; raises :class:`~triage.settings.SettingsError` without a key. Imported here, not at
        the top: the OpenAI client's types take about a second to import, which a command that never calls the
        LLM (``triage tickets``, ``triage db``, ``--help``) should not pay."""
        from triage.extraction.extractor import LLMExtractor
        from triage.extraction.llm import LLMClient
        from triage.extraction.model_chain import ModelChain

        self.settings.require_llm_ready()
        client = LLMClient.from_settings(self.settings)
        options = self.settings.extraction
        chain = ModelChain([self.settings.model, *options.fallback_models], failures_to_open=options.circuit_failures,
                           open_seconds=options.circuit_open_seconds, retired_seconds=options.retired_model_seconds)
        return LLMExtractor(client, self.schema, chain, options, today=lambda: self.clock.now().date(),
                            acquire=self.limiter.acquire, privacy=self.settings.privacy,
                            routing_fields=self.router.fields, overflow_models=options.overflow_models)

    @cached_property
    def senders(self) -> Senders:
        """This process's outbound HTTP clients (write-back adapters, events, alerts), built when first used."""
        return Senders(self.settings, self.clock)

    @cached_property
    def learned(self) -> LearnedExtractor:
        """The learned extractor, following the newest model version in the database (imported when first used:
        only the processes that score with it load scikit-learn)."""
        from triage.learning.extractor import LearnedExtractor, ModelSource

        source = ModelSource(self.sessions, self.clock, self.settings.learn.poll_seconds)
        return LearnedExtractor(self.schema, source, self.rules)

    @cached_property
    def confidence(self) -> ConfidenceScorer:
        """Scores every machine extraction (triage.confidence): the rules' and the newest learned model's opinion,
        combined by the newest calibration in the database (else the default), noticed within
        ``learn.poll_seconds``."""
        from triage.confidence.scorer import ConfidenceScorer
        from triage.confidence.store import CalibrationSource

        calibrations = CalibrationSource(self.sessions, self.clock, self.settings.learn.poll_seconds)
        return ConfidenceScorer(self.router.fields, self.rules, self.learned.models, calibrations)

    @property
    def extractor(self) -> LLMExtractor | RulesExtractor | LearnedExtractor:
        """The primary extractor chosen by ``TRIAGE_EXTRACTOR``."""
        chosen = self.settings.extractor
        return self.llm if chosen == "llm" else self.learned if chosen == "learned" else self.rules

    @property
    def fallback_extractor(self) -> RulesExtractor | LearnedExtractor:
        """The fallback queue's extractor (``fallback.extractor``): ``auto`` is the learned one once a model is
        stored, else the rules."""
        chosen = self.settings.fallback.extractor
        if chosen == "rules":
            return self.rules
        if chosen == "learned" or self.learned.models.current() is not None:
            return self.learned
        return self.rules

    def require_extractors_ready(self) -> None:
        """What a worker needs before it takes a message: MiMo's key for the LLM, a stored model where the
        learned extractor is chosen (:class:`~triage.errors.ConfigError` saying what to do)."""
        self.settings.require_llm_ready()
        for chosen, what in ((self.settings.extractor, "TRIAGE_EXTRACTOR=learned"),
                             (self.settings.fallback.extractor, "fallback.extractor = learned")):
            if chosen == "learned":
                from triage.learning.extractor import require_model

                require_model(self.sessions, what)

    def close(self) -> None:
        """Release the database connections and the outbound HTTP clients."""
        if "senders" in self.__dict__:
            self.senders.close()
        self.engine.dispose()
