"""Complaints: owners file and confirm; the company, 社区 and street respond, resolve, escalate."""

from __future__ import annotations

from typing import Any

from handlers.base import Auth, Endpoint, Reply, Request
from server.access import require_mp, require_staff
from server.auth import Role
from server.complaints import Category, Level, State, complaint_to_json
from server.errors import Conflict, InvalidInput, NotFound
from server.periods import QUARTER_PATTERN, quarter_of
from server.validation import BOOL, ID, TIMESTAMP, array, enum, integer, obj, string

EVENT = obj({"at": TIMESTAMP, "action": string(), "actor": {"type": "object"},
             "from": string(0), "to": string(), "level": string(), "note": string(0, 1000)})
COMPLAINT = obj({"id": ID, "community_id": ID, "company_id": string(0, 64),
                 "category": enum(*Category), "text": string(1, 1000),
                 "photos": array({"type": "object"}), "unit_id": {"type": ["string", "null"]},
                 "state": enum(*State), "level": enum(*Level),
                 "handler_area_id": {"type": ["string", "null"]}, "version": integer(1),
                 "filed_at": TIMESTAMP, "due_at": {"type": ["string", "null"]},
                 "departments": array(string()), "satisfaction": {"type": ["integer", "null"]},
                 "events": array(EVENT)})
NOTE = obj({"note": string(1, 1000)})
STATS_ROW = obj({"received": integer(0), "responded": integer(0),
                 "responded_on_time": integer(0), "completed": integer(0),
                 "escalated": integer(0), "rated": integer(0), "satisfaction_sum": integer(0)},
                {"community_id": ID, "company_id": string(0, 64)})
QUARTER_QUERY = obj(optional={"quarter": string(6, 6, pattern=QUARTER_PATTERN)})


# -- owners ----------------------------------------------------------------------------------
async def file_complaint(req: Request) -> Any:
    user = require_mp(req.principal)
    community = await req.services.access.mp_community(user, req.args["community_id"])
    b = req.body
    result = await req.services.duties.complaints.file(
        user, community, Category(b["category"]), b["text"], b.get("photos", []),
        b.get("unit_id"))
    return Reply(status=201, body=result)


async def my_complaints(req: Request) -> Any:
    return {"complaints": await req.services.duties.complaints.mine(require_mp(req.principal))}


async def _own(req: Request) -> dict[str, Any]:
    user = require_mp(req.principal)
    doc = await req.services.duties.complaints.get(req.args["complaint_id"])
    if doc["filed_by"] != user.user_id:
        raise NotFound("投诉不存在", code="complaint_not_found")
    return doc


async def my_complaint(req: Request) -> Any:
    return complaint_to_json(await _own(req), for_owner=True)


async def confirm(req: Request) -> Any:
    doc = await _own(req)
    b = req.body
    if b["accept"] and "rating" not in b:
        raise InvalidInput(fields={"rating": "确认办结时须评价"})
    updated = await req.services.duties.complaints.confirm(
        doc, require_mp(req.principal), b["accept"], b.get("rating", 0), b.get("note", ""))
    return complaint_to_json(updated, for_owner=True)


# -- handlers: company, 社区, street ------------------------------------------------------------
async def _readable(req: Request) -> dict[str, Any]:
    doc = await req.services.duties.complaints.get(req.args["complaint_id"])
    await req.services.access.staff_community(req.principal, doc["community_id"])
    return doc


async def _handled_by_caller(req: Request) -> dict[str, Any]:
    """The complaint, if the caller handles it at its current level."""
    doc = await _readable(req)
    if doc["level"] == Level.PROPERTY:
        await req.services.access.staff_community(req.principal, doc["community_id"],
                                                  (Role.PROPERTY,))
    else:
        await req.services.access.staff_area(req.principal, doc["handler_area_id"])
    return doc


async def admin_get(req: Request) -> Any:
    return complaint_to_json(await _readable(req))


async def admin_list(req: Request) -> Any:
    community = await req.services.access.staff_community(req.principal, req.args["community_id"])
    return {"complaints": await req.services.duties.complaints.of_community(
        community.id, req.query.get("state"), req.query.get("level"))}


async def respond(req: Request) -> Any:
    doc = await _handled_by_caller(req)
    return complaint_to_json(await req.services.duties.complaints.respond(
        doc, require_staff(req.principal), req.body["note"]))


async def resolve(req: Request) -> Any:
    doc = await _handled_by_caller(req)
    return complaint_to_json(await req.services.duties.complaints.resolve(
        doc, require_staff(req.principal), req.body["note"]))


async def escalate(req: Request) -> Any:
    doc = await _handled_by_caller(req)
    updated = await req.services.duties.complaints.escalate(doc, require_staff(req.principal),
                                                            req.body["note"])
    if updated is None:
        raise Conflict("投诉已被他人处理，请刷新", code="complaint_changed")
    return complaint_to_json(updated)


async def assign(req: Request) -> Any:
    doc = await _handled_by_caller(req)
    return complaint_to_json(await req.services.duties.complaints.assign(
        doc, require_staff(req.principal), req.body["departments"], req.body["note"]))


async def moderate(req: Request) -> Any:
    doc = await req.services.duties.complaints.get(req.args["complaint_id"])
    await req.services.access.staff_community(req.principal, doc["community_id"],
                                              (Role.OFFICIAL, Role.PLATFORM_ADMIN))
    return complaint_to_json(await req.services.duties.complaints.moderate(
        doc, require_staff(req.principal), req.body["approve"], req.body["note"]))


async def set_contacts(req: Request) -> Any:
    community = await req.services.access.staff_community(
        req.principal, req.args["community_id"], (Role.PROPERTY,))
    user_ids = req.body["user_ids"]
    found = await req.services.store.db["users"].count_documents({"_id": {"$in": user_ids}})
    if found != len(set(user_ids)):
        raise InvalidInput(fields={"user_ids": "含有不存在的用户"})
    await req.services.duties.complaints.set_contacts(community.id, user_ids)
    await req.services.audit.record(req.principal, "complaint.contacts", community_id=community.id,
                                    target=community.id, detail={"user_ids": user_ids})
    return {"user_ids": user_ids}


def _quarter(req: Request) -> str:
    return req.query.get("quarter") or quarter_of(req.services.clock.now())


async def community_stats(req: Request) -> Any:
    community = await req.services.access.staff_community(req.principal, req.args["community_id"])
    rows = await req.services.duties.complaints.stats(
        {"community_id": community.id, "quarter": _quarter(req)}, ("community_id", "company_id"))
    return {"quarter": _quarter(req), "rows": rows}


async def area_stats(req: Request) -> Any:
    area = await req.services.access.staff_area(req.principal, req.args["area_id"])
    match = {"area_path": area["_id"], "quarter": _quarter(req)}
    complaints = req.services.duties.complaints
    return {"quarter": _quarter(req),
            "by_community": await complaints.stats(match, ("community_id", "company_id")),
            "by_company": await complaints.stats(match, ("company_id",))}


A = "/api/admin/v1/complaints/{complaint_id}"
T = "complaints"

endpoints = [
    Endpoint("POST", "/api/mp/v1/communities/{community_id}/complaints", file_complaint, Auth.MP,
             "提交投诉（文字经内容安全检测；照片先上传为附件）", COMPLAINT,
             body=obj({"category": enum(*Category), "text": string(5, 1000)},
                      {"photos": array(ID, 0, 9), "unit_id": ID}), status=201, tag="mp"),
    Endpoint("GET", "/api/mp/v1/complaints", my_complaints, Auth.MP, "我的投诉",
             obj({"complaints": array(COMPLAINT)}), tag="mp"),
    Endpoint("GET", "/api/mp/v1/complaints/{complaint_id}", my_complaint, Auth.MP,
             "投诉详情与处理记录", COMPLAINT, tag="mp"),
    Endpoint("POST", "/api/mp/v1/complaints/{complaint_id}/confirmation", confirm, Auth.MP,
             "确认办结并评价，或不满意退回", COMPLAINT,
             body=obj({"accept": BOOL}, {"rating": integer(1, 5), "note": string(0, 500)}),
             tag="mp"),
    Endpoint("GET", "/api/admin/v1/communities/{community_id}/complaints", admin_list, Auth.ADMIN,
             "小区投诉列表", obj({"complaints": array(COMPLAINT)}),
             query=obj(optional={"state": enum(*State), "level": enum(*Level)}), tag=T),
    Endpoint("GET", A, admin_get, Auth.ADMIN, "投诉详情与全部处理记录", COMPLAINT, tag=T),
    Endpoint("POST", A + "/response", respond, Auth.ADMIN, "响应投诉（报到）", COMPLAINT,
             body=NOTE, tag=T),
    Endpoint("POST", A + "/resolution", resolve, Auth.ADMIN, "办结投诉", COMPLAINT, body=NOTE,
             tag=T),
    Endpoint("POST", A + "/escalation", escalate, Auth.ADMIN, "上报上一级（吹哨）", COMPLAINT,
             body=NOTE, tag=T),
    Endpoint("POST", A + "/assignment", assign, Auth.ADMIN, "街道指派部门（部门报到）", COMPLAINT,
             body=obj({"departments": array(string(1, 40), 1, 10), "note": string(1, 1000)}),
             tag=T),
    Endpoint("POST", A + "/moderation", moderate, Auth.ADMIN, "人工审核待审投诉", COMPLAINT,
             body=obj({"approve": BOOL, "note": string(1, 1000)}), tag=T),
    Endpoint("PUT", "/api/admin/v1/communities/{community_id}/complaint-contacts", set_contacts,
             Auth.ADMIN, "物业接收投诉通知的小程序用户", obj({"user_ids": array(ID)}),
             body=obj({"user_ids": array(ID, 0, 20, uniqueItems=True)}), tag=T),
    Endpoint("GET", "/api/admin/v1/communities/{community_id}/complaint-stats", community_stats,
             Auth.ADMIN, "小区投诉响应率与办结率（按季度）",
             obj({"quarter": string(), "rows": array(STATS_ROW)}), query=QUARTER_QUERY, tag=T),
    Endpoint("GET", "/api/admin/v1/areas/{area_id}/complaint-stats", area_stats, Auth.ADMIN,
             "辖区投诉响应率与办结率：按小区、按企业",
             obj({"quarter": string(), "by_community": array(STATS_ROW),
                  "by_company": array(STATS_ROW)}), query=QUARTER_QUERY, tag=T),
]
