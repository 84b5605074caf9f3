"""Fee items and bills: integer rounding, idempotent generation, recorded adjustments, statistics."""

from __future__ import annotations

import asyncio

import pytest

from server.auth import Grant, Role
from server.fees import period_end, period_starts_cycle, property_fee_fen, rate_basis_points
from tests.fees.conftest import FeeWorld


# -- pure rules -------------------------------------------------------------------------------
@pytest.mark.parametrize(("area", "price", "months", "fen"), [
    (8150, 135, 1, 11003),    # 81.50 m² × 1.35 元 = 110.025 元 → 110.03 (half up)
    (8155, 135, 3, 33028),    # 330.2775 元 → 330.28, rounded once, not 3 × 110.09
    (1, 50, 1, 1),            # exactly half a fen rounds up
    (1, 49, 1, 0),
    (12345, 0, 12, 0),
])
def test_property_fee_is_exact_integer_arithmetic_rounded_half_up_once(
        area: int, price: int, months: int, fen: int) -> None:
    assert property_fee_fen(area, price, months) == fen


def test_rounding_once_differs_from_summing_rounded_months() -> None:
    monthly = property_fee_fen(8155, 135, 1)
    assert monthly * 3 == 33027 and property_fee_fen(8155, 135, 3) == 33028


def test_periods_start_on_cycle_boundaries() -> None:
    assert period_starts_cycle("2026-04", 3) and not period_starts_cycle("2026-02", 3)
    assert period_end("2026-11", 3) == "2027-01" and period_end("2026-01", 12) == "2026-12"
    assert rate_basis_points(1, 3) == 3333 and rate_basis_points(2, 3) == 6667
    assert rate_basis_points(0, 0) == 0


# -- over HTTP ------------------------------------------------------------------------------------
async def test_generating_the_same_period_twice_creates_nothing_new(fw: FeeWorld) -> None:
    url = "/api/admin/v1/communities/cm_a/bills/generate"
    body = {"period": "2026-01", "item_ids": [fw.item_a]}
    r = await fw.api.post(url, fw.clerk_a, json=body)
    assert r.json() == {"period": "2026-01", "created": 0, "existing": 6, "units": 6}
    results = await asyncio.gather(*(fw.api.post(url, fw.clerk_a,
                                                 json={**body, "period": "2026-02"})
                                     for _ in range(3)))
    assert sorted(r.json()["created"] for r in results)[-1] <= 6
    assert sum(r.json()["created"] for r in results) == 6
    assert await fw.api.services.store.db["bills"].count_documents({}) == 12


async def test_quarterly_item_bills_three_months_at_once_and_refuses_misaligned_periods(
        fw: FeeWorld) -> None:
    r = await fw.api.post("/api/admin/v1/communities/cm_a/fee-items", fw.clerk_a,
                          json={"name": "垃圾清运费", "kind": "fixed", "cycle_months": 3,
                                "amount_fen_per_month": 500})
    item = r.json()["id"]
    r = await fw.api.post("/api/admin/v1/communities/cm_a/bills/generate", fw.clerk_a,
                          json={"period": "2026-02", "item_ids": [item, "fi_nope"]})
    assert r.status_code == 400 and set(r.json()["error"]["fields"]) == {"item_ids[0]", "item_ids[1]"}
    assert await fw.api.services.store.db["bills"].count_documents({"item_id": item}) == 0
    r = await fw.api.post("/api/admin/v1/communities/cm_a/bills/generate", fw.clerk_a,
                          json={"period": "2026-04", "item_ids": [item]})
    assert r.json()["created"] == 6
    r = await fw.api.get("/api/admin/v1/communities/cm_a/bills?period=2026-04", fw.clerk_a)
    bills = r.json()["bills"]
    assert {(b["amount_due_fen"], b["months"], b["period_end"]) for b in bills} == {(1500, 3, "2026-06")}


async def test_bad_fee_item_input_is_400_with_field_paths_and_nothing_written(fw: FeeWorld) -> None:
    url = "/api/admin/v1/communities/cm_a/fee-items"
    cases = [
        ({"name": "物业费2", "kind": "property", "cycle_months": 1},
         {"price_fen_per_m2_month": "物业费须填写单价（分/平方米/月）"}),
        ({"name": "车位费", "kind": "parking", "cycle_months": 2, "amount_fen_per_month": 1.5,
          "colour": "red"},
         {"cycle_months": "取值无效，可选：1、3、6、12", "amount_fen_per_month": "类型应为整数",
          "colour": "不允许的字段"}),
        ({"name": "车位费", "kind": "parking", "cycle_months": 1, "price_fen_per_m2_month": 10},
         {"amount_fen_per_month": "须填写每月固定金额（分）",
          "price_fen_per_m2_month": "仅物业费按面积单价计算"}),
    ]
    for body, fields in cases:
        r = await fw.api.post(url, fw.clerk_a, json=body)
        assert r.status_code == 400 and r.json()["error"]["fields"] == fields, r.text
    assert await fw.api.services.store.db["fee_items"].count_documents({}) == 1


async def test_adjustments_are_recorded_with_reason_and_never_edit_history(fw: FeeWorld) -> None:
    [bill] = await fw.bills(fw.owner_a1)
    url = f"/api/admin/v1/bills/{bill['id']}/adjustments"
    r = await fw.api.post(url, fw.clerk_a, json={"delta_fen": -1003, "reason": "空置房减免"})
    assert r.status_code == 201, r.text
    assert r.json()["amount_due_fen"] == 10000 and r.json()["base_fen"] == 11003
    r = await fw.api.post(url, fw.clerk_a, json={"delta_fen": -10001, "reason": "超额减免"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "bill_not_adjustable"
    r = await fw.api.post(url, fw.clerk_a, json={"delta_fen": 0})
    assert r.status_code == 400 and set(r.json()["error"]["fields"]) == {"delta_fen", "reason"}
    r = await fw.api.post(url, fw.clerk_b, json={"delta_fen": 5, "reason": "越权"})
    assert r.status_code == 403
    # In an open order the amount is frozen: the order's total must match what is paid.
    assert (await fw.order(fw.owner_a1, [bill["id"]])).status_code == 201
    r = await fw.api.post(url, fw.clerk_a, json={"delta_fen": 100, "reason": "补收"})
    assert r.status_code == 409
    [shown] = await fw.bills(fw.owner_a1)
    assert [(a["delta_fen"], a["reason"]) for a in shown["adjustments"]] == [(-1003, "空置房减免")]
    audit = await fw.api.services.store.db["audit"].find({"action": "bill.adjust"}).to_list(None)
    assert [a["reason"] for a in audit] == ["空置房减免"]


async def test_adjusting_to_zero_waives_the_bill(fw: FeeWorld) -> None:
    [bill] = await fw.bills(fw.owner_a1)
    r = await fw.api.post(f"/api/admin/v1/bills/{bill['id']}/adjustments", fw.clerk_a,
                          json={"delta_fen": -11003, "reason": "困难户全免"})
    assert r.json()["status"] == "waived" and r.json()["amount_due_fen"] == 0
    assert await fw.bills(fw.owner_a1) == []


async def test_arrears_and_collection_rate_for_property_staff_and_officials_in_scope(
        fw: FeeWorld) -> None:
    [bill] = await fw.bills(fw.owner_a1)
    order = (await fw.order(fw.owner_a1, [bill["id"]])).json()["order"]
    fw.fake.pay(order["out_trade_no"])
    await fw.fake.deliver(order["out_trade_no"])
    r = await fw.api.get("/api/admin/v1/communities/cm_a/fees/arrears", fw.clerk_a)
    units = r.json()["units"]
    assert len(units) == 5 and fw.unit("101") not in {u["unit_id"] for u in units}
    assert all(u["bills"] == 1 and u["unit_label"].startswith("1号楼") for u in units)
    assert r.json()["total_fen"] == sum(u["amount_fen"] for u in units)
    r = await fw.api.get("/api/admin/v1/communities/cm_a/fees/collection?period=2026-01", fw.clerk_a)
    [row] = r.json()["communities"]
    assert row["paid_fen"] == 11003 and row["paid_bills"] == 1 and row["bills"] == 6
    assert row["rate_bp"] == rate_basis_points(11003, row["due_fen"])

    street = await fw.api.staff("street1", [Grant(Role.OFFICIAL, area_id="ar_s1")])
    other = await fw.api.staff("street2", [Grant(Role.OFFICIAL, area_id="ar_s2")])
    r = await fw.api.get("/api/admin/v1/areas/ar_s1/fees/collection?period=2026-01", street)
    assert r.status_code == 200 and [c["community_id"] for c in r.json()["communities"]] == ["cm_a"]
    assert r.json()["total"]["paid_fen"] == 11003
    assert (await fw.api.get("/api/admin/v1/areas/ar_s1/fees/collection?period=2026-01",
                             other)).status_code == 403
    assert (await fw.api.get("/api/admin/v1/communities/cm_a/fees/collection?period=2026-01",
                             other)).status_code == 403
    assert (await fw.api.get("/api/admin/v1/communities/cm_a/fees/collection?period=2026-01",
                             fw.clerk_b)).status_code == 403
    # Officials read; they do not set fees.
    r = await fw.api.post("/api/admin/v1/communities/cm_a/fee-items", street,
                          json={"name": "x", "kind": "fixed", "cycle_months": 1,
                                "amount_fen_per_month": 1})
    assert r.status_code == 403
    r = await fw.api.get("/api/admin/v1/communities/cm_a/fees/collection", fw.clerk_a)
    assert r.status_code == 400 and r.json()["error"]["fields"] == {"period": "必填"}
