"""The ``triage`` command: ``triage --help`` lists the subcommands, ``triage CMD --help`` each one.

Each command builds the :class:`~triage.app.App` it needs from the settings; :func:`main` maps
triage's errors to exit statuses once (2: fix the configuration or the database; 1: anything else).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from triage.cli.db_commands import add_db_commands
from triage.errors import ConfigError, DatabaseNotReadyError, TriageError
from triage.settings import MIN_TOKEN_CHARS, Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from celery import Celery

    from triage.app import App
    from triage.schema import TicketSchema
    from triage.worker.scheduled import JobReport

#: The table's columns around the ticket's scalar fields (which come from the schema).
HEAD_COLUMNS = ("id", "external_id", "status")
TAIL_COLUMNS = ("route", "priority", "sla_due_at", "extractor", "attempts")
SCALAR_TYPES = frozenset({"string", "integer", "number", "boolean", "null"})
#: Exit statuses: a configuration or database the user must fix first, and everything else.
EXIT_FIX_SETUP, EXIT_FAILED = 2, 1


def _app(*, migrated: bool = True) -> App:
    """The app for this process's settings; with ``migrated``, refuse a database that does not answer or is
    not at the latest migration."""
    from triage.app import App
    from triage.store.db import ensure_migrated

    app = App.build(load_settings())
    if migrated:
        ensure_migrated(app.engine)
    return app


def _service_app(loglevel: str, *, extracts: bool = False) -> App:
    """The app of a long-running process (worker, beat, serve) once everything it needs checks out
    (:mod:`triage.app.startup`; ``extracts``: the extractor's key too), logging as ``TRIAGE_LOG_FORMAT`` says."""
    from triage.app.startup import check_services
    from triage.worker import logs

    logs.check_level(loglevel)
    app = _app(migrated=False)
    if extracts:
        app.settings.require_llm_ready()
    check_services(app)
    if extracts:
        app.require_extractors_ready()
    logs.configure(app.settings, loglevel)
    return app


def default_node_name() -> str:
    """``triage-<pid>@<host>``: a worker node name no other worker process has, on this host or another."""
    return f"triage-{os.getpid()}@{socket.gethostname()}"


def _worker_argv(concurrency: int | None, queues: str, loglevel: str, hostname: str | None) -> list[str]:
    argv = ["worker", "--pool=threads", f"--queues={queues}", f"--loglevel={loglevel}",
            f"--hostname={hostname or default_node_name()}"]
    if concurrency is not None:
        argv.append(f"--concurrency={concurrency}")
    return argv


def start_celery(celery: Celery, argv: list[str]) -> int:
    """Run Celery's command line and hand back its exit status (``start``, unlike ``worker_main``, returns it
    once the worker or beat stops, e.g. 1 after an unrecoverable error; celery-types wrongly says it never
    returns), so a supervisor with a restart-on-failure policy brings it back."""
    start = cast(Callable[[list[str]], int | None], celery.start)
    return int(start(argv) or 0)


def _cmd_worker(args: argparse.Namespace) -> int:
    from triage import metrics
    from triage.app.queues import QUEUES
    from triage.worker import logs
    from triage.worker.tasks import celery_for

    unknown = set(args.queues.split(",")) - set(QUEUES)
    if unknown:
        raise SettingsError(f"--queues: unknown queue(s) {sorted(unknown)}; known: {', '.join(QUEUES)}")
    app = _service_app(args.loglevel, extracts=True)
    metrics.serve_worker_metrics(app.settings.worker.metrics_port if args.metrics_port is None else args.metrics_port)
    argv = _worker_argv(args.concurrency, args.queues, args.loglevel, args.hostname)
    return start_celery(celery_for(app), logs.celery_logging(app.settings) + argv)


def _cmd_beat(args: argparse.Namespace) -> int:
    from triage.worker import logs
    from triage.worker.tasks import celery_for

    app = _service_app(args.loglevel)
    schedule = Path(args.schedule)
    schedule.parent.mkdir(parents=True, exist_ok=True)
    return start_celery(celery_for(app), [*logs.celery_logging(app.settings), "beat", f"--schedule={schedule}",
                                          f"--loglevel={args.loglevel}"])


def _open_input(name: str) -> IO[bytes]:
    """The input as bytes, so that each line is decoded on its own."""
    return sys.stdin.buffer if name == "-" else open(name, "rb")


def _cmd_submit(args: argparse.Namespace) -> int:
    from triage.intake.jsonlines import Refused, submit_lines

    app = _app()
    bad = 0
    stream = _open_input(args.file)
    try:
        for outcome in submit_lines(app.sessions, stream, app.publisher.extractions_or_log, app.clock.now,
                                    app.settings.intake.submit_chunk_lines):
            if isinstance(outcome, Refused):
                print(f"line {outcome.number}: {outcome.reason}", file=sys.stderr, flush=True)
                bad += 1
                continue
            print(json.dumps({"external_id": outcome.external_id, "ticket_id": outcome.received.ticket_id,
                              "status": outcome.received.status}, ensure_ascii=False), flush=True)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    return 1 if bad else 0


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain aligned text table."""
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def table_columns(schema: TicketSchema) -> list[str]:
    """The listing table's columns: the ticket's own, with the schema's scalar fields (arrays and
    objects only in ``--json``)."""
    from triage.schema import RefWalker

    walker = RefWalker(schema.document)

    def scalar(node: Any) -> bool:
        kinds = node.get("type", "string" if "enum" in node else "object")
        return set([kinds] if isinstance(kinds, str) else kinds) <= SCALAR_TYPES

    fields = [name for name, node in schema.properties.items() if walker.follow(node, scalar, lambda ref: False)]
    return [*HEAD_COLUMNS, *fields, *TAIL_COLUMNS]


def print_tickets(views: Sequence[Any], schema: TicketSchema, as_json: bool) -> None:
    if as_json:
        for view in views:
            print(json.dumps(view.to_json(), ensure_ascii=False))
        return
    rows = [view.to_json() for view in views]
    for row in rows:
        row["sla_due_at"] = (row["sla_due_at"] or "")[:16].replace("T", " ")
    print(format_table(rows, table_columns(schema)))


def _cmd_tickets(args: argparse.Namespace) -> int:
    from triage.store.filters import FilterValues
    from triage.store.queries import TicketFilter, list_tickets

    app = _app()
    filters = TicketFilter(status=args.status, route=args.route, priority=args.priority,
                           assigned_to=args.assigned_to, search=args.search)
    FilterValues.of(app.settings, app.schema).check(filters)
    page = list_tickets(app.sessions, filters, order="oldest", limit=args.limit)
    print_tickets(page.items, app.schema, args.json)
    return 0


def _positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)
#: ``triage deliveries``'s table (``--json`` has every field, the error in full).
DELIVERY_COLUMNS = ("id", "ticket_id", "kind", "target", "topic", "status", "attempts", "next_attempt_at", "last_error")
ERROR_COLUMN_CHARS = 60


def _cmd_deliveries(args: argparse.Namespace) -> int:
    from triage.states.deliveries import DeliveryStatus
    from triage.store.deliveries import list_deliveries

    app = _app()
    if args.retry or args.retry_all:
        retried = app.outbox.retry(app.clock.now(), args.retry or (), all_failed=args.retry_all)
        print(f"retried {len(retried)} deliveries" + (": " + " ".join(retried) if retried else ""))
        return 0
    status = DeliveryStatus.FAILED if args.failed else (DeliveryStatus(args.status) if args.status else None)
    views = list_deliveries(app.sessions, status=status, ticket_id=args.ticket, limit=args.limit).items
    if args.json:
        for view in views:
            print(json.dumps(view.to_json(), ensure_ascii=False))
        return 0
    rows = [view.to_json() for view in views]
    for row in rows:
        row["next_attempt_at"] = (row["next_attempt_at"] or "")[:19].replace("T", " ")
        row["last_error"] = (row["last_error"] or "")[:ERROR_COLUMN_CHARS]
    print(format_table(rows, DELIVERY_COLUMNS))
    return 0


def check_tokens(settings: Settings) -> None:
    """Refuse access tokens shorter than :data:`~triage.settings.MIN_TOKEN_CHARS`, naming the user (never the
    token): a short token is a guessable one."""
    short = [name for name, token in settings.api.tokens.items() if len(token.get_secret_value()) < MIN_TOKEN_CHARS]
    if short:
        names = ", ".join(short)
        raise SettingsError(f"TRIAGE_API_TOKENS: the token of {names} is shorter than {MIN_TOKEN_CHARS} characters; "
                            f"make one with `triage token new {short[0]}` and paste its line in")


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What ``triage serve`` hands uvicorn besides the app and where to listen: its forwarded-headers handling
    for the proxies of ``api.forwarded_allow_ips`` (X-Forwarded-For gives the client's address, X-Forwarded-Proto
    the scheme), and our log handler (``logs.configure``) writes the lines."""
    return {"proxy_headers": True, "forwarded_allow_ips": settings.api.forwarded_allow_ips, "log_config": None}


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from triage.api.app import create_app

    check_tokens(load_settings())
    app = _service_app(args.loglevel)
    settings = app.settings
    where = {"host": args.host or settings.api.host, "port": args.port or settings.api.port,
             "log_level": args.loglevel.lower(), **uvicorn_options(settings)}
    if args.workers > 1 and settings.api.session_secret is None:
        print("triage serve: TRIAGE_SESSION_SECRET is not set, so each of the --workers processes signs desk "
              "sessions with its own random key and a sign-in works on one of them only; set it", file=sys.stderr)
    api = create_app(app)  # refuses unusable settings (a webhook secret) before anything listens
    if args.workers > 1:  # each worker process builds its own app from the same settings
        uvicorn.run("triage.api.app:create_app", factory=True, workers=args.workers, **where)
    else:
        uvicorn.run(api, **where)
    return 0


#: A new access token's random bytes (``secrets.token_urlsafe``: 43 characters).
TOKEN_BYTES = 32


def _cmd_token_new(args: argparse.Namespace) -> int:
    import secrets

    name = args.name.strip()
    if not name or any(char in name for char in ":,") or name != args.name:
        raise SettingsError(f"NAME={args.name!r}: give a name without ':', ',' or surrounding blanks (it is the "
                            "actor the audit trail records)")
    print(f"{name}:{secrets.token_urlsafe(TOKEN_BYTES)}")
    return 0


PROGRESS_WIDTH = 30


def progress_bar(label: str, stream: IO[str] = sys.stderr) -> Callable[[int, int], None]:
    """A progress callback: a redrawn bar on a terminal, a line per tenth otherwise."""
    last_tenth = -1

    def show(done: int, total: int) -> None:
        nonlocal last_tenth
        filled = PROGRESS_WIDTH * done // max(total, 1)
        line = f"{label} [{'#' * filled}{'.' * (PROGRESS_WIDTH - filled)}] {done}/{total}"
        if stream.isatty():
            stream.write("\r" + line + ("\n" if done == total else ""))
        elif (tenth := 10 * done // max(total, 1)) != last_tenth:
            last_tenth = tenth
            stream.write(line + "\n")
        stream.flush()

    return show


def _cmd_sweep(args: argparse.Namespace) -> int:
    from triage.worker import scheduled

    report = scheduled.sweep(_app(), holder="cli", force=args.force)
    print(report.summary())
    _hint_force(report, args.force)
    return 0


def _hint_force(report: JobReport, forced: bool) -> None:
    """Say how to run a job that beat's run is holding."""
    if not report.ran and not forced:
        print("(beat ran it moments ago; --force runs it anyway)", file=sys.stderr)


def _cmd_retry_fallback(args: argparse.Namespace) -> int:
    from triage.worker import scheduled

    report = scheduled.retry_fallback(_app(), holder="cli", progress=progress_bar("retry"), force=args.force)
    print(report.summary())
    _hint_force(report, args.force)
    return 0


def _cmd_reprocess(args: argparse.Namespace) -> int:
    from datetime import datetime

    from triage.worker import scheduled

    try:
        since = datetime.fromisoformat(args.since) if args.since else None
    except ValueError:
        raise SettingsError(f"--since={args.since!r}: use an ISO date or time, e.g. 2026-11-01T00:00Z") from None
    if since is not None and since.tzinfo is None:
        raise SettingsError(f"--since={args.since!r}: give a time zone, e.g. 2026-11-01T00:00+00:00")
    selection = scheduled.Selection(args.schema_version, args.prompt_version, args.status, since)
    if args.status and not args.since:
        raise SettingsError("--status needs --since (e.g. --status needs_review --since 2026-11-01T00:00Z)")
    report = scheduled.reprocess(_app(), selection, dry_run=args.dry_run, progress=progress_bar("reprocess"))
    if args.dry_run:
        print(f"would reprocess {len(report.selected)} tickets ({selection.describe()}): "
              + " ".join(map(str, report.selected)))
    else:
        print(report.summary())
    return 0


def _cmd_purge(args: argparse.Namespace) -> int:
    from triage.store.purge import purge_before
    from triage.worker.retention import parse_cutoff

    app = _app()
    try:
        before = parse_cutoff(args.before, app.clock.now())
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    report = purge_before(app.sessions, before, actor="cli", dry_run=args.dry_run, progress=progress_bar("purge"),
                          clock=app.clock)
    print(report.summary())
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from triage.cli.demo import run_demo

    return run_demo(timeout=args.timeout)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from triage.cli.evaluate import evaluate_command

    return evaluate_command(args.dataset, Path(args.data) if args.data else None, args.limit, args.json,
                            chart=Path(args.chart) if args.chart else None, extractors=args.extractor,
                            split=args.split, report_dir=Path(args.report) if args.report else None,
                            concurrency=args.concurrency)


def _cmd_learn(args: argparse.Namespace) -> int:
    from triage.cli.learn import learn_command

    return learn_command(_app(), args.dataset, data=Path(args.data) if args.data else None,
                         from_reviews=args.from_reviews, since=args.since, as_json=args.json)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from triage.cli.calibrate import calibrate_command

    return calibrate_command(_app(), args.dataset, data=Path(args.data) if args.data else None, since=args.since,
                             as_json=args.json)


def build_parser() -> argparse.ArgumentParser:
    from triage.app.queues import QUEUES
    from triage.states.deliveries import DeliveryStatus
    from triage.states.tickets import Status

    *statuses, last_status = Status
    parser = argparse.ArgumentParser(
        prog="triage",
        description="Customer-service ticket triage: extract a ticket from each conversation with an LLM "
                    "(or offline rules), validate it, route it, store it.",
        epilog="Settings come from environment variables and config/triage.toml; see docs/configuration.md.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    parser.add_argument("--version", action="version", version=f"%(prog)s {version('triage')}")
    add_db_commands(sub)

    worker = sub.add_parser("worker", help="run a Celery worker", description="Run a Celery worker (threads "
                            "pool) that extracts, routes and stores tickets.")
    worker.add_argument("--concurrency", type=int, help="threads (default: worker.concurrency in config)")
    worker.add_argument("--queues", default=",".join(QUEUES), help="comma-separated, of "
                        f"{', '.join(QUEUES)} (default: all; e.g. --queues deliveries for a worker of the outbox only)")
    worker.add_argument("--loglevel", default="INFO", help="default: %(default)s")
    worker.add_argument("--hostname", help="Celery node name, e.g. worker1@%%h (%%h: this host's name); "
                        "default: triage-<pid>@<host>, unique per process")
    worker.add_argument("--metrics-port", type=int, metavar="PORT", help="serve this worker's Prometheus "
                        "metrics on PORT (all interfaces); 0 turns them off (default: worker.metrics_port, 0)")
    worker.set_defaults(func=_cmd_worker)

    beat = sub.add_parser("beat", help="run the scheduler", description="Run Celery beat: the scheduled "
                          "jobs (re-enqueue stuck tickets). Run exactly one.")
    beat.add_argument("--schedule", default="var/celerybeat-schedule", help="state file (default: %(default)s)")
    beat.add_argument("--loglevel", default="INFO", help="default: %(default)s")
    beat.set_defaults(func=_cmd_beat)

    submit = sub.add_parser("submit", help="submit conversations (JSON Lines)", description="Store and "
                            "enqueue conversations, one JSON object per line: {\"source\", \"external_id\", "
                            "\"text\"} or with \"messages\": [{\"role\": \"customer\"|\"agent\", \"text\"}]. "
                            "Prints {\"external_id\", \"ticket_id\", \"status\"} per line; exit 1 if any "
                            "line was bad.")
    submit.add_argument("file", nargs="?", default="-", help="a .jsonl file, or - for stdin (default)")
    submit.set_defaults(func=_cmd_submit)

    tickets = sub.add_parser("tickets", help="list tickets", description="List tickets as a table, or as "
                             "JSON Lines with --json.")
    tickets.add_argument("--status", help=f"{', '.join(statuses)} or {last_status}")
    tickets.add_argument("--route", help="e.g. hardware-support (a route of the routing rules)")
    tickets.add_argument("--priority", help="e.g. P1 (a priority of the routing rules)")
    tickets.add_argument("--assigned-to", metavar="NAME", help="tickets claimed by this person")
    tickets.add_argument("--search", metavar="TEXT",
                         help="case-insensitive text in the conversation or the extracted fields")
    tickets.add_argument("--limit", type=_positive, metavar="N", help="at most N tickets (oldest first)")
    tickets.add_argument("--json", action="store_true", help="one JSON object per line")
    tickets.set_defaults(func=_cmd_tickets)

    deliveries = sub.add_parser("deliveries", help="list or retry the outbox's deliveries", description="List the "
                                "outbox's deliveries (write-back to the helpdesks, signed events, alerts), newest "
                                "first, as a table or JSON Lines; or put failed ones back in the queue with a fresh "
                                "budget: writeback.give_up_after_hours from now for transient answers, "
                                "writeback.max_attempts for the others (steps already done are not done again).")
    shown = deliveries.add_mutually_exclusive_group()
    shown.add_argument("--failed", action="store_true", help="only failed deliveries (same as --status failed)")
    shown.add_argument("--status", choices=[s.value for s in DeliveryStatus], help="only deliveries in this status")
    deliveries.add_argument("--ticket", type=int, metavar="ID", help="only this ticket's deliveries")
    deliveries.add_argument("--limit", type=int, default=100, help="at most this many (default: %(default)s)")
    deliveries.add_argument("--json", action="store_true", help="one JSON object per line")
    retry_what = deliveries.add_mutually_exclusive_group()
    retry_what.add_argument("--retry", action="append", metavar="ID", help="retry this failed, gone or skipped "
                            "delivery; may be given more than once")
    retry_what.add_argument("--retry-all", action="store_true", help="retry every failed delivery (never a gone or "
                            "skipped one)")
    deliveries.set_defaults(func=_cmd_deliveries)

    serve = sub.add_parser("serve", help="run the HTTP service (webhooks, dispatch review)", description="Run "
                           "the HTTP service: POST /webhooks/{source}, the dispatch review API, GET /healthz; "
                           "OpenAPI docs at /docs.")
    serve.add_argument("--host", help="default: api.host in config (127.0.0.1)")
    serve.add_argument("--port", type=int, help="default: api.port in config (8000)")
    serve.add_argument("--workers", type=int, default=1, help="server processes (default: %(default)s)")
    serve.add_argument("--loglevel", default="INFO", help="default: %(default)s")
    serve.set_defaults(func=_cmd_serve)

    token = sub.add_parser("token", help="make access tokens", description="Access tokens for the dispatch API and "
                           "desk (TRIAGE_API_TOKENS, name:token pairs separated by commas).")
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="COMMAND")
    new_token = token_sub.add_parser("new", help="print a NAME:TOKEN line to paste into TRIAGE_API_TOKENS",
                                     description="Print NAME:TOKEN with a new random token of 43 characters (triage "
                                     f"serve refuses tokens shorter than {MIN_TOKEN_CHARS}); add the line to "
                                     "TRIAGE_API_TOKENS, comma-separated from the others.")
    new_token.add_argument("name", metavar="NAME", help="who the token is for: the actor the audit trail records")
    new_token.set_defaults(func=_cmd_token_new)

    sweep = sub.add_parser("sweep", help="re-enqueue stuck tickets now", description="Run the sweep job now "
                           "(beat runs it every worker.sweep_interval_seconds): take back tickets whose worker's "
                           "lease ran out, and re-enqueue tickets left queued or fallback for "
                           "worker.stuck_after_seconds; a ticket re-enqueued jobs.max_requeues times goes to "
                           "needs_review with reason poison.")
    sweep.add_argument("--force", action="store_true", help="run even while beat's run holds the job's lock (two "
                       "forced runs still never overlap)")
    sweep.set_defaults(func=_cmd_sweep)

    retry = sub.add_parser("retry-fallback", help="one fresh LLM pass for transient failures", description="Run "
                           "the retry-fallback job now: needs_review tickets whose reason was transient (API down, "
                           "rate limited, timeouts) get one fresh LLM pass after jobs.retry_fallback_after_seconds.")
    retry.add_argument("--force", action="store_true", help="run even while beat's run holds the job's lock (two "
                       "forced runs still never overlap)")
    retry.set_defaults(func=_cmd_retry_fallback)

    reprocess = sub.add_parser("reprocess", help="re-extract tickets after a schema or prompt change",
                               description="Send matching tickets through extraction again; tickets a person "
                               "corrected are never touched. Give --schema-version, --prompt-version, or "
                               "--status with --since.")
    chosen = reprocess.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--schema-version", help="tickets extracted with this schema version")
    chosen.add_argument("--prompt-version", help="tickets extracted with this prompt version")
    chosen.add_argument("--status", help="tickets with this status (routed or needs_review); needs --since")
    reprocess.add_argument("--since", help="created at or after this ISO time, e.g. 2026-11-01T00:00+00:00")
    reprocess.add_argument("--dry-run", action="store_true", help="list the tickets, change nothing")
    reprocess.set_defaults(func=_cmd_reprocess)

    purge = sub.add_parser("purge", help="delete old conversations (retention)", description="Delete the "
                           "conversations received before DATE whose tickets are finished and unchanged since, with "
                           "their tickets, attempts, audit events and intake keys. Tickets still in the pipeline are "
                           "kept. Each purge is logged with its counts in the purges table. The scheduled job does "
                           "the same for privacy.retention_days.")
    purge.add_argument("--before", required=True, metavar="DATE", help="an ISO date (midnight UTC) or time with "
                       "its zone, e.g. 2026-01-01 or 2026-01-01T00:00+08:00")
    purge.add_argument("--dry-run", action="store_true", help="count what would go, delete nothing")
    purge.set_defaults(func=_cmd_purge)

    demo = sub.add_parser("demo", help="run the whole pipeline on sample conversations", description="Migrate "
                          "the database, start a worker, submit the bundled sample conversations, wait, print "
                          "the routed tickets, stop the worker. Uses MiMo when MIMO_API_KEY is set, otherwise "
                          "the offline rules extractor.")
    demo.add_argument("--timeout", type=float, default=180.0, help="seconds to wait (default: %(default)s)")
    demo.set_defaults(func=_cmd_demo)

    evaluate = sub.add_parser("evaluate", help="measure the extractors on labelled data (held-out figures)",
                              description="Run extractors over labelled data sets (public sets, or your own "
                              "tickets as JSON Lines) and report, per extractor and field, accuracy, macro F1, "
                              "per-class precision and recall, the confusion matrix, calibration, tokens and cost.")
    evaluate.add_argument("dataset", nargs="+", metavar="DATASET", help="banking77, bitext, stc3-cn, stc3-en, stc3 "
                          "(both), all, or a JSON Lines file of labelled conversations (docs/evaluation.md)")
    evaluate.add_argument("--extractor", choices=["rules", "learned", "llm", "all"], default="rules",
                          help="all: rules and learned (the LLM only when named; it calls MIMO_BASE_URL) "
                          "(default: %(default)s)")
    evaluate.add_argument("--split", choices=["test", "all"], default="test", help="test: the learned extractor's "
                          "out-of-fold figures (seeded stratified folds, a throw-away model per fold); all: the "
                          "stored model on every row (default: %(default)s)")
    evaluate.add_argument("--data", help="folder holding banking77/, bitext/ and stc3/ (default: "
                          "TRIAGE_EVAL_DATA)")
    evaluate.add_argument("--limit", type=_positive, metavar="N", help="an evenly spaced sample of N rows per data set")
    evaluate.add_argument("--concurrency", type=_positive, default=1, metavar="N", help="LLM calls at once "
                          "(within the fleet's rate budget; default: %(default)s)")
    evaluate.add_argument("--json", action="store_true", help="print JSON Lines: one object per (data set, extractor)")
    evaluate.add_argument("--report", metavar="DIR", help="write DIR/report.md and its PNG charts (needs the "
                          "charts extra: pip install 'triage[charts]')")
    evaluate.add_argument("--chart", metavar="FILE", help="also draw the confusion matrices as a PNG (needs "
                          "the charts extra: pip install 'triage[charts]')")
    evaluate.set_defaults(func=_cmd_evaluate)

    learn = sub.add_parser("learn", help="fit the learned extractor and store it as a new version",
                           description="Fit a text classifier for each enum field of the ticket schema (word and "
                           "character n-gram TF-IDF, a calibrated linear model: scikit-learn) on the labelled rows "
                           "given and/or the desk's reviews, report its accuracy from a seeded 5-fold split, and "
                           "store it in the database as the newest version: every worker uses it within a minute.")
    learn.add_argument("dataset", nargs="*", metavar="DATASET", help="banking77, bitext, or a JSON Lines file of "
                       "labelled conversations (docs/evaluation.md); its rows become the stored training set")
    learn.add_argument("--from-reviews", action="store_true", help="also learn from the desk's reviews (a "
                       "correction is the corrected value; a resolve without one confirms the machine's)")
    learn.add_argument("--since", metavar="DATE", help="only reviews made at or after DATE (ISO date or time with "
                       "zone, e.g. 2026-11-01)")
    learn.add_argument("--data", help="folder holding banking77/ and bitext/ (default: TRIAGE_EVAL_DATA)")
    learn.add_argument("--json", action="store_true", help="print the new version's figures as one JSON object")
    learn.set_defaults(func=_cmd_learn)

    calibrate = sub.add_parser("calibrate", help="fit the ticket confidence on the desk's reviews and store it",
                               description="Fit the combination of signals that gives each ticket its confidence "
                               "(a logistic regression per routing field and extractor: scikit-learn) on the desk's "
                               "reviews (a correction is the corrected value; a resolve or confirm without one "
                               "confirms the machine's) and on the labelled data sets given, report its held-out "
                               "ECE and the confidence thresholds that reach quality.target_precision, and store it "
                               "in the database as the newest version: every worker uses it within a minute. Until "
                               "one is stored, the documented default combination applies (README: Confidence).")
    calibrate.add_argument("dataset", nargs="*", metavar="DATASET", help="banking77, bitext, or a JSON Lines file of "
                           "labelled conversations (README: Labelled data): the rules and the learned extractor "
                           "(out of fold) decide each row, giving their heads labels")
    calibrate.add_argument("--since", metavar="DATE", help="only reviews made at or after DATE (ISO date or time "
                           "with zone, e.g. 2026-11-01)")
    calibrate.add_argument("--data", help="folder holding banking77/ and bitext/ (default: TRIAGE_EVAL_DATA)")
    calibrate.add_argument("--json", action="store_true", help="print the new version's report as one JSON object")
    calibrate.set_defaults(func=_cmd_calibrate)
    return parser


def exit_status(exc: TriageError) -> int:
    """2 when the user must fix the configuration or the database first, else 1."""
    return EXIT_FIX_SETUP if isinstance(exc, ConfigError | DatabaseNotReadyError) else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except TriageError as exc:
        print(f"triage: {exc}", file=sys.stderr)
        return exit_status(exc)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
