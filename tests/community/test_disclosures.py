"""三公开: balanced statements, versions with history, signatures, who may read, attachments."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from server.clock import ManualClock
from tests.community.conftest import Town
from voting.signing import verify

A = "/api/admin/v1/communities/cm_a/disclosures"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def statement(**changes: Any) -> dict[str, Any]:
    content = {
        "income_lines": [{"item": "电梯广告", "category": "advertising", "amount_fen": 120000},
                         {"item": "地面停车", "category": "parking", "amount_fen": 350000}],
        "cost_lines": [{"item": "停车管理人工", "amount_fen": 50000}],
        "total_income_fen": 470000, "total_cost_fen": 50000, "balance_fen": 420000,
        "carried_over_fen": 0, "closing_balance_fen": 420000,
    }
    content.update(changes)
    return content


async def publish_income(town: Town, content: dict[str, Any], period: str = "2026Q1",
                         who: str = "property_a", publisher: str = "property",
                         **extra: Any) -> Any:
    return await town.api.post(f"{A}/{publisher}/common-income/{period}", await town.token(who),
                               json={"content": content, **extra})


async def test_statement_that_does_not_add_up_is_refused_with_the_offending_line(
        town: Town) -> None:
    r = await publish_income(town, statement(total_income_fen=470001))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "statement_unbalanced"
    assert r.json()["error"]["fields"] == {"content.total_income_fen": "应等于收入明细合计 470000 分"}
    r = await publish_income(town, statement(closing_balance_fen=400000))
    assert r.status_code == 400
    assert list(r.json()["error"]["fields"]) == ["content.closing_balance_fen"]
    assert await town.api.services.store.db["disclosures"].count_documents({}) == 0


async def test_bad_input_names_every_field_path_and_writes_nothing(town: Town) -> None:
    bad = statement()
    bad["income_lines"][1]["amount_fen"] = -5
    bad["cost_lines"][0]["colour"] = "red"
    r = await publish_income(town, bad)
    assert r.status_code == 400
    assert r.json()["error"]["fields"] == {"content.income_lines[1].amount_fen": "应不小于 0",
                                           "content.cost_lines[0].colour": "不允许的字段"}
    r = await publish_income(town, statement(), period="2026Q9")
    assert r.status_code == 400 and "period" in r.json()["error"]["fields"]
    r = await publish_income(town, statement(), period="2026Q2")  # not over yet
    assert r.status_code == 400 and r.json()["error"]["code"] == "period_not_over"
    assert await town.api.services.store.db["disclosures"].count_documents({}) == 0


def signed_payload_of(d: dict[str, Any]) -> dict[str, Any]:
    """What a reader rebuilds from the published JSON to check the signature independently."""
    return {"type": "disclosure", "community_id": d["community_id"], "company_id": d["company_id"],
            "publisher": d["publisher"], "kind": d["kind"], "period": d["period"] or "",
            "version": d["version"], "reason": d["reason"], "content": d["content"],
            "attachments": d["attachments"], "published_at": d["published_at"],
            "previous_sha256": d["previous_sha256"]}


async def test_correction_is_a_new_signed_version_and_the_first_stays_in_history(
        town: Town) -> None:
    first = await publish_income(town, statement())
    assert first.status_code == 201, first.text
    v1 = first.json()
    r = await publish_income(town, statement())
    assert r.status_code == 409 and r.json()["error"]["code"] == "disclosure_exists"
    fixed = statement(cost_lines=[{"item": "停车管理人工", "amount_fen": 60000}],
                      total_cost_fen=60000, balance_fen=410000, closing_balance_fen=410000)
    r = await publish_income(town, fixed, corrects_version=1)
    assert r.status_code == 400 and r.json()["error"]["fields"] == {"reason": "更正须说明理由"}
    r = await publish_income(town, fixed, corrects_version=1, reason="人工费漏记一笔")
    assert r.status_code == 201, r.text
    v2 = r.json()
    assert v2["version"] == 2 and v2["previous_sha256"] == v1["payload_sha256"]
    r = await publish_income(town, fixed, corrects_version=1, reason="again")
    assert r.status_code == 409 and r.json()["error"]["code"] == "disclosure_stale_version"

    token = await town.token("committee_a")
    got = (await town.api.get(f"/api/admin/v1/disclosures/{v2['id']}", token)).json()
    assert [h["version"] for h in got["history"]] == [1, 2]
    assert got["history"][0]["id"] == v1["id"] and got["signature_valid"] is True
    old = (await town.api.get(f"/api/admin/v1/disclosures/{v1['id']}", token)).json()
    assert old["content"] == statement()  # never edited in place
    listed = (await town.api.get(A, token)).json()["disclosures"]
    assert [(d["kind"], d["version"]) for d in listed] == [("common_income", 2)]

    keys = (await town.api.get("/api/mp/v1/disclosure-keys")).json()["keys"]
    public = {k["kid"]: base64.b64decode(k["public_key"]) for k in keys}
    for doc in (got, old):
        assert verify(doc["signature"], signed_payload_of(doc), public)
        tampered = {**signed_payload_of(doc), "content": statement(carried_over_fen=1)}
        assert not verify(doc["signature"], tampered, public)


async def test_an_owner_of_another_community_can_read_neither_version(town: Town) -> None:
    v1 = (await publish_income(town, statement())).json()
    v2 = (await publish_income(town, statement(), corrects_version=1, reason="补充说明")).json()
    own = await town.owner("owner-a1", "13900000101")
    other = await town.owner("owner-b1", "13900000201")
    for doc in (v1, v2):
        r = await town.api.get(f"/api/mp/v1/disclosures/{doc['id']}", own)
        assert r.status_code == 200 and r.json()["version"] == doc["version"]
        r = await town.api.get(f"/api/mp/v1/disclosures/{doc['id']}", other)
        assert r.status_code == 403 and r.json()["error"]["code"] == "out_of_scope"
    assert (await town.api.get("/api/mp/v1/communities/cm_a/disclosures", other)).status_code == 403
    r = await town.api.get("/api/mp/v1/communities/cm_a/disclosures", own)
    assert [d["version"] for d in r.json()["disclosures"]] == [2]
    r = await town.api.get(f"/api/admin/v1/disclosures/{v1['id']}", await town.token("committee_b"))
    assert r.status_code == 403


async def test_company_and_committee_publish_separately_each_only_as_itself(town: Town) -> None:
    r = await publish_income(town, statement(), who="committee_a", publisher="property")
    assert r.status_code == 403
    r = await publish_income(town, statement(), who="property_b")
    assert r.status_code == 403
    r = await publish_income(town, statement(), who="committee_b", publisher="committee")
    assert r.status_code == 403
    r = await publish_income(town, statement(), who="committee_a", publisher="committee")
    assert r.status_code == 201 and r.json()["publisher"] == "committee"
    r = await publish_income(town, statement())
    assert r.status_code == 201 and r.json()["version"] == 1
    r = await publish_income(town, statement(), publisher="owners")
    assert r.status_code == 400 and "publisher" in r.json()["error"]["fields"]


async def test_carried_over_balance_must_be_the_previous_closing_balance(town: Town) -> None:
    assert (await publish_income(town, statement(), period="2025Q4")).status_code == 201
    r = await publish_income(town, statement())
    assert r.status_code == 400
    assert r.json()["error"]["fields"] == {
        "content.carried_over_fen": "应等于上期（2025Q4）期末结余 420000 分"}
    ok = statement(carried_over_fen=420000, closing_balance_fen=840000)
    assert (await publish_income(town, ok)).status_code == 201


async def test_standards_and_channels_are_structured(town: Town) -> None:
    token = await town.token("property_a")
    standards = {"service_level": "二级",
                 "items": [{"name": "保洁", "standard": "楼道每日清扫一次", "frequency": "每日"}],
                 "fee_standards": [{"item": "物业服务费", "unit": "per_m2_month", "price_fen": 120,
                                    "basis": "government_guided"}]}
    r = await town.api.post(f"{A}/property/service-standards", token, json={"content": standards})
    assert r.status_code == 201, r.text
    assert r.json()["period"] is None
    channels = {"phones": [{"label": "物业服务中心", "number": "0632-5551234"}],
                "hours": "8:00-18:00", "responsible": [{"name": "张经理", "role": "项目经理"}],
                "city_hotline": "12345", "response_promise_hours": 24}
    r = await town.api.post(f"{A}/property/complaint-channels", token,
                            json={"content": {**channels, "hours": ""}})
    assert r.status_code == 400 and r.json()["error"]["fields"] == {
        "content.hours": "长度应至少为 1 个字符"}
    r = await town.api.post(f"{A}/property/complaint-channels", token, json={"content": channels})
    assert r.status_code == 201


async def test_attachments_are_sniffed_hashed_limited_and_scoped(town: Town) -> None:
    token = await town.token("property_a")
    up = "/api/admin/v1/communities/cm_a/attachments"
    r = await town.api.post(up, token, json={"name": "x.png",
                                             "content_base64": base64.b64encode(b"hello").decode()})
    assert r.status_code == 400 and r.json()["error"]["code"] == "attachment_type"
    big = base64.b64encode(b"%PDF-" + b"0" * (2 * 1024 * 1024 - 4)).decode()  # 2 MiB + 1
    r = await town.api.post(up, token, json={"name": "big.pdf", "content_base64": big})
    assert r.status_code == 413 and r.json()["error"]["code"] == "attachment_too_large"
    r = await town.api.post(up, token, json={"name": "票据.png",
                                             "content_base64": base64.b64encode(PNG).decode()})
    assert r.status_code == 201, r.text
    att = r.json()
    assert att["sha256"] == hashlib.sha256(PNG).hexdigest() and att["content_type"] == "image/png"
    assert att["size"] == len(PNG)
    r = await publish_income(town, statement(), attachments=[att["id"]])
    assert r.status_code == 201 and r.json()["attachments"] == [att]
    other = await town.api.post("/api/admin/v1/communities/cm_b/attachments",
                                await town.token("property_b"),
                                json={"name": "b.png", "content_base64": base64.b64encode(
                                    PNG + b"b").decode()})
    r = await publish_income(town, statement(), period="2025Q4", attachments=[other.json()["id"]])
    assert r.status_code == 400 and r.json()["error"]["fields"] == {
        "attachments[0]": "附件不存在或不属于该小区"}
    own = await town.owner("owner-a1", "13900000101")
    stranger = await town.owner("owner-b1", "13900000201")
    r = await town.api.get(f"/api/mp/v1/attachments/{att['id']}", own)
    assert r.status_code == 200 and r.content == PNG
    assert r.headers["content-type"] == "image/png"
    assert (await town.api.get(f"/api/mp/v1/attachments/{att['id']}", stranger)).status_code == 403


async def test_currency_tracks_the_quarter_statement_deadline(town: Town,
                                                              clock: ManualClock) -> None:
    token = await town.token("street")
    r = await town.api.get("/api/admin/v1/areas/ar_s1/disclosure-currency", token)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["quarter"] == "2026Q1" and body["income_due_at"] == "2026-04-15T16:00:00Z"
    assert {c["income_status"] for c in body["communities"]} == {"not_due"}
    assert (await publish_income(town, statement())).status_code == 201
    clock.advance(days=20)
    town.tokens.clear()  # staff sessions last 8 hours
    token = await town.token("street")
    body = (await town.api.get("/api/admin/v1/areas/ar_s1/disclosure-currency", token)).json()
    status = {(c["community_id"], c["publisher"]): c["income_status"] for c in body["communities"]}
    assert status == {("cm_a", "property"): "on_time", ("cm_a", "committee"): "missing",
                      ("cm_b", "property"): "missing", ("cm_b", "committee"): "missing",
                      ("cm_r", "property"): "missing", ("cm_r", "committee"): "missing"}
    r = await town.api.get("/api/admin/v1/areas/ar_s1/disclosure-currency",
                           await town.token("street_2"))
    assert r.status_code == 403
