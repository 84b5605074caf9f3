"""Regression (bench/bills): the embedded store's SQLITE_BUSY under concurrent writes answered
500 internal_error; it is a transient store condition, answered 503 store_unavailable."""

from __future__ import annotations

import httpx
from pymongo.errors import OperationFailure

from handlers.base import Auth, Endpoint, Request
from server.app import make_app
from server.services import Services
from tests.conftest import serve_app


async def _busy(req: Request) -> None:
    raise OperationFailure("[collection.go:177 sqlite.(*collection).UpdateAll.func1] "
                           "database is locked (5) (SQLITE_BUSY)", 1)


async def _other(req: Request) -> None:
    raise OperationFailure("unknown operator: $frobnicate", 2)


async def test_sqlite_busy_is_503_store_unavailable_and_other_failures_stay_500(
        services: Services) -> None:
    extra = (Endpoint("GET", "/_test/busy", _busy, Auth.PUBLIC, "busy"),
             Endpoint("GET", "/_test/other", _other, Auth.PUBLIC, "other"))
    server, base = await serve_app(make_app(services, extra))
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            busy = await http.get("/_test/busy")
            other = await http.get("/_test/other")
    finally:
        server.stop()
    assert busy.status_code == 503 and busy.json()["error"]["code"] == "store_unavailable"
    assert other.status_code == 500 and other.json()["error"]["code"] == "internal_error"
