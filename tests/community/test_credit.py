"""Credit evaluation and red/black lists: published with their inputs, reproducible from them."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from server.clock import ManualClock, parse_time
from server.credit import evaluate, signed_list
from tests.community.conftest import PHONE_W, Town
from tests.community.test_disclosures import publish_income, statement
from voting.signing import verify

MARCH = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
APRIL = datetime(2026, 4, 2, 2, 0, tzinfo=UTC)
DIMS = ("cleaning", "security", "greening", "repairs", "attitude")


async def rate(town: Town, token: str, community: str, overall: int) -> None:
    r = await town.api.call("PUT", f"/api/mp/v1/communities/{community}/ratings/2026Q1", token,
                            json={"scores": {**{d: 3 for d in DIMS}, "overall": overall}})
    assert r.status_code == 200, r.text


async def complaint(town: Town, token: str, community: str) -> str:
    r = await town.api.post(f"/api/mp/v1/communities/{community}/complaints", token,
                            json={"category": "service", "text": "电梯经常停运无人维修"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def build_quarter(town: Town, clock: ManualClock) -> None:
    """Q1 in district ar_d1: company A (cm_a, cm_r) does well, company B (cm_b) badly."""
    api = town.api
    clock.set(MARCH)
    a1, a2 = await town.owner("a1", "13900000101"), await town.owner("a2", "13900000102")
    b1 = await town.owner("b1", "13900000201")
    for owner in (a1, a2):
        cid = await complaint(town, owner, "cm_a")
        for step in ("response", "resolution"):
            r = await api.post(f"/api/admin/v1/complaints/{cid}/{step}",
                               await town.token("property_a"), json={"note": "已处理"})
            assert r.status_code == 200
        if owner == a1:
            r = await api.post(f"/api/mp/v1/complaints/{cid}/confirmation", a1,
                               json={"accept": True, "rating": 5})
            assert r.status_code == 200
    await complaint(town, b1, "cm_b")  # never answered
    clock.set(APRIL)
    town.tokens.clear()
    a1, a2 = await town.owner("a1", "13900000101"), await town.owner("a2", "13900000102")
    b1, w = await town.owner("b1", "13900000201"), await town.owner("w", PHONE_W)
    await rate(town, a1, "cm_a", 5)
    await rate(town, a2, "cm_a", 4)
    await rate(town, w, "cm_r", 5)
    await rate(town, b1, "cm_b", 2)
    assert (await publish_income(town, statement())).status_code == 201
    r = await api.post("/api/admin/v1/communities/cm_r/disclosures/property/common-income/2026Q1",
                       await town.token("property_a"), json={"content": statement()})
    assert r.status_code == 201, r.text


async def test_quarterly_district_list_is_reproducible_from_its_published_inputs(
        town: Town, clock: ManualClock) -> None:
    api = town.api
    await build_quarter(town, clock)
    r = await api.post("/api/admin/v1/areas/ar_d1/credit-lists", await town.token("district"),
                       json={"period": "2026Q1"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "credit_period_not_final"

    clock.set(datetime(2026, 4, 20, 2, 0, tzinfo=UTC))
    town.tokens.clear()
    r = await api.post("/api/admin/v1/areas/ar_s1/credit-lists", await town.token("street"),
                       json={"period": "2026Q1"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "credit_scope"
    r = await api.post("/api/admin/v1/areas/ar_d1/credit-lists", await town.token("district_2"),
                       json={"period": "2026Q1"})
    assert r.status_code == 403
    r = await api.post("/api/admin/v1/areas/ar_d1/credit-lists", await town.token("district"),
                       json={"period": "2026Q1"})
    assert r.status_code == 201, r.text
    published = r.json()
    a, b = town.company_a, town.company_b
    assert published["red"] == [a] and published["black"] == [b]
    inputs = {row["company_id"]: row for row in published["inputs"]}
    assert inputs[a] == {"company_id": a, "company_name": "甲物业", "rating_sum": 14,
                         "rating_count": 3, "complaints_received": 2, "complaints_responded": 2,
                         "complaints_completed": 2, "satisfaction_sum": 5,
                         "satisfaction_count": 1, "disclosures_on_time": 2, "disclosures_due": 2}
    assert inputs[b]["complaints_received"] == 1 and inputs[b]["complaints_responded"] == 0
    assert inputs[b]["disclosures_due"] == 1 and inputs[b]["rating_sum"] == 2
    scores = {row["company_id"]: Fraction(row["score"]["num"], row["score"]["den"])
              for row in published["results"]}
    # A: 40·11/12 + 15 + 15 + 15 + 15; B: 40·1/4 over the 85 points it has data for.
    assert scores[a] == Fraction(40 * 11, 12) + 60
    assert scores[b] == Fraction(100 * 10, 85)
    assert published["results"][0]["score"]["display"] == "96.67"

    # Anyone holding the published record recomputes the same list and checks the signature.
    again = evaluate(published["inputs"], published["formula"])
    assert again == {"results": published["results"], "red": published["red"],
                     "black": published["black"]}
    keys = (await api.get("/api/mp/v1/disclosure-keys")).json()["keys"]
    public = {k["kid"]: base64.b64decode(k["public_key"]) for k in keys}
    record = {**published, "published_at": parse_time(published["published_at"])}
    assert verify(published["signature"], signed_list(record), public)

    r = await api.post("/api/admin/v1/areas/ar_d1/credit-lists", await town.token("district"),
                       json={"period": "2026Q1"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "credit_list_exists"
    owner = await town.owner("b1", "13900000201")
    assert (await api.get("/api/mp/v1/areas/ar_d1/credit-lists/2026Q1", owner)).json() == published
    mine = await api.get(f"/api/admin/v1/companies/{b}/credit", await town.token("property_b"))
    assert mine.status_code == 200
    assert mine.json()["evaluations"][0]["result"]["list"] == "black"
    assert mine.json()["evaluations"][0]["inputs"] == inputs[b]
    r = await api.get(f"/api/admin/v1/companies/{b}/credit", await town.token("property_a"))
    assert r.status_code == 403


async def test_half_yearly_city_list_sums_both_quarters(town: Town, clock: ManualClock) -> None:
    await build_quarter(town, clock)
    clock.set(datetime(2026, 7, 20, 2, 0, tzinfo=UTC))
    town.tokens.clear()
    r = await town.api.post("/api/admin/v1/areas/ar_d1/credit-lists",
                            await town.token("district"), json={"period": "2026H1"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "credit_scope"
    r = await town.api.post("/api/admin/v1/areas/ar_city/credit-lists", await town.token("city"),
                            json={"period": "2026H1"})
    assert r.status_code == 201, r.text
    published: dict[str, Any] = r.json()
    inputs = {row["company_id"]: row for row in published["inputs"]}
    # Q2 statements were never published: 2 of 4 due for A; B serves cm_b and cm_c: 0 of 4.
    assert (inputs[town.company_a]["disclosures_on_time"],
            inputs[town.company_a]["disclosures_due"]) == (2, 4)
    assert inputs[town.company_b]["disclosures_due"] == 4
    assert published["red"] == [] and published["black"] == [town.company_b]
    assert evaluate(published["inputs"], published["formula"])["results"] == published["results"]
