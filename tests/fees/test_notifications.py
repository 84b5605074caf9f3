"""Notifications that fail a check are rejected, recorded for review, and change nothing."""

from __future__ import annotations

import json

import pytest

from miniprogram_api.fake_wechatpay import Forgery
from tests.fees.conftest import FeeWorld

# (forgery, HTTP status WeChat Pay gets back, code recorded in pay_rejections)
FORGERIES = [
    (Forgery.BAD_SIGNATURE, 401, "signature_invalid"),
    (Forgery.TAMPERED_BODY, 401, "signature_invalid"),
    (Forgery.STALE_TIMESTAMP, 400, "timestamp_stale"),
    (Forgery.PROBE_SIGNATURE, 401, "probe_signature"),
    (Forgery.UNKNOWN_SERIAL, 401, "unknown_serial"),
    (Forgery.MISSING_HEADERS, 400, "headers_missing"),
    (Forgery.BAD_CIPHERTEXT, 500, "decrypt_failed"),
    (Forgery.WRONG_AMOUNT, 400, "amount_mismatch"),
    (Forgery.WRONG_MCHID, 400, "mchid_mismatch"),
    (Forgery.WRONG_APPID, 400, "appid_mismatch"),
]


@pytest.mark.parametrize(("forgery", "status", "code"), FORGERIES, ids=[f[0].value for f in FORGERIES])
async def test_bad_notification_is_rejected_and_changes_nothing(
        fw: FeeWorld, forgery: Forgery, status: int, code: str) -> None:
    [bill] = await fw.bills(fw.owner_a1)
    order = (await fw.order(fw.owner_a1, [bill["id"]])).json()["order"]
    fw.fake.pay(order["out_trade_no"])  # paid at WeChat Pay, but this notification is bad
    before = await fw.counts()
    [delivery] = await fw.fake.deliver(order["out_trade_no"],
                                       notification=fw.fake.forge(order["out_trade_no"], forgery))
    assert delivery.status == status and json.loads(delivery.body)["code"] == "FAIL"
    assert await fw.counts() == before
    db = fw.api.services.store.db
    doc = await db["pay_orders"].find_one({"_id": order["id"]})
    assert doc is not None and doc["status"] == "pending"
    rejections = await db["pay_rejections"].find().to_list(None)
    assert [r["code"] for r in rejections] == [code]
    # The genuine notification still goes through afterwards (a rejection is not a replay).
    [genuine] = await fw.fake.deliver(order["out_trade_no"])
    assert genuine.status == 204
    assert (await fw.counts())["paid_orders"] == 1


async def test_rejections_are_listed_for_platform_admins_only(fw: FeeWorld) -> None:
    from server.auth import Grant, Role

    [bill] = await fw.bills(fw.owner_a1)
    order = (await fw.order(fw.owner_a1, [bill["id"]])).json()["order"]
    await fw.fake.deliver(order["out_trade_no"],
                          notification=fw.fake.forge(order["out_trade_no"], Forgery.PROBE_SIGNATURE))
    admin = await fw.api.staff("root", [Grant(Role.PLATFORM_ADMIN)])
    r = await fw.api.get("/api/admin/v1/pay/rejections", admin)
    assert r.status_code == 200 and [x["code"] for x in r.json()["rejections"]] == ["probe_signature"]
    r = await fw.api.get("/api/admin/v1/pay/rejections", fw.clerk_a)
    assert r.status_code == 403


async def test_notification_for_an_unexpected_event_is_rejected(fw: FeeWorld) -> None:
    [bill] = await fw.bills(fw.owner_a1)
    order = (await fw.order(fw.owner_a1, [bill["id"]])).json()["order"]
    fake_order = fw.fake.orders[order["out_trade_no"]]
    notification = fw.fake._notification("n-closed-1", "TRANSACTION.CLOSED", "关闭", "transaction",
                                         fw.fake._transaction_json(fake_order))
    [delivery] = await fw.fake.deliver(order["out_trade_no"], notification=notification)
    assert delivery.status == 400
    db = fw.api.services.store.db
    assert (await db["pay_orders"].find_one({"_id": order["id"]}) or {})["status"] == "pending"
    assert await db["pay_notifications"].count_documents({}) == 0
