"""Binding WeChat users to units: requests, decisions, family and tenant invites."""

from __future__ import annotations

from typing import Any

from handlers.base import Auth, Endpoint, Reply, Request
from handlers.session import BINDING
from server.access import require_mp, require_staff
from server.accounts import BindingRole
from server.auth import Role
from server.errors import NotFound
from server.registry import unit_to_json
from server.validation import BOOL, ID, TIMESTAMP, array, enum, obj, string

SHA256 = string(64, 64, pattern="^[0-9a-f]{64}$")


async def lookup_unit(req: Request) -> Any:
    require_mp(req.principal)
    community = await req.services.registry.community(req.args["community_id"])
    unit = await req.services.registry.find_unit(community.id, req.query["building"],
                                                 req.query["number"])
    # Only what the user typed is confirmed; no owner data leaves the registry here.
    return {"unit_id": unit["_id"], "community_id": community.id, "community_name": community.name}


async def my_unit(req: Request) -> Any:
    user = require_mp(req.principal)
    bindings = await req.services.access.owner_bindings(user, roles=("owner", "family", "tenant"))
    if not any(b["unit_id"] == req.args["unit_id"] for b in bindings):
        raise NotFound("未找到该房屋", code="unit_not_found")
    return unit_to_json(await req.services.registry.unit(req.args["unit_id"]))


async def request_binding(req: Request) -> Any:
    b = req.body
    result = await req.services.accounts.request_binding(
        require_mp(req.principal), b["unit_id"], b["owner_name"], b["id_last4"],
        b.get("evidence_sha256", ""), b.get("note", ""))
    return Reply(status=201, body=result)


async def invite(req: Request) -> Any:
    result = await req.services.accounts.invite(
        require_mp(req.principal), req.args["unit_id"], BindingRole(req.body["role"]),
        req.body.get("can_pay", False))
    return Reply(status=201, body=result)


async def accept_invite(req: Request) -> Any:
    user = require_mp(req.principal)
    result = await req.services.accounts.accept_invite(user, req.args["code"])
    req.services.access.forget(user.user_id)
    return Reply(status=201, body=result)


async def pending(req: Request) -> Any:
    community = await req.services.access.staff_community(
        req.principal, req.args["community_id"], (Role.COMMITTEE, Role.PROPERTY, Role.PLATFORM_ADMIN))
    return {"requests": await req.services.accounts.pending(community.id)}


async def decide(req: Request) -> Any:
    staff = require_staff(req.principal)
    binding = await req.services.accounts.binding(req.args["binding_id"])
    await req.services.access.staff_community(
        staff, binding["community_id"], (Role.COMMITTEE, Role.PROPERTY, Role.PLATFORM_ADMIN))
    result = await req.services.accounts.decide(staff, binding, req.body["approve"],
                                                req.body["reason"], req.body.get("owner_id"))
    req.services.access.forget(binding["user_id"])
    return result


PENDING = obj({**BINDING["properties"], "claimed_name": string(0), "note": string(0, 500),
               "evidence_sha256": string(0), "matches_roster": BOOL})

endpoints = [
    Endpoint("GET", "/api/mp/v1/communities/{community_id}/unit-lookup", lookup_unit, Auth.MP,
             "按楼栋与房号查找房屋（申请绑定前）",
             obj({"unit_id": ID, "community_id": ID, "community_name": string()}),
             query=obj({"building": string(1, 40), "number": string(1, 40)}), tag="mp"),
    Endpoint("GET", "/api/mp/v1/units/{unit_id}", my_unit, Auth.MP, "我绑定的房屋",
             {"type": "object"}, tag="mp"),
    Endpoint("POST", "/api/mp/v1/binding-requests", request_binding, Auth.MP,
             "申请绑定房屋（由业委会或物业审核）", BINDING,
             body=obj({"unit_id": ID, "owner_name": string(1, 60), "id_last4": string(4, 4)},
                      {"evidence_sha256": SHA256, "note": string(0, 500)}),
             status=201, tag="mp"),
    Endpoint("POST", "/api/mp/v1/units/{unit_id}/invites", invite, Auth.MP,
             "业主邀请家庭成员或租户（无表决权）",
             obj({"code": string(), "expires_at": TIMESTAMP, "role": string()}),
             body=obj({"role": enum(BindingRole.FAMILY, BindingRole.TENANT)}, {"can_pay": BOOL}),
             status=201, tag="mp"),
    Endpoint("POST", "/api/mp/v1/invites/{code}/accept", accept_invite, Auth.MP, "接受邀请",
             BINDING, status=201, tag="mp"),
    Endpoint("GET", "/api/admin/v1/communities/{community_id}/binding-requests", pending,
             Auth.ADMIN, "待审核的绑定申请", obj({"requests": array(PENDING)}), tag="registry"),
    Endpoint("POST", "/api/admin/v1/binding-requests/{binding_id}/decision", decide, Auth.ADMIN,
             "审核绑定申请（须写明理由）", BINDING,
             body=obj({"approve": BOOL, "reason": string(1, 500)}, {"owner_id": ID}),
             tag="registry"),
]
