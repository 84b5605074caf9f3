"""Refunds by authorised property staff: scope, idempotency on out_refund_no, never over-refund."""

from __future__ import annotations

import asyncio

from server.auth import Grant, Role
from tests.fees.conftest import FeeWorld


async def _paid_order(fw: FeeWorld) -> dict:  # type: ignore[type-arg]
    [bill] = await fw.bills(fw.owner_a1)
    order = (await fw.order(fw.owner_a1, [bill["id"]])).json()["order"]
    fw.fake.pay(order["out_trade_no"])
    await fw.fake.deliver(order["out_trade_no"])
    return dict(order)


def _refund(no: str, amount: int, reason: str = "多收退还") -> dict[str, object]:
    return {"out_refund_no": no, "amount_fen": amount, "reason": reason}


async def test_property_clerk_of_another_community_cannot_refund(fw: FeeWorld) -> None:
    order = await _paid_order(fw)
    official = await fw.api.staff("street", [Grant(Role.OFFICIAL, area_id="ar_s1")])
    for token in (fw.clerk_b, official, fw.owner_a1):
        r = await fw.api.post(f"/api/admin/v1/orders/{order['id']}/refunds", token,
                              json=_refund("RF-X-1", 100))
        assert r.status_code in (401, 403), r.text
    r = await fw.api.post(f"/api/admin/v1/orders/{order['id']}/refunds", fw.clerk_b,
                          json=_refund("RF-X-1", 100))
    assert r.json()["error"]["code"] == "out_of_scope"
    assert fw.fake.refunds == {}
    assert (await fw.counts())["refunds"] == 0
    # The official may read the order (read-only), the other company's clerk may not.
    assert (await fw.api.get(f"/api/admin/v1/orders/{order['id']}", official)).status_code == 200
    assert (await fw.api.get(f"/api/admin/v1/orders/{order['id']}", fw.clerk_b)).status_code == 403


async def test_partial_refund_is_idempotent_and_completed_by_its_notification(fw: FeeWorld) -> None:
    order = await _paid_order(fw)
    url = f"/api/admin/v1/orders/{order['id']}/refunds"
    first = await fw.api.post(url, fw.clerk_a, json=_refund("RF-A-1", 3000))
    assert first.status_code == 201 and first.json()["status"] == "processing", first.text
    again = await fw.api.post(url, fw.clerk_a, json=_refund("RF-A-1", 3000))
    assert again.status_code == 201 and again.json() == first.json()
    assert len(fw.fake.refunds) == 1 and fw.fake.orders[order["out_trade_no"]].refunded_fen == 3000
    r = await fw.api.post(url, fw.clerk_a, json=_refund("RF-A-1", 4000))
    assert r.status_code == 409 and r.json()["error"]["code"] == "refund_no_reused"
    r = await fw.api.post(url, fw.clerk_a, json=_refund("RF-A-2", 11003 - 3000 + 1))
    assert r.status_code == 409 and r.json()["error"]["code"] == "refund_exceeds_paid"
    deliveries = await fw.fake.deliver_refund("RF-A-1", times=3)  # retries are replays
    assert [d.status for d in deliveries] == [204] * 3
    r = await fw.api.get(f"/api/admin/v1/orders/{order['id']}", fw.clerk_a)
    body = r.json()
    assert body["order"]["refunded_fen"] == 3000
    assert [(x["out_refund_no"], x["status"]) for x in body["refunds"]] == [
        ("RF-A-1", "success"), ("RF-A-2", "refused")]  # a refused request stays on record


async def test_concurrent_refunds_never_exceed_the_paid_amount(fw: FeeWorld) -> None:
    order = await _paid_order(fw)
    url = f"/api/admin/v1/orders/{order['id']}/refunds"
    results = await asyncio.gather(*(fw.api.post(url, fw.clerk_a, json=_refund(f"RF-C-{i}", 3000))
                                     for i in range(5)))
    ok = [r for r in results if r.status_code == 201]
    assert len(ok) == 3  # 3 × 30.00 ≤ 110.03 < 4 × 30.00
    assert all(r.json()["error"]["code"] == "refund_exceeds_paid"
               for r in results if r.status_code != 201)
    # The refund ledger is the source of truth (the order document only caches its total, and
    # concurrent cache writes may interleave on FerretDB); the API reads the ledger.
    assert await fw.api.services.refunds.refunded_fen(order["id"]) == 9000
    r = await fw.api.get(f"/api/admin/v1/orders/{order['id']}", fw.clerk_a)
    assert r.json()["order"]["refunded_fen"] == 9000
    assert fw.fake.orders[order["out_trade_no"]].refunded_fen == 9000


async def test_unpaid_order_cannot_be_refunded(fw: FeeWorld) -> None:
    [bill] = await fw.bills(fw.owner_a1)
    order = (await fw.order(fw.owner_a1, [bill["id"]])).json()["order"]
    r = await fw.api.post(f"/api/admin/v1/orders/{order['id']}/refunds", fw.clerk_a,
                          json=_refund("RF-U-1", 100))
    assert r.status_code == 409 and r.json()["error"]["code"] == "order_not_refundable"


async def test_refund_input_errors_name_the_fields(fw: FeeWorld) -> None:
    order = await _paid_order(fw)
    r = await fw.api.post(f"/api/admin/v1/orders/{order['id']}/refunds", fw.clerk_a,
                          json={"out_refund_no": "bad no!", "amount_fen": 0})
    assert r.status_code == 400
    assert r.json()["error"]["fields"] == {"amount_fen": "应不小于 1", "out_refund_no": "格式不正确",
                                           "reason": "必填"}
    assert (await fw.counts())["refunds"] == 0
