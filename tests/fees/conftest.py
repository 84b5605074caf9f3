"""Fees and WeChat Pay tests: the real app, a real store, and the fake WeChat Pay v3 server.

Merchant keys are generated here at test time; no real key exists anywhere in the project.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from miniprogram_api import paycrypto
from miniprogram_api.fake_wechat import FakeWeChat
from miniprogram_api.fake_wechatpay import FakeWeChatPay
from miniprogram_api.wechat import WeChatClient
from miniprogram_api.wechatpay import WeChatPayClient, WeChatPayConfig
from server.app import make_app
from server.auth import Grant, Role
from server.clock import ManualClock
from server.db import Store
from server.services import Services, build_services
from server.wechat_tokens import StoreTokenCache
from settings import Settings
from tests.apiclient import Api
from tests.conftest import APPID, SECRET, make_env, serve_app
from tests.world import World, build_world, unit_id

MCHID = "1900000109"
MERCHANT_SERIAL = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"


@pytest.fixture(scope="session")
def merchant_key() -> rsa.RSAPrivateKey:
    return paycrypto.generate_rsa_key()


@pytest.fixture
async def fake_pay(clock: ManualClock, merchant_key: rsa.RSAPrivateKey) -> AsyncIterator[FakeWeChatPay]:
    fake = FakeWeChatPay(mchid=MCHID, appid=APPID,
                         merchant_public_key_pem=paycrypto.public_key_pem(merchant_key),
                         merchant_serial_no=MERCHANT_SERIAL,
                         api_v3_key=secrets.token_hex(16).encode(), clock=clock.now)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def services(store: Store, clock: ManualClock, fake_wechat: tuple[FakeWeChat, str],
                   fake_pay: FakeWeChatPay, merchant_key: rsa.RSAPrivateKey) -> AsyncIterator[Services]:
    """The root fixture plus a WeChat Pay client pointed at the fake (overrides tests/conftest)."""
    settings = Settings.from_env(make_env(WECHAT_API_BASE=fake_wechat[1],
                                          WECHATPAY_NOTIFY_BASE="https://wy.example.cn"))
    wechat = WeChatClient(appid=APPID, secret=SECRET, token_cache=StoreTokenCache(store.db),
                          api_base=fake_wechat[1], timeout_s=2, clock=clock.now)
    assert fake_pay.base_url is not None
    pay = WeChatPayClient(WeChatPayConfig(
        api_base=fake_pay.base_url, mchid=MCHID, appid=APPID, merchant_serial_no=MERCHANT_SERIAL,
        merchant_private_key_pem=paycrypto.private_key_pem(merchant_key),
        api_v3_key=fake_pay._api_v3_key,  # the fake holds the shared APIv3 key
        wechatpay_public_key_pem=fake_pay.public_key_pem(),
        wechatpay_public_key_id=fake_pay.platform_key_id, timeout_seconds=3), clock=clock.now)
    yield build_services(settings, store, clock, wechat, pay)
    await pay.aclose()
    await wechat.aclose()


@pytest.fixture
async def api(services: Services, fake_wechat: tuple[FakeWeChat, str],
              fake_pay: FakeWeChatPay) -> AsyncIterator[Api]:
    server, base = await serve_app(make_app(services))
    fake_pay.notify_target_override = base  # notify_url https://wy.example.cn/... → this app
    client = Api(base, services, fake_wechat[0])
    yield client
    await client.aclose()
    server.stop()
    await server.close_all_connections()


@dataclass
class FeeWorld:
    """World A/B/C plus fee items, bills of 2026-01, two owners and clerks."""

    world: World
    api: Api
    fake: FakeWeChatPay
    clerk_a: str        # property staff of company A (serves cm_a)
    clerk_b: str        # property staff of company B (serves cm_b, cm_c)
    owner_a1: str       # owner of cm_a 1号楼 101
    owner_a2: str       # owner of cm_a 1号楼 102
    item_a: str         # property fee item of cm_a

    def unit(self, number: str, community: str = "cm_a") -> str:
        return unit_id(community, "1号楼", number)

    async def bills(self, token: str, status: str = "unpaid") -> list[dict[str, Any]]:
        r = await self.api.get(f"/api/mp/v1/bills?status={status}", token)
        assert r.status_code == 200, r.text
        return list(r.json()["bills"])

    async def order(self, token: str, bill_ids: list[str]) -> httpx.Response:
        return await self.api.post("/api/mp/v1/orders", token, json={"bill_ids": bill_ids})

    async def counts(self) -> dict[str, int]:
        db = self.api.services.store.db
        return {name: await db[collection].count_documents(query) for name, collection, query in (
            ("paid_bills", "bills", {"status": "paid"}),
            ("paid_orders", "pay_orders", {"status": "paid"}),
            ("receipts", "receipts", {}), ("pay_notifications", "pay_notifications", {}),
            ("orphan_payments", "orphan_payments", {}), ("refunds", "pay_refunds", {}),
            ("audit_paid", "audit", {"action": "pay_order.paid"}))}


async def make_fee_world(api: Api, fake: FakeWeChatPay) -> FeeWorld:
    world = await build_world(api.services)
    clerk_a = await api.staff("clerk_a", [Grant(Role.PROPERTY, company_id=world.company_a)])
    clerk_b = await api.staff("clerk_b", [Grant(Role.PROPERTY, company_id=world.company_b)])
    r = await api.post("/api/admin/v1/communities/cm_a/fee-items", clerk_a,
                       json={"name": "物业费", "kind": "property", "cycle_months": 1,
                             "price_fen_per_m2_month": 135})
    assert r.status_code == 201, r.text
    item_a = r.json()["id"]
    r = await api.post("/api/admin/v1/communities/cm_a/bills/generate", clerk_a,
                       json={"period": "2026-01", "item_ids": [item_a]})
    assert r.status_code == 200 and r.json()["created"] == 6, r.text
    owner_a1 = await api.mp_owner("openid-a1", "13900000101")
    owner_a2 = await api.mp_owner("openid-a2", "13900000102")
    return FeeWorld(world, api, fake, clerk_a, clerk_b, owner_a1, owner_a2, item_a)


@pytest.fixture
async def fw(api: Api, fake_pay: FakeWeChatPay) -> FeeWorld:
    return await make_fee_world(api, fake_pay)
