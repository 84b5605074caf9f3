"""Complaints: filing, notices, handling, whistle-and-report escalation exactly once, rates."""

from __future__ import annotations

import asyncio
import base64
import subprocess
from datetime import timedelta
import sys
from pathlib import Path
from typing import Any

from server.clock import ManualClock, iso
from server.db import Store, connect
from server.services import build_services
from tests.community.conftest import PHONE_V, PHONE_W, TEMPLATE, Town

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 40
A_OWNERS = [f"139{100 + i:08d}" for i in range(1, 7)]
B_OWNERS = [f"139{200 + i:08d}" for i in range(1, 7)]


async def file(town: Town, token: str, community: str = "cm_r", text: str = "楼道里有人把电动车推上楼充电",
               category: str = "ebike_upstairs", **extra: Any) -> Any:
    r = await town.api.post(f"/api/mp/v1/communities/{community}/complaints", token,
                            json={"category": category, "text": text, **extra})
    return r


async def act(town: Town, who: str, complaint_id: str, step: str, **body: Any) -> Any:
    return await town.api.post(f"/api/admin/v1/complaints/{complaint_id}/{step}",
                               await town.token(who), json=body or {"note": f"{who} {step}"})


async def test_a_complaint_from_filing_to_confirmation_is_notified_time_stamped_and_audited(
        town: Town, clock: ManualClock) -> None:
    api, fake = town.api, town.api.fake
    duty = await api.mp_login("property-duty")
    duty_id = (await api.get("/api/mp/v1/me", duty)).json()["user_id"]
    fake.grant_subscribe("property-duty", TEMPLATE, times=5)
    r = await api.call("PUT", "/api/admin/v1/communities/cm_r/complaint-contacts",
                       await town.token("property_a"), json={"user_ids": [duty_id]})
    assert r.status_code == 200, r.text
    owner = await town.owner("w", PHONE_W)
    fake.grant_subscribe("w", TEMPLATE, times=1)  # the owner accepted one progress message
    photo = await api.post("/api/mp/v1/communities/cm_r/attachments", owner,
                           json={"name": "楼道.png",
                                 "content_base64": base64.b64encode(PNG).decode()})
    assert photo.status_code == 201, photo.text
    r = await file(town, owner, photos=[photo.json()["id"]])
    assert r.status_code == 201, r.text
    c = r.json()
    assert c["state"] == "open" and c["level"] == "property"
    assert c["due_at"] == iso(clock.now() + timedelta(hours=24))
    assert [m.openid for m in fake.sent_messages] == ["property-duty"]

    clock.advance(hours=2)
    r = await act(town, "property_a", c["id"], "response", note="已安排保安劝阻")
    assert r.status_code == 200 and r.json()["state"] == "responded"
    clock.advance(hours=5)
    r = await act(town, "property_a", c["id"], "resolution", note="已清理并张贴告示")
    assert r.status_code == 200 and r.json()["state"] == "resolved"
    # One accepted message: the response reached the owner; the resolution hit 43101 quietly.
    assert [m.openid for m in fake.sent_messages] == ["property-duty", "w"]
    notices = await api.services.store.db["complaint_notices"].find(
        {"complaint_id": c["id"]}).sort("at", 1).to_list(None)
    assert [n["outcome"] for n in notices] == ["sent", "sent", "no_quota"]

    r = await api.post(f"/api/mp/v1/complaints/{c['id']}/confirmation", owner,
                       json={"accept": True})
    assert r.status_code == 400 and r.json()["error"]["fields"] == {"rating": "确认办结时须评价"}
    r = await api.post(f"/api/mp/v1/complaints/{c['id']}/confirmation", owner,
                       json={"accept": True, "rating": 4, "note": "满意"})
    assert r.status_code == 200 and r.json()["state"] == "closed" and r.json()["satisfaction"] == 4
    events = r.json()["events"]
    assert [e["action"] for e in events] == ["file", "respond", "resolve", "confirm"]
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    assert all("id" not in e["actor"] for e in events)  # owners see who acted by kind only
    staff_view = (await api.get(f"/api/admin/v1/complaints/{c['id']}",
                                await town.token("committee_r"))).json()
    assert staff_view["events"][1]["actor"]["name"] == "property_a"
    audit = await api.services.store.db["audit"].find({"target": c["id"]}).to_list(None)
    assert sorted(a["action"] for a in audit) == ["complaint.confirm", "complaint.file",
                                                 "complaint.resolve", "complaint.respond"]
    r = await act(town, "property_a", c["id"], "response", note="again")
    assert r.status_code == 409 and r.json()["error"]["code"] == "complaint_wrong_state"


async def test_risky_text_is_refused_and_text_for_review_is_held_until_moderated(
        town: Town) -> None:
    api = town.api
    owner = await town.owner("w", PHONE_W)
    api.fake.ban_word("炸掉")
    r = await file(town, owner, text="再不处理就把车棚炸掉")
    assert r.status_code == 400 and r.json()["error"]["code"] == "content_risky"
    r = await file(town, owner, category="noise", text="x")
    assert r.status_code == 400
    assert set(r.json()["error"]["fields"]) == {"category", "text"}
    r = await file(town, owner, photos=["at_nope"])
    assert r.status_code == 400 and r.json()["error"]["fields"] == {
        "photos[0]": "附件不存在或不属于该小区"}
    assert await api.services.store.db["complaints"].count_documents({}) == 0
    api.fake.flag_word_for_review("开发商")
    r = await file(town, owner, text="开发商占用公共绿地建了售楼处", category="common_facilities")
    assert r.status_code == 201 and r.json()["state"] == "held" and r.json()["due_at"] is None
    r2 = await act(town, "property_a", r.json()["id"], "response", note="x")
    assert r2.status_code == 409
    r2 = await act(town, "street", r.json()["id"], "moderation", approve=True, note="内容属实")
    assert r2.status_code == 200 and r2.json()["state"] == "open" and r2.json()["due_at"]


async def _overdue_complaints(town: Town, n: int) -> list[str]:
    owners = [await town.owner("w", PHONE_W), await town.owner("v", PHONE_V)]
    ids = []
    for i in range(n):
        r = await file(town, owners[i % 2], text=f"第{i}号投诉：地下车库长期被占用")
        assert r.status_code == 201
        ids.append(r.json()["id"])
    return ids


async def _second_process_services(town: Town, store: Store, uri: str) -> Any:
    """Another server instance: its own client and connection pool on the same database."""
    other = connect(uri, store.db.name)
    services = build_services(town.api.services.settings, other, town.api.services.clock,
                              town.api.services.wechat)
    return other, services


async def test_unanswered_complaints_escalate_on_schedule_exactly_once_with_two_sweepers(
        town: Town, clock: ManualClock, store: Store, store_uri: str) -> None:
    ids = await _overdue_complaints(town, 12)
    first = town.api.services
    other, second = await _second_process_services(town, store, store_uri)
    try:
        clock.advance(hours=23, minutes=59)
        sweeps = await asyncio.gather(first.duties.sweep(), second.duties.sweep())
        assert [s["escalated"] for s in sweeps] == [0, 0]  # one minute before the limit
        assert await first.store.db["complaints"].count_documents({"level": "shequ"}) == 0
        clock.advance(minutes=2)  # past the 24-hour response limit
        moved = await asyncio.gather(*(s.duties.complaints.escalate_overdue()
                                       for s in (first, second, first, second)))
        assert sum(moved) == len(ids)
        docs = await first.store.db["complaints"].find({"_id": {"$in": ids}}).to_list(None)
        for doc in docs:
            assert doc["level"] == "shequ" and doc["handler_area_id"] == "ar_q1"
            assert [e["action"] for e in doc["events"]] == ["file", "escalate"]
            assert doc["version"] == 2
        assert sum(await asyncio.gather(first.duties.complaints.escalate_overdue(),
                                        second.duties.complaints.escalate_overdue())) == 0
        # The 社区 does not respond either: one more limit later it reaches the street, once.
        clock.advance(hours=24, minutes=1)
        moved = await asyncio.gather(first.duties.complaints.escalate_overdue(),
                                     second.duties.complaints.escalate_overdue())
        assert sum(moved) == len(ids)
        clock.advance(days=10)  # the street is the top: nothing further happens by itself
        assert await second.duties.complaints.escalate_overdue() == 0
        for doc in await first.store.db["complaints"].find({"_id": {"$in": ids}}).to_list(None):
            assert [e["action"] for e in doc["events"]] == ["file", "escalate", "escalate"]
            assert doc["level"] == "street" and doc["handler_area_id"] == "ar_s1"
    finally:
        await other.close()


async def test_two_real_processes_sweeping_together_escalate_each_complaint_once(
        town: Town, clock: ManualClock, store: Store, store_uri: str) -> None:
    ids = await _overdue_complaints(town, 20)
    at = iso(clock.advance(hours=25))
    cmd = [sys.executable, "-m", "tests.community.sweeper_process", store_uri, store.db.name, at]
    procs = [await asyncio.create_subprocess_exec(*cmd, cwd=ROOT, stdout=subprocess.PIPE,
                                                  stderr=subprocess.PIPE) for _ in range(2)]
    outputs = [await p.communicate() for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1].decode()[-2000:] for o in outputs]
    counts = [int(o[0].decode().strip()) for o in outputs]
    assert sum(counts) == len(ids), counts
    for doc in await store.db["complaints"].find({"_id": {"$in": ids}}).to_list(None):
        assert [e["action"] for e in doc["events"]] == ["file", "escalate"]


async def test_whistle_and_report_chain_with_departments_and_scope(town: Town) -> None:
    owner = await town.owner("w", PHONE_W)
    c = (await file(town, owner, category="illegal_construction", text="顶楼住户私搭阳光房")).json()
    r = await act(town, "property_b", c["id"], "response")
    assert r.status_code == 403  # not the company serving this community
    r = await act(town, "property_a", c["id"], "escalation", note="违建须执法部门处理")
    assert r.status_code == 200 and r.json()["level"] == "shequ"
    r = await act(town, "property_a", c["id"], "response")
    assert r.status_code == 403  # now the 社区 handles it
    r = await act(town, "street", c["id"], "assignment", departments=["城管执法"], note="x")
    assert r.status_code == 409 and r.json()["error"]["code"] == "complaint_not_at_street"
    r = await act(town, "shequ", c["id"], "escalation", note="吹哨：请街道协调执法")
    assert r.status_code == 200 and r.json()["level"] == "street"
    r = await act(town, "street", c["id"], "assignment", departments=["城管执法", "住建"],
                  note="部门报到")
    assert r.status_code == 200 and r.json()["departments"] == ["住建", "城管执法"]
    r = await act(town, "street", c["id"], "escalation", note="x")
    assert r.status_code == 409 and r.json()["error"]["code"] == "complaint_top_level"
    r = await act(town, "street", c["id"], "resolution", note="已拆除")
    assert r.status_code == 200 and r.json()["state"] == "resolved"
    r = await town.api.post(f"/api/mp/v1/complaints/{c['id']}/confirmation", owner,
                            json={"accept": False, "note": "只拆了一半"})
    assert r.status_code == 200 and r.json()["state"] == "responded"
    assert r.json()["level"] == "street"
    stranger = await town.owner("a1", A_OWNERS[0])
    assert (await town.api.get(f"/api/mp/v1/complaints/{c['id']}", stranger)).status_code == 404
    r = await town.api.get(f"/api/admin/v1/complaints/{c['id']}", await town.token("committee_a"))
    assert r.status_code == 403
    r = await town.api.get("/api/admin/v1/communities/cm_r/complaints?state=responded",
                           await town.token("committee_r"))
    assert [x["id"] for x in r.json()["complaints"]] == [c["id"]]


async def test_response_and_completion_rates_are_exact(town: Town, clock: ManualClock) -> None:
    api = town.api
    a = [await town.owner(f"a{i}", A_OWNERS[i]) for i in range(4)]
    b0 = await town.owner("b0", B_OWNERS[0])
    w, v = await town.owner("w", PHONE_W), await town.owner("v", PHONE_V)
    ca = [(await file(town, t, community="cm_a", text=f"保洁不到位 {i}", category="service")).json()
          for i, t in enumerate(a)]
    cr = [(await file(town, t, text="车辆乱停乱放堵塞消防通道", category="parking")).json()
          for t in (w, v)]
    cb = (await file(town, b0, community="cm_b", text="公共收益从未公开过", category="common_income")
          ).json()
    # cm_a: two answered on time (one closed with 5 stars, one resolved), one late, one never.
    for c in ca[:2]:
        assert (await act(town, "property_a", c["id"], "response")).status_code == 200
        assert (await act(town, "property_a", c["id"], "resolution")).status_code == 200
    r = await api.post(f"/api/mp/v1/complaints/{ca[0]['id']}/confirmation", a[0],
                       json={"accept": True, "rating": 5})
    assert r.status_code == 200
    # cm_r: one resolved but the owner reopened it; cm_b: resolved at once.
    assert (await act(town, "property_a", cr[0]["id"], "resolution")).status_code == 200
    r = await api.post(f"/api/mp/v1/complaints/{cr[0]['id']}/confirmation", w,
                       json={"accept": False, "note": "车还在"})
    assert r.status_code == 200
    assert (await act(town, "property_b", cb["id"], "resolution")).status_code == 200
    clock.advance(hours=30)
    town.tokens.clear()
    assert (await act(town, "property_a", ca[2]["id"], "response")).status_code == 200

    token = await town.token("street")
    r = await api.get("/api/admin/v1/areas/ar_s1/complaint-stats?quarter=2026Q2", token)
    assert r.status_code == 200, r.text
    rows = {x["community_id"]: x for x in r.json()["by_community"]}
    zero = {"escalated": 0}
    assert rows["cm_a"] == {"community_id": "cm_a", "company_id": town.company_a, "received": 4,
                            "responded": 3, "responded_on_time": 2, "completed": 2, "rated": 1,
                            "satisfaction_sum": 5, **zero}
    assert rows["cm_r"] == {"community_id": "cm_r", "company_id": town.company_a, "received": 2,
                            "responded": 1, "responded_on_time": 1, "completed": 0, "rated": 0,
                            "satisfaction_sum": 0, **zero}
    assert rows["cm_b"]["received"] == 1 and rows["cm_b"]["completed"] == 1
    companies = {x["company_id"]: x for x in r.json()["by_company"]}
    assert companies[town.company_a] == {"company_id": town.company_a, "received": 6,
                                         "responded": 4, "responded_on_time": 3, "completed": 2,
                                         "rated": 1, "satisfaction_sum": 5, **zero}
    r = await api.get("/api/admin/v1/communities/cm_b/complaint-stats?quarter=2026Q2",
                      await town.token("committee_a"))
    assert r.status_code == 403
    r = await api.get("/api/admin/v1/areas/ar_s1/complaint-stats?quarter=2026Q1", token)
    assert r.json()["by_community"] == []


async def test_a_step_whose_claimer_died_is_finished_by_the_next_reader(
        town: Town, clock: ManualClock) -> None:
    owner = await town.owner("w", PHONE_W)
    c = (await file(town, owner)).json()
    complaints = town.api.services.duties.complaints
    doc = await complaints.get(c["id"])
    # Simulate a process that claimed the step and died before applying it.
    await complaints.steps.insert_one({
        "_id": f"{c['id']}#1", "complaint_id": c["id"], "from_version": 1, "at": clock.now(),
        "set": {"state": "responded", "level": "property", "version": 2},
        "event": {**doc["events"][0], "action": "respond", "from": "open", "to": "responded"}})
    assert (await complaints.get(c["id"]))["version"] == 1  # the claimer may still be working
    r = await act(town, "property_a", c["id"], "response")
    assert r.status_code == 409 and r.json()["error"]["code"] == "complaint_changed"
    clock.advance(minutes=2)
    finished = await complaints.get(c["id"])
    assert finished["version"] == 2 and finished["state"] == "responded"
    assert [e["action"] for e in finished["events"]] == ["file", "respond"]
