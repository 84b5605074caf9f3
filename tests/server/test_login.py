"""Mini-program login end to end against the fake WeChat; session_key never leaves the server."""

from __future__ import annotations

import logging

import pytest

from miniprogram_api.fake_wechat import FakeMode
from miniprogram_api.wechat import WeChatClient
from server import logs
from server.clock import ManualClock
from server.wechat_tokens import StoreTokenCache
from tests.apiclient import Api
from tests.conftest import APPID, SECRET
from tests.world import build_world


async def test_login_flow_never_exposes_session_key(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    await build_world(api.services)
    caplog.set_level(logging.DEBUG)
    handler = logging.StreamHandler(stream := __import__("io").StringIO())
    handler.setFormatter(logs.JsonFormatter())
    logging.getLogger().addHandler(handler)
    bodies: list[str] = []
    try:
        code = api.fake.issue_login_code("openid-1")
        r = await api.post("/api/mp/v1/session", json={"code": code})
        bodies.append(r.text)
        assert r.status_code == 201
        token = r.json()["token"]
        phone_code = api.fake.register_phone_code("13900000101")
        r = await api.post("/api/mp/v1/me/phone", token, json={"code": phone_code})
        bodies.append(r.text)
        assert r.status_code == 200, r.text
        assert r.json()["phone"] == "139****0101"
        assert len(r.json()["bound"]) == 1
        r = await api.get("/api/mp/v1/me", token)
        bodies.append(r.text)
        assert r.json()["bindings"][0]["role"] == "owner"
    finally:
        logging.getLogger().removeHandler(handler)
    session_key = api.fake.session_key_of("openid-1")
    assert session_key
    everything = "\n".join(bodies) + stream.getvalue() + caplog.text
    assert session_key not in everything
    assert SECRET not in everything
    stored = await api.services.store.db["users"].find_one({"openid": "openid-1"})
    assert stored is not None and session_key not in str(stored)  # encrypted at rest
    assert api.services.crypto.decrypt(stored["session_key_enc"], "session_key") == session_key


async def test_reused_login_code_is_refused_with_wechat_code(api: Api) -> None:
    code = api.fake.issue_login_code("openid-2")
    assert (await api.post("/api/mp/v1/session", json={"code": code})).status_code == 201
    r = await api.post("/api/mp/v1/session", json={"code": code})
    assert r.status_code == 400 and r.json()["error"]["code"] == "wechat_code_used"
    r = await api.post("/api/mp/v1/session", json={"code": "never-issued"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "wechat_invalid_code"


async def test_wechat_down_gives_503_with_clear_code(api: Api) -> None:
    api.fake.mode = FakeMode.UNAVAILABLE
    r = await api.post("/api/mp/v1/session", json={"code": "whatever"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "wechat_unavailable"
    assert await api.services.store.db["users"].count_documents({}) == 0


async def test_expired_revoked_and_unknown_tokens_get_401_with_stable_codes(api: Api, clock: ManualClock) -> None:
    token = await api.mp_login("openid-3")
    assert (await api.get("/api/mp/v1/me", token)).status_code == 200
    r = await api.get("/api/mp/v1/me", "mp_not-a-real-token")
    assert r.status_code == 401 and r.json()["error"]["code"] == "token_unknown"
    r = await api.get("/api/mp/v1/me")
    assert r.status_code == 401 and r.json()["error"]["code"] == "token_missing"
    clock.advance(seconds=api.services.settings.session_ttl_seconds + 1)
    r = await api.get("/api/mp/v1/me", token)
    assert r.status_code == 401 and r.json()["error"]["code"] == "token_expired"
    token2 = await api.mp_login("openid-3")
    assert (await api.call("DELETE", "/api/mp/v1/session", token2)).status_code == 204
    r = await api.get("/api/mp/v1/me", token2)
    assert r.status_code == 401 and r.json()["error"]["code"] == "token_revoked"


async def test_tokens_are_stored_only_as_hashes(api: Api) -> None:
    token = await api.mp_login("openid-4")
    docs = await api.services.store.db["sessions"].find().to_list(None)
    assert docs and all(token not in str(d) for d in docs)


async def test_an_mp_token_is_not_an_admin_token(api: Api) -> None:
    token = await api.mp_login("openid-5")
    r = await api.get("/api/admin/v1/me", token)
    assert r.status_code == 401 and r.json()["error"]["code"] == "token_unknown"


async def test_access_token_is_shared_through_the_store(api: Api, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    fake, base = fake_wechat
    db = api.services.store.db
    first = WeChatClient(appid=APPID, secret=SECRET, token_cache=StoreTokenCache(db), api_base=base)
    second = WeChatClient(appid=APPID, secret=SECRET, token_cache=StoreTokenCache(db), api_base=base)
    try:
        t1 = await first.get_access_token()
        t2 = await second.get_access_token()
    finally:
        await first.aclose()
        await second.aclose()
    assert t1 == t2
    assert fake.stable_token_calls == 1
