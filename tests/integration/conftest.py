"""The city platform's side: a signing client written from the guide, and a webhook receiver."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import tornado.web

from miniprogram_api.fake_wechat import FakeWeChat
from miniprogram_api.wechat import WeChatClient
from server.auth import Grant, Role
from server.clock import ManualClock
from server.db import Store
from server.services import Services, build_services
from server.wechat_tokens import StoreTokenCache
from settings import Settings
from tests.apiclient import Api
from tests.conftest import APPID, SECRET, make_env, serve_app
from tests.world import World, build_world

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "integration.md"
SCHEDULE = "1,5,30"  # three retries: attempts at t, t+1 s, t+6 s, t+36 s, then dead


def guide_sample(marker: str) -> str:
    """The fenced code block that follows `<!-- sample:NAME -->` in docs/integration.md."""
    text = GUIDE.read_text(encoding="utf-8")
    found = re.search(rf"<!-- sample:{marker} -->\s*```\w+\n(.*?)```", text, re.S)
    assert found, f"sample {marker} missing from the guide"
    return found.group(1)


def guide_signer() -> Callable[..., tuple[str, dict[str, str]]]:
    """`sign_request` exactly as the guide prints it (stdlib only)."""
    namespace: dict[str, Any] = {}
    exec(compile(guide_sample("python-sign"), str(GUIDE), "exec"), namespace)  # noqa: S102 - our own doc
    return namespace["sign_request"]  # type: ignore[no-any-return]


@pytest.fixture
async def services(store: Store, clock: ManualClock,
                   fake_wechat: tuple[FakeWeChat, str]) -> AsyncIterator[Services]:
    settings = Settings.from_env(make_env(WECHAT_API_BASE=fake_wechat[1],
                                          WEBHOOK_ALLOW_HTTP="true",
                                          WEBHOOK_RETRY_SCHEDULE=SCHEDULE,
                                          WEBHOOK_TIMEOUT_SECONDS="2"))
    wechat = WeChatClient(appid=APPID, secret=SECRET, token_cache=StoreTokenCache(store.db),
                          api_base=fake_wechat[1], timeout_s=2, clock=clock.now)
    services = build_services(settings, store, clock, wechat)
    yield services
    await services.webhooks.aclose()
    await wechat.aclose()


@dataclass
class OpenClient:
    """The city platform calling in: signs every request with the guide's code."""

    api: Api
    key_id: str
    secret: str
    clock: ManualClock
    sign: Callable[..., tuple[str, dict[str, str]]] = field(default_factory=guide_signer)

    async def get(self, path: str, params: dict[str, Any] | None = None,
                  **overrides: Any) -> httpx.Response:
        query, headers = self.sign(self.key_id, self.secret, "GET", path, params or {},
                                   timestamp=overrides.pop("timestamp", self.clock.now().timestamp()),
                                   nonce=overrides.pop("nonce", None))
        headers.update(overrides.pop("headers", {}))
        url = f"{path}?{query}" if query else path
        return await self.api.http.get(url, headers=headers)


async def register_client(api: Api, token: str, **body: Any) -> dict[str, Any]:
    r = await api.post("/api/admin/v1/integration/clients", token,
                       json={"name": "滕州市平台", **body})
    assert r.status_code == 201, r.text
    return dict(r.json())


@dataclass
class City:
    """The test world, a platform admin and a district-wide client."""

    world: World
    api: Api
    admin: str
    client: OpenClient

    async def client_for(self, **scope: Any) -> OpenClient:
        info = await register_client(self.api, self.admin, **scope)
        return OpenClient(self.api, info["id"], info["secret"], self.client.clock)


@pytest.fixture
async def city(api: Api, clock: ManualClock) -> City:
    world = await build_world(api.services)
    admin = await api.staff("root", [Grant(Role.PLATFORM_ADMIN)])
    info = await register_client(api, admin, area_ids=["ar_d1"])
    return City(world, api, admin, OpenClient(api, info["id"], info["secret"], clock))


@dataclass
class Receiver:
    """A webhook endpoint of the city platform: verifies, deduplicates by event id, can fail."""

    secret: str = ""
    fail_first: int = 0          # answer 500 to this many requests, then 200
    down: bool = False           # answer 503 to everything
    requests: list[dict[str, Any]] = field(default_factory=list)
    processed: dict[str, dict[str, Any]] = field(default_factory=dict)
    url: str = ""

    def handle(self, headers: Any, body: bytes) -> int:
        self.requests.append({"headers": dict(headers), "body": body})
        if self.down:
            return 503
        if self.fail_first > 0:
            self.fail_first -= 1
            return 500
        ts, event_id = headers["X-Webhook-Timestamp"], headers["X-Webhook-Id"]
        expected = hmac.new(self.secret.encode(), f"{ts}\n{event_id}\n".encode() + body,
                            hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, headers["X-Webhook-Signature"]):
            return 401
        self.processed.setdefault(event_id, {"body": body, "count": 0})["count"] += 1
        return 200


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver()

    class Hook(tornado.web.RequestHandler):
        def post(self) -> None:
            self.set_status(hook.handle(self.request.headers, self.request.body))
            self.finish()

    server, base = await serve_app(tornado.web.Application([(r"/hook", Hook)]))
    hook.url = base + "/hook"
    yield hook
    server.stop()
    await server.close_all_connections()


def nonce() -> str:
    return secrets.token_hex(16)
