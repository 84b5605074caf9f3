"""The app answers over HTTP against a real store."""

from __future__ import annotations

from tests.apiclient import Api


async def test_healthz_and_readyz_answer(api: Api) -> None:
    r = await api.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "alive"}
    r = await api.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.headers["X-Request-Id"]


async def test_indexes_are_created_idempotently(store) -> None:  # type: ignore[no-untyped-def]
    from server.db import ensure_indexes

    await ensure_indexes(store.db)  # the fixture created them once already: a restart
    await ensure_indexes(store.db)
    assert "area_path_1" in await store.db["communities"].index_information()
