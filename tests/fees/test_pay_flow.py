"""Paying bills end to end over HTTP against the fake WeChat Pay v3 server."""

from __future__ import annotations

import asyncio
import base64

import pytest

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.conftest import APPID
from tests.fees.conftest import FeeWorld


async def test_full_flow_bills_order_paysign_notification_paid_receipt(
        fw: FeeWorld, merchant_key: rsa.RSAPrivateKey) -> None:
    bills = await fw.bills(fw.owner_a1)
    assert [b["amount_due_fen"] for b in bills] == [11003]  # 81.50 m² × 1.35 元, half up
    r = await fw.order(fw.owner_a1, [bills[0]["id"]])
    assert r.status_code == 201, r.text
    order, params = r.json()["order"], r.json()["pay_params"]
    assert order["status"] == "pending" and order["total_fen"] == 11003
    # paySign verifies with the merchant public key over appId\ntimeStamp\nnonceStr\npackage\n.
    message = f"{APPID}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n"
    merchant_key.public_key().verify(base64.b64decode(params["paySign"]), message.encode(),
                                     padding.PKCS1v15(), hashes.SHA256())
    fake_order = fw.fake.orders[order["out_trade_no"]]
    assert params["package"] == f"prepay_id={fake_order.prepay_id}"
    assert fake_order.total_fen == 11003 and fake_order.notify_url == (
        "https://wy.example.cn/api/pay/v1/wechatpay/notify")
    assert (await fw.bills(fw.owner_a1))[0]["in_open_order"] is True

    fw.fake.pay(order["out_trade_no"])
    [delivery] = await fw.fake.deliver(order["out_trade_no"])
    assert delivery.status == 204, delivery.body

    r = await fw.api.get(f"/api/mp/v1/orders/{order['id']}", fw.owner_a1)
    assert r.json()["status"] == "paid"
    paid = await fw.bills(fw.owner_a1, "paid")
    assert [b["id"] for b in paid] == [bills[0]["id"]] and paid[0]["paid_at"]
    r = await fw.api.get(f"/api/mp/v1/orders/{order['id']}/receipt", fw.owner_a1)
    assert r.status_code == 200, r.text
    receipt = r.json()
    assert receipt["total_fen"] == 11003 and receipt["transaction_id"].startswith("4200")
    assert [line["bill_id"] for line in receipt["lines"]] == [bills[0]["id"]]
    assert receipt["community_name"] == "甲小区"


async def test_same_notification_ten_times_concurrently_pays_once_with_one_receipt(fw: FeeWorld) -> None:
    [bill] = await fw.bills(fw.owner_a1)
    order = (await fw.order(fw.owner_a1, [bill["id"]])).json()["order"]
    fw.fake.pay(order["out_trade_no"])
    deliveries = await fw.fake.deliver(order["out_trade_no"], times=10, concurrently=True)
    assert [d.status for d in deliveries] == [204] * 10
    counts = await fw.counts()
    assert counts["paid_bills"] == 1 and counts["paid_orders"] == 1
    assert counts["receipts"] == 1 and counts["pay_notifications"] == 1
    assert counts["audit_paid"] == 1
    # A later retry of the same notification is a replay: acknowledged, nothing changes.
    [again] = await fw.fake.deliver(order["out_trade_no"])
    assert again.status == 204 and await fw.counts() == counts


@pytest.mark.parametrize("attempts", [2, 8])
async def test_concurrent_orders_over_one_bill_exactly_one_succeeds(fw: FeeWorld, attempts: int) -> None:
    [bill] = await fw.bills(fw.owner_a1)
    results = await asyncio.gather(*(fw.order(fw.owner_a1, [bill["id"]]) for _ in range(attempts)))
    statuses = sorted(r.status_code for r in results)
    assert statuses == [201] + [409] * (attempts - 1), [r.text for r in results]
    loser = next(r for r in results if r.status_code == 409)
    assert loser.json()["error"]["code"] == "bill_in_open_order"
    winner = next(r for r in results if r.status_code == 201).json()["order"]
    doc = await fw.api.services.store.db["bills"].find_one({"_id": bill["id"]})
    assert doc is not None and doc["order_id"] == winner["id"]
    assert len(fw.fake.orders) == 1


async def test_many_concurrent_orders_over_overlapping_bills_never_share_a_bill(fw: FeeWorld) -> None:
    # The same owner binds a second unit through an invite from owner a2 (family member).
    r = await fw.api.post(f"/api/mp/v1/units/{fw.unit('102')}/invites", fw.owner_a2,
                          json={"role": "family"})
    code = r.json()["code"]
    assert (await fw.api.post(f"/api/mp/v1/invites/{code}/accept", fw.owner_a1)).status_code == 201
    b1, b2 = [b["id"] for b in await fw.bills(fw.owner_a1)]
    combos = [[b1], [b2], [b1, b2], [b2, b1]] * 3
    results = await asyncio.gather(*(fw.order(fw.owner_a1, c) for c in combos))
    winners = [r.json()["order"] for r in results if r.status_code == 201]
    assert all(r.status_code in (201, 409) for r in results)
    claimed = [b for w in winners for b in w["bill_ids"]]
    assert sorted(claimed) == sorted(set(claimed)) and winners
    db = fw.api.services.store.db
    for bill_id in (b1, b2):
        doc = await db["bills"].find_one({"_id": bill_id})
        owners = [w["id"] for w in winners if bill_id in w["bill_ids"]]
        assert doc is not None and [doc["order_id"]] == owners or (doc["order_id"] == "" and not owners)


async def test_family_member_can_pay_and_tenant_only_when_allowed(fw: FeeWorld) -> None:
    api = fw.api
    r = await api.post(f"/api/mp/v1/units/{fw.unit('101')}/invites", fw.owner_a1,
                       json={"role": "tenant", "can_pay": False})
    tenant = await api.mp_login("openid-tenant")
    assert (await api.post(f"/api/mp/v1/invites/{r.json()['code']}/accept", tenant)).status_code == 201
    assert await fw.bills(tenant) == []
    [bill] = await fw.bills(fw.owner_a1)
    r = await fw.order(tenant, [bill["id"]])
    assert r.status_code == 404 and r.json()["error"]["code"] == "bill_not_found"

    r = await api.post(f"/api/mp/v1/units/{fw.unit('101')}/invites", fw.owner_a1,
                       json={"role": "tenant", "can_pay": True})
    payer = await api.mp_login("openid-tenant-2")
    assert (await api.post(f"/api/mp/v1/invites/{r.json()['code']}/accept", payer)).status_code == 201
    assert [b["id"] for b in await fw.bills(payer)] == [bill["id"]]
    assert (await fw.order(payer, [bill["id"]])).status_code == 201


async def test_two_owners_cannot_see_or_pay_each_others_bills(fw: FeeWorld) -> None:
    [bill_1] = await fw.bills(fw.owner_a1)
    [bill_2] = await fw.bills(fw.owner_a2)
    assert bill_1["unit_id"] == fw.unit("101") and bill_2["unit_id"] == fw.unit("102")
    r = await fw.order(fw.owner_a2, [bill_1["id"]])
    assert r.status_code == 404 and r.json()["error"]["fields"] == {"bill_ids[0]": "账单不存在"}
    order = (await fw.order(fw.owner_a1, [bill_1["id"]])).json()["order"]
    for path in (f"/api/mp/v1/orders/{order['id']}", f"/api/mp/v1/orders/{order['id']}/receipt"):
        r = await fw.api.get(path, fw.owner_a2)
        assert r.status_code == 404 and r.json()["error"]["code"] == "order_not_found"
    r = await fw.api.post(f"/api/mp/v1/orders/{order['id']}/confirm", fw.owner_a2)
    assert r.status_code == 404
    assert await fw.api.services.store.db["pay_orders"].count_documents({}) == 1


async def test_bad_order_input_is_400_with_field_paths_and_nothing_written(fw: FeeWorld) -> None:
    cases = [({}, {"bill_ids": "必填"}),
             ({"bill_ids": []}, {"bill_ids": "条目数应至少为 1"}),
             ({"bill_ids": ["bl_x", 5], "tip_fen": 1},
              {"bill_ids[1]": "类型应为字符串", "tip_fen": "不允许的字段"})]
    for body, fields in cases:
        r = await fw.api.post("/api/mp/v1/orders", fw.owner_a1, json=body)
        assert r.status_code == 400 and r.json()["error"]["fields"] == fields, r.text
    assert await fw.api.services.store.db["pay_orders"].count_documents({}) == 0
    assert fw.fake.orders == {}

