"""The app answers over HTTP against a real store."""

from __future__ import annotations

from tests.apiclient import Api


async def test_healthz_and_readyz_answer(api: Api) -> None:
    r = await api.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "alive"}
    r = await api.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.headers["X-Request-Id"]
