"""WeChat and WeChat Pay (the fakes) slow or down: clear codes within the timeouts, nothing
half-written, and WeChat Pay notifications that could not be delivered succeed when retried."""

from __future__ import annotations

import time

from miniprogram_api.fake_wechat import FakeMode
from tests.apiclient import Api
from tests.fees.conftest import (  # noqa: F401  (fixtures: WeChat Pay client wired to the fake)
    FeeWorld,
    api,
    fake_pay,
    fw,
    merchant_key,
    services,
)

WECHAT_TIMEOUT = 2.0   # WECHAT_TIMEOUT_SECONDS in tests/conftest.make_env
PAY_TIMEOUT = 3.0      # WeChatPayConfig.timeout_seconds in tests/fees/conftest


async def _login_status(api: Api) -> tuple[int, str, float, int, int]:
    db = api.services.store.db
    code = api.fake.issue_login_code("openid-faults-1")
    started = time.monotonic()
    r = await api.post("/api/mp/v1/session", json={"code": code})
    elapsed = time.monotonic() - started
    error = r.json().get("error", {}).get("code", "") if r.status_code >= 400 else ""
    return (r.status_code, error, elapsed, await db["users"].count_documents({}),
            await db["sessions"].count_documents({"kind": "mp"}))


async def test_login_fails_clearly_within_the_timeout_when_wechat_is_slow_or_down(fw: FeeWorld) -> None:
    api = fw.api
    users_before = await api.services.store.db["users"].count_documents({})
    sessions_before = await api.services.store.db["sessions"].count_documents({"kind": "mp"})

    api.fake.delay_s = WECHAT_TIMEOUT + 2
    status, code, elapsed, users, sessions = await _login_status(api)
    assert (status, code) == (503, "wechat_unavailable")
    assert elapsed < WECHAT_TIMEOUT + 1.5, elapsed
    assert (users, sessions) == (users_before, sessions_before)  # nothing half-written

    api.fake.delay_s = 0
    for mode in (FakeMode.UNAVAILABLE, FakeMode.DROP):
        api.fake.mode = mode
        status, code, elapsed, users, sessions = await _login_status(api)
        assert (status, code) == (503, "wechat_unavailable"), mode
        assert elapsed < WECHAT_TIMEOUT + 1.5 and (users, sessions) == (users_before, sessions_before)

    api.fake.mode = FakeMode.UP  # back: the same kind of request now succeeds
    status, code, _, users, _ = await _login_status(api)
    assert status == 201 and users == users_before + 1


async def test_order_fails_clearly_when_wechat_pay_is_slow_and_completes_once_it_is_back(
        fw: FeeWorld) -> None:
    db = fw.api.services.store.db
    [bill] = await fw.bills(fw.owner_a1)
    fw.fake.response_delay_seconds = PAY_TIMEOUT + 2
    started = time.monotonic()
    r = await fw.order(fw.owner_a1, [bill["id"]])
    elapsed = time.monotonic() - started
    assert r.status_code == 503 and r.json()["error"]["code"] == "wechatpay_unavailable", r.text
    assert elapsed < PAY_TIMEOUT + 1.5, elapsed
    # Nothing half-written: one pending order that holds exactly its bill (the outcome at
    # WeChat Pay is unknown, so it is neither dropped nor paid), no receipt, no payment.
    orders = await db["pay_orders"].find({}).to_list(None)
    assert len(orders) == 1 and orders[0]["status"] == "pending"
    assert (await db["bills"].find_one({"_id": bill["id"]}))["order_id"] == orders[0]["_id"]
    assert await db["receipts"].count_documents({}) == 0
    again = await fw.order(fw.owner_a1, [bill["id"]])
    assert again.status_code == 409 and again.json()["error"]["code"] == "bill_in_open_order"

    fw.fake.response_delay_seconds = 0
    r = await fw.api.post(f"/api/mp/v1/orders/{orders[0]['_id']}/pay-params", fw.owner_a1)
    assert r.status_code == 200, r.text
    out_trade_no = orders[0]["out_trade_no"]
    fw.fake.pay(out_trade_no)
    [delivery] = await fw.fake.deliver(out_trade_no)
    assert delivery.status == 204, delivery.body
    counts = await fw.counts()
    assert counts["paid_bills"] == 1 and counts["paid_orders"] == 1 and counts["receipts"] == 1


async def test_notifications_that_could_not_be_delivered_succeed_when_wechat_pay_retries(
        fw: FeeWorld) -> None:
    [bill] = await fw.bills(fw.owner_a1)
    r = await fw.order(fw.owner_a1, [bill["id"]])
    assert r.status_code == 201, r.text
    out_trade_no = r.json()["order"]["out_trade_no"]
    fw.fake.pay(out_trade_no)
    reachable = fw.fake.notify_target_override
    fw.fake.notify_target_override = "http://127.0.0.1:9"  # our side unreachable for a while
    failed = await fw.fake.deliver(out_trade_no, times=2)
    assert all(d.status == 0 for d in failed)
    assert (await fw.counts())["paid_orders"] == 0
    fw.fake.notify_target_override = reachable  # WeChat Pay keeps retrying (15s/15s/30s/3m…)
    [late] = await fw.fake.deliver(out_trade_no)
    assert late.status == 204, late.body
    counts = await fw.counts()
    assert counts["paid_bills"] == 1 and counts["paid_orders"] == 1 and counts["receipts"] == 1
    [repeat] = await fw.fake.deliver(out_trade_no)  # and a further retry changes nothing
    assert repeat.status == 204 and await fw.counts() == counts
