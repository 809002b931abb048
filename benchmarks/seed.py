"""The seed: the hand-written script triage started from, as the baseline for every scenario.

For each conversation it calls the chat API with the real ``openai`` client and a short
hand-written system prompt for the MiMo ticket schema, ``json.loads`` the answer and validates it
with ``jsonschema``: one at a time (``--threads 1``), or the same work in a
``ThreadPoolExecutor(64)`` (what a user could hand-write). Nothing is stored. Prints one JSON line:
tickets, valid, failed, seconds, cpu_seconds, peak_rss_mb::

    python -m benchmarks.seed --base-url http://127.0.0.1:8123/v1 --input rows.jsonl --threads 64
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import openai
from jsonschema import Draft202012Validator

from benchmarks.conversations import transcript

#: About 92 cl100k_base tokens (the issue's figure for the seed's prompt), dated the way MiMo's examples are.
SEED_PROMPT = """You are MiMo, an AI assistant developed by Xiaomi. Today is date: {today}. \
Your knowledge cutoff date is December 2024.
Extract a support ticket as JSON:
{{"problem_type": "device_fault"|"consult"|"complaint"|"other",
"device_model": string or null,
"urgent_level": "low"|"normal"|"high",
"user_requirements": [strings]}}
Use null if unknown."""
MODEL = "mimo-v2-flash"
MAX_COMPLETION_TOKENS = 512
KIB_PER_MIB = 1024


def seed_prompt(today: date) -> str:
    return SEED_PROMPT.format(today=f"{today:%A, %B} {today.day}, {today.year}")


def extract(client: openai.OpenAI, validator: Draft202012Validator, system: str, row: dict[str, Any]) -> bool:
    """One conversation: call, parse, validate. True when the answer is a valid ticket."""
    try:
        answer = client.chat.completions.create(
            model=MODEL, response_format={"type": "json_object"}, temperature=0,
            max_completion_tokens=MAX_COMPLETION_TOKENS,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": transcript(row)}])
        ticket = json.loads(answer.choices[0].message.content or "")
    except (openai.OpenAIError, json.JSONDecodeError):
        return False
    return validator.is_valid(ticket)


def run(base_url: str, rows: list[dict[str, Any]], threads: int, schema_path: Path) -> dict[str, Any]:
    client = openai.OpenAI(base_url=base_url, api_key="sk-seed", max_retries=2)
    validator = Draft202012Validator(json.loads(schema_path.read_text(encoding="utf-8")))
    system = seed_prompt(date.today())
    cpu, started = time.process_time(), time.perf_counter()
    if threads == 1:
        results = [extract(client, validator, system, row) for row in rows]
    else:
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(lambda row: extract(client, validator, system, row), rows))
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB_PER_MIB  # Linux: KiB
    return {"tickets": len(rows), "valid": sum(results), "failed": results.count(False), "seconds": seconds,
            "cpu_seconds": cpu_seconds, "peak_rss_mb": peak_rss_mb}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True, help="the chat API, e.g. http://127.0.0.1:8123/v1")
    parser.add_argument("--input", required=True, type=Path, help="submission lines (JSON Lines)")
    parser.add_argument("--threads", type=int, default=1, help="1: the seed's loop; 64: its threaded version")
    parser.add_argument("--schema", type=Path, default=Path("config/ticket_schema.json"))
    options = parser.parse_args(argv)
    rows = [json.loads(line) for line in options.input.read_text(encoding="utf-8").splitlines() if line.strip()]
    print(json.dumps(run(options.base_url, rows, options.threads, options.schema)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
