"""The API's documentation pages, `/docs` (Swagger UI) and `/redoc` (ReDoc), rendered offline: their scripts and
styles are the copies the fastapi-offline package ships, served by the app under `/docs-assets`, and each page
carries a Content-Security-Policy that lets it load nothing from another host (ReDoc's sidebar, for one, would
fetch its maker's logo from a CDN)."""

from __future__ import annotations

from importlib.resources import files

from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

ASSETS = "/docs-assets"
ASSETS_DIRECTORY = str(files("fastapi_offline").joinpath("static"))

# Both pages start their UI from an inline script; ReDoc also styles inline and runs a blob: worker.
POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)
# Swagger UI's default validator badge asks the validator's own site; keep the entered token across reloads.
SWAGGER_PARAMETERS = {"validatorUrl": None, "persistAuthorization": True}


def _offline(page: HTMLResponse) -> Response:
    page.headers["Content-Security-Policy"] = POLICY
    return page


def docs_routes(title: str, openapi_url: str) -> list[BaseRoute]:
    """`/docs`, its OAuth2 redirect page, `/redoc`, and the assets they load, for the document at `openapi_url`."""

    async def swagger_ui(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        return _offline(
            get_swagger_ui_html(
                openapi_url=f"{root}{openapi_url}",
                title=f"{title} - Swagger UI",
                swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
                swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
                oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
                swagger_ui_parameters=SWAGGER_PARAMETERS,
            )
        )

    async def oauth2_redirect(_request: Request) -> Response:
        return _offline(get_swagger_ui_oauth2_redirect_html())

    async def redoc(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        return _offline(
            get_redoc_html(
                openapi_url=f"{root}{openapi_url}",
                title=f"{title} - ReDoc",
                redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
                redoc_favicon_url=f"{root}{ASSETS}/favicon.png",
                with_google_fonts=False,
            )
        )

    return [
        Route("/docs", swagger_ui, name="swagger_ui"),
        Route("/docs/oauth2-redirect", oauth2_redirect, name="swagger_ui_oauth2_redirect"),
        Route("/redoc", redoc, name="redoc"),
        Mount(ASSETS, StaticFiles(directory=ASSETS_DIRECTORY), name="docs_assets"),
    ]


__all__ = ["docs_routes"]
