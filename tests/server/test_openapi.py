"""The OpenAPI description: checked in, served, and in step with the routes."""

from __future__ import annotations

from pathlib import Path

import httpx
from starlette.routing import Route

from veil.server import openapi
from veil.server.app import create_app
from veil.server.repository import Repository

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_checked_in_document_is_current() -> None:
    assert DOC.read_text() == openapi.render(), (
        "docs/openapi.json is stale: python -m veil.server.openapi > docs/openapi.json"
    )


async def test_every_http_route_is_described(repo: Repository) -> None:
    app = create_app(repo, migrate=False)
    routes = {
        (method.lower(), route.path)
        for route in app.routes
        if isinstance(route, Route)
        for method in (route.methods or set()) - {"HEAD"}
    }
    described = {(op.method, op.path) for op in openapi.OPERATIONS}
    assert routes - {("get", "/v1/openapi.json")} == described
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        served = await client.get("/v1/openapi.json")
    assert served.status_code == 200 and served.json() == openapi.build()
