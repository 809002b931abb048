"""A real HTTP server on loopback that speaks the OpenAI chat-completions wire format.

Tests script its answers per conversation: a reply list is picked by a *key*, a string that
appears in the request's messages (put a unique marker in each test conversation). A request
with ``"stream": true`` gets the same reply as SSE chunks, so one script serves both paths.

    with FakeMiMo() as api:
        api.script("ORDER-17", error(500), ok({"problem_type": "consult", ...}))
        client = openai.OpenAI(base_url=api.base_url, api_key="test")

Chaos mode answers every unscripted request with a seeded random draw from a weighted mix of
faults (429, 500, 503, hangs, non-JSON, truncated and schema-invalid answers, broken bodies)::

    with FakeMiMo(chaos=Chaos(seed=7, weights={"ok": 6, "500": 1, "hang": 1})) as api:
        ...
        api.kinds()   # {"ok": 812, "500": 130, "hang": 141}

For benchmarks it also plays the API's limits and costs: ``latency`` plus a seeded ``jitter``,
a per-model ``rpm`` per ``window_seconds`` (beyond it: 429 with ``Retry-After``, counted),
token usage counted by ``count_tokens`` (e.g. a cl100k_base tokenizer), keep-alive
connections, and counters in :meth:`FakeMiMo.stats` (also served as JSON at ``GET /_stats``).
A batch request, whose user message holds several blocks opened by
``<<<CONVERSATION id="KEY">>>`` and closed by ``<<<END CONVERSATION>>>``, gets one JSON object
keyed by those KEYs, a valid ticket each::

    with FakeMiMo(latency=0.5, jitter=0.05, rpm=100, count_tokens=count) as api:
        ...
        api.stats()   # {"calls": 240, "answered": 200, "rate_limited": 40, "prompt_tokens": ...}

A request with ``"logprobs": true`` gets ``choices[0].logprobs.content``: the content cut into tokens
(:func:`fake_tokens`: words, runs of blanks, single punctuation marks), each with its UTF-8 ``bytes``, a
logprob of :data:`DEFAULT_LOGPROB` unless the reply's ``logprobs`` names that token's text, and
``top_logprobs`` (the token itself first) when asked for; streamed, one token per chunk with its entry.
A model in ``refuse_logprobs`` answers such a request 400, as an endpoint that does not take the
parameter does::

    with FakeMiMo(refuse_logprobs={"mimo-old"}) as api:
        api.script("K-1", ok({"problem_type": "consult", ...}, logprobs={"consult": -0.2}))
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.loopback import Loopback

USAGE = {"prompt_tokens": 161, "completion_tokens": 89, "total_tokens": 250,
         "completion_tokens_details": {"reasoning_tokens": 0}, "prompt_tokens_details": {}}


@dataclass
class Reply:
    """One scripted answer: a completion (``content``) or an HTTP error (``status``)."""

    status: int = 200
    content: str | None = None
    finish_reason: str = "stop"
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    delay: float = 0.0
    usage: dict[str, Any] = field(default_factory=lambda: dict(USAGE))
    reasoning: str | None = None
    #: Sent verbatim as the whole HTTP body (with ``content_type``), whatever ``status`` is.
    raw: str | None = None
    content_type: str = "application/json"
    #: Token text -> its logprob, for a request that asks for logprobs (other tokens: DEFAULT_LOGPROB).
    logprobs: dict[str, float] = field(default_factory=dict)


def ok(content: str | dict[str, Any], finish_reason: str = "stop", **kw: Any) -> Reply:
    """A 200 completion whose message content is ``content`` (a dict is JSON-encoded)."""
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    return Reply(content=text, finish_reason=finish_reason, **kw)


def error(status: int, message: str = "scripted error", headers: dict[str, str] | None = None) -> Reply:
    """An HTTP error in the OpenAI error-body shape."""
    body = json.dumps({"error": {"message": message, "type": "error", "code": str(status)}})
    return Reply(status=status, body=body, headers=headers or {})


def hang(seconds: float, then: Reply | None = None) -> Reply:
    """Wait ``seconds`` before answering (longer than the client timeout = a timeout)."""
    reply = then or ok("{}")
    reply.delay = seconds
    return reply


def raw(body: str, status: int = 200, content_type: str = "application/json") -> Reply:
    """An HTTP answer whose body is ``body`` as is: not JSON, cut off, an HTML error page..."""
    return Reply(status=status, raw=body, content_type=content_type)


#: The logprob of a token a reply's ``logprobs`` does not name.
DEFAULT_LOGPROB = -0.0001
_TOKEN = re.compile(r"\w+|\s+|[^\w\s]", re.UNICODE)


def fake_tokens(text: str) -> list[str]:
    """The fake's tokenisation: words, runs of blanks, single punctuation marks (they add up to ``text``).

    >>> fake_tokens('{"a": "b c"}')
    ['{', '"', 'a', '"', ':', ' ', '"', 'b', ' ', 'c', '"', '}']
    """
    return _TOKEN.findall(text)


def token_logprobs(reply: Reply, top: int) -> list[dict[str, Any]]:
    """The ``logprobs.content`` entries of ``reply``'s content, with ``top`` ``top_logprobs`` each."""
    entries = []
    for token in fake_tokens(reply.content or ""):
        logprob = reply.logprobs.get(token, DEFAULT_LOGPROB)
        entry = {"token": token, "logprob": logprob, "bytes": list(token.encode())}
        rest = 1.0 - math.exp(logprob)
        alternatives = [{"token": f"<alt{rank}>", "logprob": math.log(max(rest, 1e-12) / top), "bytes": None}
                        for rank in range(1, top)]
        entries.append({**entry, "top_logprobs": [entry, *alternatives][:top]})
    return entries


VALID_TICKET: dict[str, Any] = {"problem_type": "other", "device_model": None, "urgent_level": "normal",
                                 "user_requirements": []}
#: The counters of :meth:`FakeMiMo.stats`.
STAT_COUNTERS = ("calls", "answered", "rate_limited", "batch_calls", "batch_conversations", "prompt_tokens",
                 "completion_tokens", "peak_in_flight")

#: What chaos mode can answer, by name. ``hang`` waits ``Chaos.hang_seconds`` (set it above the
#: client's timeout); the ``body_*`` kinds break the HTTP body itself, the others the model's answer.
CHAOS_KINDS = ("ok", "429", "500", "503", "hang", "not_json", "truncated", "truncated_stop", "invalid",
               "body_not_json", "body_truncated")
#: The default mix: about half good answers, the rest spread over every fault.
CHAOS_MIX: Mapping[str, float] = {"ok": 50, "429": 5, "500": 6, "503": 6, "hang": 4, "not_json": 6,
                                  "truncated": 5, "truncated_stop": 5, "invalid": 7, "body_not_json": 3,
                                  "body_truncated": 3}


@dataclass
class Chaos:
    """A seeded random mix of answers: one independent draw per request, reproducible by ``seed``.

    >>> first, second = Chaos(seed=1), Chaos(seed=1)
    >>> [first.draw()[0] for _ in range(50)] == [second.draw()[0] for _ in range(50)]
    True
    """

    weights: Mapping[str, float] = field(default_factory=lambda: dict(CHAOS_MIX))
    seed: int = 0
    hang_seconds: float = 3.0
    valid: Mapping[str, Any] = field(default_factory=lambda: dict(VALID_TICKET))
    retry_after: str = "1"

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(CHAOS_KINDS)
        if unknown:
            raise ValueError(f"unknown chaos kinds {sorted(unknown)}; known: {', '.join(CHAOS_KINDS)}")
        self._rng = random.Random(self.seed)
        self._kinds = [kind for kind, weight in self.weights.items() if weight > 0]
        self._weights = [self.weights[kind] for kind in self._kinds]

    def draw(self) -> tuple[str, Reply]:
        """The next kind and its reply (call under the server's lock: the generator is shared)."""
        kind = self._rng.choices(self._kinds, self._weights)[0]
        return kind, self.reply(kind)

    def reply(self, kind: str) -> Reply:
        """The reply for one chaos ``kind``."""
        text = json.dumps(dict(self.valid), ensure_ascii=False)
        replies: dict[str, Any] = {
            "ok": lambda: ok(text),
            "429": lambda: error(429, "rate limited", headers={"Retry-After": self.retry_after}),
            "500": lambda: error(500, "internal error"),
            "503": lambda: error(503, "overloaded"),
            "hang": lambda: hang(self.hang_seconds, ok(text)),
            "not_json": lambda: ok("Sorry, I can only answer in plain words today."),
            "truncated": lambda: ok(text[: len(text) // 2], finish_reason="length"),
            "truncated_stop": lambda: ok(text[: len(text) // 2]),
            "invalid": lambda: ok({**self.valid, "problem_type": "broken", "urgent_level": 3}),
            "body_not_json": lambda: raw("<html><body>502 Bad Gateway</body></html>", content_type="text/html"),
            "body_truncated": lambda: raw('{"id": "chatcmpl-fake", "object": "chat.completion", "choices": [{"in'),
        }
        return replies[kind]()


#: A batch request's conversation blocks: the KEY and the text of each.
BATCH_BLOCK = re.compile(r'<<<CONVERSATION id="([^"]+)">>>(.*?)<<<END CONVERSATION>>>', re.DOTALL)


def batch_keys(messages: list[dict[str, Any]]) -> list[str]:
    """The KEYs of a batch request's conversation blocks, in order (empty for a single ticket).

    >>> batch_keys([{"role": "user", "content": '<<<CONVERSATION id="7">>>\\nhi\\n<<<END CONVERSATION>>>'}])
    ['7']
    """
    return [key for message in messages if message.get("role") == "user"
            for key, _ in BATCH_BLOCK.findall(str(message.get("content") or ""))]


class RequestWindow:
    """Per-model sliding window of answered requests: at most ``rpm`` per ``window_seconds``.

    >>> now = [0.0]
    >>> window = RequestWindow(rpm=2, window_seconds=60, clock=lambda: now[0])
    >>> window.admit("m"), window.admit("m"), window.admit("m"), window.admit("other")
    (0.0, 0.0, 60.0, 0.0)
    >>> now[0] = 60.0
    >>> window.admit("m")
    0.0
    """

    def __init__(self, rpm: int, window_seconds: float, clock: Callable[[], float]) -> None:
        self.rpm = rpm
        self.window_seconds = window_seconds
        self.clock = clock
        self._answered: dict[str, deque[float]] = {}

    def admit(self, model: str) -> float:
        """0 when the request may go through (and counts it), else the seconds until it could."""
        now = self.clock()
        log = self._answered.setdefault(model, deque())
        while log and log[0] <= now - self.window_seconds:
            log.popleft()
        if len(log) >= self.rpm:
            return log[0] + self.window_seconds - now
        log.append(now)
        return 0.0


class FakeMiMo(Loopback):
    """The loopback server. Unscripted requests get ``default`` (a valid ticket; a batch request
    one per KEY), or a draw from ``chaos`` when given; ``latency`` seconds, give or take a
    uniform ``jitter``, are added to every answer.

    ``rpm`` limits answered requests per model and ``window_seconds`` (on ``clock``);
    ``count_tokens`` counts the usage it reports (else the fixed :data:`USAGE`);
    ``keep_alive`` serves HTTP/1.1 persistent connections; ``record=False`` keeps no request log.
    """

    def __init__(self, default: Reply | None = None, *, chaos: Chaos | None = None, latency: float = 0.0,
                 jitter: float = 0.0, rpm: int | None = None, window_seconds: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, count_tokens: Callable[[str], int] | None = None,
                 keep_alive: bool = False, record: bool = True, seed: int = 0, port: int = 0,
                 refuse_logprobs: Collection[str] = ()) -> None:
        self.default = default or ok(VALID_TICKET)
        self.refuse_logprobs = frozenset(refuse_logprobs)
        self.chaos = chaos
        self.latency = latency
        self.jitter = jitter
        self.window = RequestWindow(rpm, window_seconds, clock) if rpm is not None else None
        self.count_tokens = count_tokens
        self.keep_alive = keep_alive
        self.record = record
        self._rng = random.Random(seed)
        self._scripts: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self._counters: Counter[str] = Counter()
        self._calls_by_model: Counter[str] = Counter()
        self._in_flight = 0
        super().__init__(self._handler(), port)

    @property
    def base_url(self) -> str:
        return f"{self.address}/v1"

    def script(self, key: str, *replies: Reply) -> None:
        """Answer requests mentioning ``key`` with ``replies`` in order; the last one repeats."""
        with self._lock:
            self._scripts[key] = list(replies)

    def requests_for(self, key: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if key in json.dumps(r["body"]["messages"], ensure_ascii=False)]

    def stats(self) -> dict[str, Any]:
        """Counters since start: ``calls`` (chat requests), ``answered`` (200), ``rate_limited``
        (429 from ``rpm``), ``batch_calls``, ``batch_conversations``, ``prompt_tokens``,
        ``completion_tokens``, ``peak_in_flight``, and ``calls_by_model``."""
        with self._lock:
            counters = {name: self._counters[name] for name in STAT_COUNTERS}
            return {**counters, "calls_by_model": dict(self._calls_by_model)}

    def kinds(self) -> Counter[str]:
        """How many requests got each chaos kind (``scripted``/``default`` for the others)."""
        with self._lock:
            return Counter(r.get("kind", "default") for r in self.requests)

    def times_by_marker(self, pattern: str | re.Pattern[str]) -> dict[str, list[float]]:
        """Arrival times (``time.time()``) of the requests whose messages match ``pattern``, by match.

        One pass over the log, so it stays fast with thousands of requests and markers.
        """
        regex = re.compile(pattern)
        found: dict[str, list[float]] = {}
        with self._lock:
            requests = list(self.requests)
        for request in requests:
            match = regex.search(json.dumps(request["body"].get("messages", []), ensure_ascii=False))
            if match:
                found.setdefault(match.group(0), []).append(request["at"])
        return found

    def _next_reply(self, body: dict[str, Any]) -> tuple[str, Reply]:
        messages = body.get("messages", [])
        with self._lock:
            if self._scripts:
                text = json.dumps(messages, ensure_ascii=False)
                for key, replies in self._scripts.items():
                    if key in text:
                        return "scripted", replies.pop(0) if len(replies) > 1 else replies[0]
            if self.window is not None and (wait := self.window.admit(str(body.get("model")))):
                self._counters["rate_limited"] += 1
                return "rate_limited", error(429, "too many requests", {"Retry-After": str(math.ceil(wait))})
            if self.chaos is not None:
                return self.chaos.draw()
        keys = batch_keys(messages)
        if keys:
            return "batch", self._batch_reply(keys)
        return "default", self.default

    def _batch_reply(self, keys: list[str]) -> Reply:
        """One JSON object keyed by the batch's KEYs, the default ticket for each."""
        try:
            ticket = json.loads(self.default.content or "")
        except json.JSONDecodeError:
            ticket = None
        ticket = ticket if isinstance(ticket, dict) else dict(VALID_TICKET)
        return ok({key: ticket for key in keys})

    def _delay(self, reply: Reply) -> float:
        with self._lock:
            jitter = self._rng.uniform(-self.jitter, self.jitter) if self.jitter else 0.0
        return max(0.0, reply.delay + self.latency + jitter)

    def _usage(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        if self.count_tokens is None:
            return reply.usage
        prompt = sum(self.count_tokens(str(m.get("content") or "")) for m in body.get("messages", []))
        completion = self.count_tokens(reply.content or "")
        return {**reply.usage, "prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}

    def _count(self, body: dict[str, Any], kind: str, usage: dict[str, Any] | None) -> None:
        with self._lock:
            self._counters["calls"] += 1
            self._calls_by_model[str(body.get("model"))] += 1
            if usage is None:
                return
            self._counters["answered"] += 1
            self._counters["prompt_tokens"] += int(usage.get("prompt_tokens") or 0)
            self._counters["completion_tokens"] += int(usage.get("completion_tokens") or 0)
            if kind == "batch":
                self._counters["batch_calls"] += 1
                self._counters["batch_conversations"] += len(batch_keys(body.get("messages", [])))

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self._counters["peak_in_flight"] = max(self._counters["peak_in_flight"], self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _record(self, request: dict[str, Any]) -> None:
        if not self.record:
            return
        with self._lock:
            self.requests.append(request)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if fake.keep_alive else "HTTP/1.0"
            #: Headers and body go out in two writes: without TCP_NODELAY the body waits for the client's
            #: delayed ACK (about 40 ms on Linux) on every answer.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
                return

            def do_GET(self) -> None:
                if self.path.endswith("/_stats"):
                    self._send(200, json.dumps(fake.stats()), {})
                else:
                    self._send(404, json.dumps({"error": {"message": "no such route"}}), {})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                record = {"path": self.path, "headers": dict(self.headers), "body": body, "at": time.time()}
                fake._record(record)
                if not self.path.endswith("/chat/completions"):
                    self._send(404, json.dumps({"error": {"message": "no such route"}}), {})
                    return
                fake._enter()
                try:
                    self._answer(body, record)
                finally:
                    fake._leave()

            def _answer(self, body: dict[str, Any], record: dict[str, Any]) -> None:
                if body.get("logprobs") and body.get("model") in fake.refuse_logprobs:
                    record["kind"] = "logprobs_refused"
                    fake._count(body, record["kind"], None)
                    refused = error(400, "logprobs is not supported for this model")
                    self._send(refused.status, refused.body or "{}", {})
                    return
                record["kind"], reply = fake._next_reply(body)
                ok_answer = reply.status == 200 and reply.raw is None
                usage = fake._usage(body, reply) if ok_answer else None
                fake._count(body, record["kind"], usage)
                if record["kind"] != "rate_limited" and (delay := fake._delay(reply)):
                    time.sleep(delay)
                if usage is not None:
                    reply = replace(reply, usage=usage)
                if reply.raw is not None:
                    self._send(reply.status, reply.raw, reply.headers, reply.content_type)
                elif reply.status != 200:
                    self._send(reply.status, reply.body or "{}", reply.headers)
                elif body.get("stream"):
                    self._stream(body, reply)
                else:
                    self._send(200, wire_json(_completion(body, reply)), reply.headers)

            def _send(self, status: int, text: str, headers: dict[str, str],
                      content_type: str = "application/json") -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, body: dict[str, Any], reply: Reply) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")  # the end of the body is the end of the stream
                self.close_connection = True
                self.end_headers()
                for chunk in _chunks(body, reply):
                    self.wfile.write(b"data: " + wire_json(chunk).encode() + b"\n\n")
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")

        return Handler


def wire_json(value: Any) -> str:
    """JSON as an API sends it: UTF-8 text as is, but a lone surrogate (which UTF-8 cannot carry) as its
    ``\\u`` escape, which the client decodes back into the lone surrogate."""
    text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode()
    except UnicodeEncodeError:
        return json.dumps(value)
    return text


def _top(body: dict[str, Any]) -> int:
    return int(body.get("top_logprobs") or 0)


def _completion(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content, "tool_calls": None}
    if reply.reasoning is not None:
        message["reasoning_content"] = reply.reasoning
    choice: dict[str, Any] = {"index": 0, "finish_reason": reply.finish_reason, "message": message}
    if body.get("logprobs"):
        choice["logprobs"] = {"content": token_logprobs(reply, _top(body)), "refusal": None}
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "mimo-v2-flash"), "choices": [choice], "usage": reply.usage}


def _chunks(body: dict[str, Any], reply: Reply) -> list[dict[str, Any]]:
    base: dict[str, Any] = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                            "created": int(time.time()), "model": body.get("model", "mimo-v2-flash")}
    text = reply.content or ""
    chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                    "finish_reason": None}]}]
    if body.get("logprobs"):  # one token per chunk, with its logprobs entry
        chunks += [{**base, "choices": [{"index": 0, "delta": {"content": entry["token"]}, "finish_reason": None,
                                         "logprobs": {"content": [entry], "refusal": None}}]}
                   for entry in token_logprobs(reply, _top(body))]
    else:
        pieces = [text[i:i + 7] for i in range(0, len(text), 7)] or [""]
        chunks += [{**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                   for piece in pieces]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}]})
    if (body.get("stream_options") or {}).get("include_usage"):
        chunks.append({**base, "choices": [], "usage": reply.usage})
    return chunks

