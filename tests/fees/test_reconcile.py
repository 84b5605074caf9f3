"""Reconciliation: queries after the client says paid, the sweep, expiry, late money, trade bill."""

from __future__ import annotations

from miniprogram_api.wechatpay import BEIJING
from server.auth import Grant, Role
from server.clock import ManualClock
from tests.fees.conftest import FeeWorld


async def _pending_order(fw: FeeWorld, token: str | None = None) -> dict:  # type: ignore[type-arg]
    token = token or fw.owner_a1
    [bill] = await fw.bills(token)
    r = await fw.order(token, [bill["id"]])
    assert r.status_code == 201, r.text
    return dict(r.json()["order"])


async def test_notification_never_delivered_sweep_marks_the_order_paid(fw: FeeWorld) -> None:
    order = await _pending_order(fw)
    fw.fake.pay(order["out_trade_no"])  # WeChat Pay never tells us
    assert fw.fake.paid_unnotified() == [order["out_trade_no"]]
    admin = await fw.api.staff("root", [Grant(Role.PLATFORM_ADMIN)])
    r = await fw.api.post("/api/admin/v1/pay/sweep", admin)
    assert r.status_code == 200 and r.json()["orders"] == {"paid": 1}, r.text
    counts = await fw.counts()
    assert counts["paid_orders"] == 1 and counts["paid_bills"] == 1 and counts["receipts"] == 1
    # The late notification, when it finally comes, changes nothing more.
    [late] = await fw.fake.deliver(order["out_trade_no"])
    assert late.status == 204 and await fw.counts() == {**counts, "pay_notifications": 1}


async def test_client_confirm_queries_wechat_pay_and_settles(fw: FeeWorld) -> None:
    order = await _pending_order(fw)
    r = await fw.api.post(f"/api/mp/v1/orders/{order['id']}/confirm", fw.owner_a1)
    assert r.status_code == 200 and r.json()["status"] == "pending"  # not paid yet: not trusted
    fw.fake.pay(order["out_trade_no"])
    r = await fw.api.post(f"/api/mp/v1/orders/{order['id']}/confirm", fw.owner_a1)
    assert r.status_code == 200 and r.json()["status"] == "paid"
    assert (await fw.api.get(f"/api/mp/v1/orders/{order['id']}/receipt", fw.owner_a1)).status_code == 200


async def test_expired_order_is_closed_at_wechat_pay_and_its_bills_can_be_ordered_again(
        fw: FeeWorld, clock: ManualClock) -> None:
    order = await _pending_order(fw)
    assert (await fw.api.services.payments.sweep()) == {"pending": 1}  # not expired: left alone
    clock.advance(seconds=fw.api.services.settings.wechatpay_order_ttl_seconds + 1)
    assert (await fw.api.services.payments.sweep()) == {"closed": 1}
    assert fw.fake.orders[order["out_trade_no"]].trade_state == "CLOSED"
    r = await fw.api.get(f"/api/mp/v1/orders/{order['id']}", fw.owner_a1)
    assert r.json()["status"] == "closed"
    [bill] = await fw.bills(fw.owner_a1)
    assert bill["in_open_order"] is False
    r = await fw.api.post(f"/api/mp/v1/orders/{order['id']}/pay-params", fw.owner_a1)
    assert r.status_code == 409 and r.json()["error"]["code"] == "order_not_pending"
    assert (await fw.order(fw.owner_a1, [bill["id"]])).status_code == 201


async def _pay_after_close(fw: FeeWorld, clock: ManualClock, rebill: bool) -> dict:  # type: ignore[type-arg]
    order = await _pending_order(fw)
    clock.advance(seconds=fw.api.services.settings.wechatpay_order_ttl_seconds + 1)
    assert (await fw.api.services.payments.sweep()) == {"closed": 1}
    if rebill:
        [bill] = await fw.bills(fw.owner_a1)
        assert (await fw.order(fw.owner_a1, [bill["id"]])).status_code == 201
    # The payer's bank completed the payment as the close went through (WeChat Pay documents
    # that a close can lose this race): the money arrives for an order we closed.
    late = fw.fake.orders[order["out_trade_no"]]
    late.trade_state, late.time_expire = "NOTPAY", None
    fw.fake.pay(order["out_trade_no"])
    [delivery] = await fw.fake.deliver(order["out_trade_no"])
    assert delivery.status == 204  # recorded: WeChat Pay need not retry
    return order


async def test_payment_after_close_and_rebilling_is_recorded_and_routed_to_refund(
        fw: FeeWorld, clock: ManualClock) -> None:
    order = await _pay_after_close(fw, clock, rebill=True)
    db = fw.api.services.store.db
    doc = await db["pay_orders"].find_one({"_id": order["id"]})
    assert doc is not None and doc["status"] == "paid_after_close" and doc["transaction_id"]
    assert await db["bills"].count_documents({"status": "paid"}) == 0  # the bill is not paid twice
    r = await fw.api.get("/api/admin/v1/communities/cm_a/orphan-payments", fw.clerk_a)
    [orphan] = r.json()["payments"]
    assert orphan["route"] == "refund" and orphan["amount_fen"] == 11003 and orphan["status"] == "open"
    r = await fw.api.post(f"/api/admin/v1/orders/{order['id']}/refunds", fw.clerk_a,
                          json={"out_refund_no": "RF-LATE-1", "amount_fen": 11003,
                                "reason": "订单关闭后到账，原路退回"})
    assert r.status_code == 201, r.text
    [done] = await fw.fake.deliver_refund("RF-LATE-1")
    assert done.status == 204
    r = await fw.api.get("/api/admin/v1/communities/cm_a/orphan-payments", fw.clerk_a)
    assert r.json()["payments"][0]["status"] == "refunded"


async def test_payment_after_close_without_rebilling_goes_to_manual_review(
        fw: FeeWorld, clock: ManualClock) -> None:
    await _pay_after_close(fw, clock, rebill=False)
    r = await fw.api.get("/api/admin/v1/communities/cm_a/orphan-payments", fw.clerk_a)
    assert [p["route"] for p in r.json()["payments"]] == ["review"]


async def test_daily_trade_bill_reconciliation_flags_a_payment_we_have_not_recorded(
        fw: FeeWorld, clock: ManualClock) -> None:
    settled = await _pending_order(fw)
    fw.fake.pay(settled["out_trade_no"])
    await fw.fake.deliver(settled["out_trade_no"])
    unseen = await _pending_order(fw, fw.owner_a2)
    fw.fake.pay(unseen["out_trade_no"])  # never notified, not yet swept
    admin = await fw.api.staff("root", [Grant(Role.PLATFORM_ADMIN)])
    day = clock.now().astimezone(BEIJING).date().isoformat()
    r = await fw.api.post("/api/admin/v1/pay/reconciliations", admin, json={"date": day})
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == 2
    assert [(d["kind"], d["out_trade_no"]) for d in r.json()["differences"]] == [
        ("not_paid_here", unseen["out_trade_no"])]
    await fw.api.services.payments.sweep()
    r = await fw.api.post("/api/admin/v1/pay/reconciliations", admin, json={"date": day})
    assert r.json()["differences"] == []
    r = await fw.api.get("/api/admin/v1/pay/reconciliations", admin)
    assert [d["date"] for d in r.json()["days"]] == [day]
