"""Without WeChat Pay settings the service still runs: fees work, payment answers 503."""

from __future__ import annotations

from miniprogram_api.fake_wechat import FakeWeChat
from server.app import make_app
from server.clock import ManualClock
from server.db import Store
from server.services import build_services
from settings import Settings, SettingsError
from tests.apiclient import Api
from tests.conftest import make_env, serve_app
from tests.fees.conftest import FeeWorld


async def test_payment_endpoints_answer_503_when_wechat_pay_is_not_configured(
        fw: FeeWorld, store: Store, clock: ManualClock,
        fake_wechat: tuple[FakeWeChat, str]) -> None:
    services = build_services(Settings.from_env(make_env()), store, clock,
                              fw.api.services.wechat)  # same store, no WeChat Pay client
    server, base = await serve_app(make_app(services))
    api = Api(base, services, fake_wechat[0])
    try:
        [bill] = await fw.bills(fw.owner_a1)
        r = await api.post("/api/mp/v1/orders", fw.owner_a1, json={"bill_ids": [bill["id"]]})
        assert r.status_code == 503 and r.json()["error"]["code"] == "payment_not_configured"
        r = await api.get("/api/mp/v1/bills", fw.owner_a1)
        assert r.status_code == 200 and len(r.json()["bills"]) == 1
        r = await api.post("/api/pay/v1/wechatpay/notify", content=b"{}")
        assert r.status_code == 503
        assert await store.db["pay_orders"].count_documents({}) == 0
    finally:
        await api.aclose()
        server.stop()


def test_a_merchant_id_without_its_keys_is_a_settings_error() -> None:
    try:
        Settings.from_env(make_env(WECHATPAY_MCHID="1900000109"))
    except SettingsError as exc:
        assert any("WECHATPAY_API_V3_KEY is required" in p for p in exc.problems)
        assert any("WECHATPAY_NOTIFY_BASE is required" in p for p in exc.problems)
    else:
        raise AssertionError("expected SettingsError")
