"""A small API client for tests: real HTTP against the running app."""

from __future__ import annotations

from typing import Any

import httpx

from miniprogram_api.fake_wechat import FakeWeChat
from server.auth import Grant
from server.services import Services


class Api:
    """Speaks to the app like the mini-program and the admin console do."""

    def __init__(self, base: str, services: Services, fake: FakeWeChat) -> None:
        self.base = base
        self.services = services
        self.fake = fake
        self.http = httpx.AsyncClient(base_url=base, timeout=20)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def call(self, method: str, path: str, token: str | None = None, json: Any = None,
                   **kwargs: Any) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return await self.http.request(method, path, json=json, headers=headers, **kwargs)

    async def get(self, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
        return await self.call("GET", path, token, **kw)

    async def post(self, path: str, token: str | None = None, json: Any = None,
                   **kw: Any) -> httpx.Response:
        return await self.call("POST", path, token, json=json, **kw)

    # -- sign-in helpers -------------------------------------------------------------------
    async def mp_login(self, openid: str) -> str:
        code = self.fake.issue_login_code(openid)
        r = await self.post("/api/mp/v1/session", json={"code": code})
        assert r.status_code == 201, r.text
        return str(r.json()["token"])

    async def mp_owner(self, openid: str, phone: str) -> str:
        """Log in and verify a phone: bound automatically to the roster's units of that phone."""
        token = await self.mp_login(openid)
        code = self.fake.register_phone_code(phone)
        r = await self.post("/api/mp/v1/me/phone", token, json={"code": code})
        assert r.status_code == 200, r.text
        return token

    async def staff(self, username: str, grants: list[Grant],
                    password: str = "Pass-word-2026") -> str:
        try:
            await self.services.staff_accounts.create(username, password, username, grants)
        except Exception as exc:  # the account may exist from an earlier call in the same test
            if "E11000" not in str(exc) and "duplicate" not in str(exc).lower():
                raise
        r = await self.post("/api/admin/v1/session",
                            json={"username": username, "password": password})
        assert r.status_code == 201, r.text
        return str(r.json()["token"])
