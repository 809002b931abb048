"""``POST /webhooks/{source}``: verify, normalise, store durably, then enqueue.

Checks run cheapest first and nothing is stored on any 4xx: unknown source (404), no secret
configured (401), content type (415), size (413, from Content-Length before reading, and while
reading), signature and timestamp over the raw bytes (401), payload (400), then the one intake
normaliser (:mod:`triage.intake.normalise`: ids too long or with control characters, 400). Then
202 once the message is committed, or 200 for an event without customer text. A helpdesk agent's
group or priority change (Zendesk) is offered to :func:`triage.intake.labels.take_change`: 202 with
``review`` when it was recorded as a review label, 200 with ``ignored`` and the reason when not. The ticket's task
is published after the response is sent (a background task), off the request's latency; a
publish that fails is logged, and the sweep re-publishes a ``queued`` ticket nobody took.
Every signature and shared secret is compared in constant time (``hmac.compare_digest``,
:func:`triage.intake.platforms.base.same`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, BackgroundTasks, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool

from triage.api.bodies import StrictJSONRoute
from triage.api.responses import SafeJSONResponse, WebhookAccepted, WebhookIgnored, documented
from triage.app import App
from triage.intake.inbound import accept_inbound
from triage.intake.labels import check_change, take_change
from triage.intake.normalise import normalise_inbound
from triage.intake.platforms import PLATFORMS, HelpdeskChange, Ignored, Platform, WebhookConfigError, get_platform
from triage.settings import WEBHOOK_SECRET_PREFIX, Settings, SettingsError

log = logging.getLogger(__name__)

JSON_TYPES = ("application/json",)
#: What the OpenAPI document says of a webhook's body: the platform's JSON event, signed (see docs/webhooks.md).
WEBHOOK_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "description": "the platform's event; verified over the raw bytes with the source's secret"}}}}


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";")[0].strip().lower()
    return media in JSON_TYPES or media.endswith("+json")


async def read_capped(request: Request, limit: int) -> bytes:
    """The body, refusing (413) anything above ``limit`` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body above the {limit}-byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body above the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def check_secrets(settings: Settings) -> None:
    """Refuse (at start-up) a configured webhook secret its platform cannot use, naming the variable
    (never the secret): an undecodable ``whsec_`` secret was a 500 on every delivery."""
    for source, secret in sorted(settings.webhooks.secrets.items()):
        platform = PLATFORMS.get(source)
        if platform is None:
            continue
        try:
            platform.check_secret(secret.get_secret_value())
        except WebhookConfigError as exc:
            raise SettingsError(f"{WEBHOOK_SECRET_PREFIX}{source.upper()} (webhooks.secrets.{source}): "
                                f"{exc.reason}") from None


def webhook_router(app: App, publish: Callable[[int], None]) -> APIRouter:
    check_secrets(app.settings)
    hooks = app.settings.webhooks
    # the webhooks keep their own cap (read_capped's, below): api.max_body_bytes, every other route's, must not
    # cut them shorter
    router = APIRouter(tags=["webhooks"], route_class=StrictJSONRoute,
                       max_body_size=max(hooks.max_body_bytes, app.settings.api.max_body_bytes))

    def platform_for(source: str) -> tuple[Platform, str | None]:
        if source not in PLATFORMS:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown source {source!r}; known: {sorted(PLATFORMS)}")
        secret = hooks.secrets.get(source)
        unsigned_ok = {"chatwoot": hooks.chatwoot_allow_unsigned, "zammad": hooks.zammad_allow_unsigned}.get(source)
        if secret is None and not unsigned_ok:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                                f"no secret configured for {source}: set TRIAGE_WEBHOOK_SECRET_{source.upper()}")
        options: dict[str, Any] = {"tolerance": hooks.timestamp_tolerance_seconds}
        if unsigned_ok and secret is None:
            options["allow_unsigned"] = True
        return get_platform(source, **options), secret.get_secret_value() if secret else None

    @router.post("/webhooks/{source}", status_code=status.HTTP_202_ACCEPTED,
                 summary="Receive a support platform's webhook", response_model=WebhookAccepted,
                 response_model_exclude_unset=True,
                 responses={200: {"model": WebhookIgnored,
                                  "description": "event without customer text, or a helpdesk change that is no "
                                                 "label; nothing stored"},
                            **documented(400, 401, 404, 413, 415)},
                 openapi_extra={"requestBody": WEBHOOK_BODY})
    async def receive_webhook(source: str, request: Request, background: BackgroundTasks) -> Any:
        platform, secret = platform_for(source)
        if not _is_json(request.headers.get("content-type")):
            raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send the body as application/json")
        body = await read_capped(request, hooks.max_body_bytes)
        result = platform.receive(dict(request.headers), body, secret, now=time.time())
        if isinstance(result, Ignored):
            return SafeJSONResponse({"ignored": result.reason}, status_code=status.HTTP_200_OK)
        if isinstance(result, HelpdeskChange):
            return await run_in_threadpool(helpdesk_change, check_change(result))
        message = normalise_inbound(result, platform.id_fields)
        received = await run_in_threadpool(accept_inbound, app.sessions, message,
                                           lambda ticket_id: background.add_task(publish, ticket_id), app.clock.now(),
                                           outbox=app.outbox)
        log.info("webhook: ticket %s %s", received.ticket_id, "(duplicate)" if received.duplicate else received.status,
                 extra={"ticket_id": received.ticket_id, "source": source,
                        "external_id": message.value.conversation_key})
        return {"ticket_id": received.ticket_id, "status": received.status, "duplicate": received.duplicate}

    def helpdesk_change(change: HelpdeskChange) -> Any:
        taken = take_change(app.sessions, app.settings, change, app.clock.now())
        if not taken.recorded:
            log.info("webhook: %s change of %s ticket %s ignored: %s", change.change, change.source,
                     change.platform_ticket_id, taken.reason, extra={"source": change.source})
            return SafeJSONResponse({"ignored": taken.reason}, status_code=status.HTTP_200_OK)
        return SafeJSONResponse({"ticket_id": taken.ticket_id, "status": taken.status, "duplicate": taken.duplicate,
                                 "review": taken.reason}, status_code=status.HTTP_202_ACCEPTED)

    return router
