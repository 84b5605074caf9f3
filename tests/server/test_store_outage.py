"""/readyz follows the store: 503 within 2 s of it stopping, 200 again when it returns."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from server.app import make_app
from server.db import connect, ensure_indexes
from server.embedded import EmbeddedStore, ferretdb_binary
from server.services import build_services
from settings import Settings
from tests.apiclient import Api
from tests.conftest import make_env, serve_app

pytestmark = pytest.mark.skipif(bool(os.environ.get("TEST_MONGODB_URI")),
                                reason="needs the embedded store it can stop and start")


async def test_readyz_turns_503_when_the_store_stops_and_200_when_it_returns(
        tmp_path: Path, clock, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    embedded = EmbeddedStore(ferretdb_binary(os.environ.get("FERRETDB_BIN", "")), tmp_path / "db")
    embedded.start()
    store = connect(embedded.uri, "outage")
    try:
        await ensure_indexes(store.db)
        services = build_services(Settings.from_env(make_env()), store, clock, fake_wechat[0])
        server, base = await serve_app(make_app(services))
        api = Api(base, services, fake_wechat[0])
        await store.db["marker"].insert_one({"_id": "kept", "value": 1})
        assert (await api.get("/readyz")).status_code == 200

        embedded.kill()
        started = time.monotonic()
        r = await api.get("/readyz")
        elapsed = time.monotonic() - started
        assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"
        assert elapsed < 2.0, elapsed
        r = await api.get("/api/admin/v1/me", "admin_whatever")
        assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"

        embedded.start()  # same port, same data directory; the service is not restarted
        deadline = time.monotonic() + 15
        while (await api.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline, "service did not recover"
            await asyncio.sleep(0.2)
        assert await store.db["marker"].find_one({"_id": "kept"}) == {"_id": "kept", "value": 1}
        await api.aclose()
        server.stop()
    finally:
        await store.close()
        embedded.stop()
