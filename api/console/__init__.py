"""The web console: static HTML, CSS and JavaScript modules under `/console/`, no build step.

The page talks to the public `/v1` API from the browser with the API key the user signs in
with; the server side only serves files and the links of `/console/config.json`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from common.settings import Settings

STATIC = Path(__file__).parent / "static"
# Only this server's own scripts, styles and API; no inline script, no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


class ConsoleFiles(StaticFiles):
    """The console's static files, with its security headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        """The file's answer with the console's security headers added."""
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def links(settings: Settings) -> dict[str, str | None]:
    """Where the console's header links point: API docs, Flower and Grafana (None: hidden)."""
    flower = settings.flower_url or None
    if flower is None and settings.flower_port:
        # `ragq up` runs Flower beside the API: the browser reaches it on the API's host.
        flower = f":{settings.flower_port}"
    return {"docs": "/docs", "flower": flower, "grafana": settings.grafana_url or None}


@router.get("/console")
async def console_root() -> RedirectResponse:
    """The console lives under `/console/` (its files are relative to it)."""
    return RedirectResponse("/console/", status_code=308)


@router.get("/console/config.json")
async def console_config(request: Request) -> JSONResponse:
    """The console's links; public, since it holds no secret."""
    return JSONResponse(links(request.app.state.settings), headers=SECURITY_HEADERS)


def mount(app: FastAPI) -> None:
    """Serve the console at `/console/`."""
    app.include_router(router)
    app.mount("/console", ConsoleFiles(directory=STATIC, html=True), name="console")
