"""Scenario ``evaluate``: ``triage evaluate`` of 10,000 labelled conversations with the rules and the learned
extractor, each under a minute (the issue's target), against the bare rules loop in the same run.

The conversations are the public sets under ``--data`` (banking77 and bitext mapped to the schema) or, without
it, the small vendored samples in tests/fixtures/public, cycled to the count with the row's number appended
so every text differs. Each command is one ``python -m triage`` process on a SQLite database of its own
(start-up included in its wall time): the rules; the learned extractor out-of-fold (``--split test``: five
throw-away models fitted and scored); ``triage learn`` of the same file; the stored model on every row
(``--split all``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.report import Check, Line, ScenarioResult
from benchmarks.stack import REPO, clean_environ

TARGET_SECONDS = 60.0
FIXTURES = REPO / "tests" / "fixtures" / "public"
CONFIG = REPO / "config" / "triage.toml"


def labelled_file(folder: Path, count: int, path: Path) -> Path:
    """``count`` labelled JSON Lines rows cycled from banking77 and bitext under ``folder``."""
    from triage.evaluation.labels import load_dataset

    samples = [s for name in ("banking77", "bitext") for s in load_dataset(name, folder).samples]
    with path.open("w", encoding="utf-8") as handle:
        for number in range(count):
            sample = samples[number % len(samples)]
            text = sample.conversation.customer_text() + (f" (#{number})" if number >= len(samples) else "")
            handle.write(json.dumps({"text": text, "labels": dict(sample.labels)}, ensure_ascii=False) + "\n")
    return path


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "triage", *command], env=env, capture_output=True, text=True,
                          timeout=20 * TARGET_SECONDS, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"triage {' '.join(command[:2])} exited {done.returncode}: {done.stderr[-500:]}")
    return seconds, done.stdout


def _bare_rules(path: Path) -> float:
    """The baseline: the rules extractor over the same conversations in a plain loop (no scoring, no start-up)."""
    from triage.conversation import Conversation
    from triage.extraction.rules import RulesExtractor
    from triage.schema import TicketSchema

    rules = RulesExtractor(TicketSchema.load(REPO / "config" / "ticket_schema.json"))
    texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]
    started = time.perf_counter()
    for text in texts:
        rules.extract(Conversation.from_text(text))
    return time.perf_counter() - started


def scenario_evaluate(workdir: Path, count: int, data: Path | None) -> ScenarioResult:
    source = f"banking77 and bitext from `{data}`" if data else "the vendored samples in tests/fixtures/public"
    result = ScenarioResult(
        "evaluate", f"`triage evaluate` of {count:,} conversations",
        f"{count:,} labelled JSON Lines rows cycled from {source} (the row number appended so texts differ). Each "
        "command one `python -m triage` process on its own SQLite database, wall time with start-up; ratio: "
        "against the bare rules loop (RulesExtractor.extract over the same texts, in-process).", "bare rules loop")
    path = labelled_file(data or FIXTURES, count, workdir / "evaluate.jsonl")
    env = {**clean_environ(), "TRIAGE_CONFIG": str(CONFIG), "TRIAGE_DATABASE_URL": f"sqlite:///{workdir / 'e.sqlite3'}",
           "TRIAGE_BROKER_URL": "memory://", "TRIAGE_EXTRACTOR": "rules"}
    subprocess.run([sys.executable, "-m", "triage", "db", "upgrade"], env=env, check=True, capture_output=True)
    bare = _bare_rules(path)
    result.lines.append(Line("bare rules loop", count / bare, unit="conversations/s", ratio=1.0,
                             note=f"{bare:.1f} s"))
    runs = [("rules", ["evaluate", str(path), "--extractor", "rules", "--json"]),
            ("learned, --split test (5 folds fitted)", ["evaluate", str(path), "--extractor", "learned", "--json"]),
            ("learn (5-fold report + fit + store)", ["learn", str(path)]),
            ("learned, --split all (stored model)", ["evaluate", str(path), "--extractor", "learned", "--split",
                                                     "all", "--json"])]
    for subject, command in runs:
        print(f"bench: evaluate: {subject}", file=sys.stderr, flush=True)
        seconds, out = _timed(command, env)
        accuracy = json.loads(out.splitlines()[0]).get("accuracy") if command[0] == "evaluate" else None
        note = f"{seconds:.1f} s" + (f"; problem_type accuracy {100 * accuracy:.1f}%" if accuracy else "")
        result.lines.append(Line(f"triage {subject}", count / seconds, unit="conversations/s",
                                 ratio=(count / seconds) / (count / bare), note=note))
        if command[0] == "evaluate":
            result.checks.append(Check(f"`triage evaluate` of {count:,} with {subject} under "
                                       f"{TARGET_SECONDS:.0f} s", f"{seconds:.1f} s", seconds < TARGET_SECONDS,
                                       "" if seconds < TARGET_SECONDS else "see the note: fitting five folds "
                                       "dominates"))
    return result
