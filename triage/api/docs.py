"""``/docs``: Swagger UI served from the installed ``swagger-ui-bundle-v2`` package, never from a CDN.

FastAPI's documented self-hosting recipe: its own ``/docs`` is turned off, the Swagger UI files
are mounted under ``/docs/static`` and the page points at them, so the docs work on a host
without internet access (and load nothing from a third party).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

DOCS_PATH = "/docs"
STATIC_PATH = f"{DOCS_PATH}/static"
OAUTH2_REDIRECT_PATH = f"{DOCS_PATH}/oauth2-redirect"


def install_docs(app: FastAPI) -> None:
    """Serve Swagger UI for ``app``'s OpenAPI document at ``/docs`` (create ``app`` with ``docs_url=None``)."""
    app.mount(STATIC_PATH, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(DOCS_PATH, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=openapi_url, title=f"{app.title} - API docs",
                                   oauth2_redirect_url=OAUTH2_REDIRECT_PATH,
                                   swagger_js_url=f"{STATIC_PATH}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{STATIC_PATH}/swagger-ui.css",
                                   swagger_favicon_url=f"{STATIC_PATH}/favicon-32x32.png")

    @app.get(OAUTH2_REDIRECT_PATH, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
