"""Intercom's own OpenAPI description (``tests/vendor/intercom/``, MIT) as a contract for every request
the Intercom adapter sends: :func:`contract_violation` validates one recorded request with openapi-core
(path, method, parameters including ``Intercom-Version``, the bearer security scheme, the JSON body).

The document is for version :data:`DOCUMENT_VERSION`; a request for another version (``Preview``) is not
its to judge. Loading it takes about a second, once per test process.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.exceptions import OpenAPIError
from werkzeug.datastructures import Headers, ImmutableMultiDict

DOCUMENT = Path(__file__).resolve().parent / "vendor" / "intercom" / "intercom-2.14.yaml"
DOCUMENT_VERSION = "2.14"
#: The document's first server: paths are matched against it.
SERVER = "https://api.intercom.io"


@functools.cache
def intercom_api() -> OpenAPI:
    """The 2.14 description, parsed once (not spec-validated: see the README beside it)."""
    from openapi_core import Config

    with DOCUMENT.open(encoding="utf-8") as handle:
        description = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return OpenAPI.from_dict(description, config=Config(spec_validator_cls=None))


@dataclass
class SentRequest:
    """What openapi-core reads of a request (its Request protocol); it fills ``parameters.path`` itself."""

    method: str
    path: str
    parameters: RequestParameters
    content_type: str
    body: bytes | None
    host_url: str = SERVER


def contract_violation(method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
                       body: Any) -> str | None:
    """Why the request breaks Intercom's 2.14 description (None: it keeps it)."""
    parameters = RequestParameters(
        query=ImmutableMultiDict([(name, value) for name, values in query.items() for value in values]),
        header=Headers(headers), cookie=ImmutableMultiDict())
    content_type = {name.lower(): value for name, value in headers.items()}.get("content-type", "")
    request = SentRequest(method.lower(), path, parameters, content_type,
                          None if body is None else json.dumps(body).encode())
    try:
        intercom_api().validate_request(request)
    except OpenAPIError as exc:
        cause = f": {exc.__cause__}" if exc.__cause__ else ""
        return f"{method} {path}: {exc}{cause}"
    return None
