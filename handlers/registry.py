"""Admin API of the registry: areas, companies, communities, rosters, staff, audit."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from handlers.base import Auth, Endpoint, Reply, Request
from server.access import ALL_STAFF_ROLES, require_staff, staff_community_filter
from server.auth import Grant, Role
from server.errors import Forbidden, InvalidInput
from server.fieldcrypto import mask_phone
from server.registry import AreaLevel, owner_to_json, unit_to_json
from server.validation import BOOL, ID, TIMESTAMP, array, enum, integer, obj, string

AREA = obj({"id": ID, "name": string(), "level": string(), "parent_id": {"type": ["string", "null"]},
            "path": array(ID)})
COMMUNITY = obj({"id": ID, "name": string(), "area_id": ID, "area_path": array(ID),
                 "company_id": string(0), "has_committee": BOOL,
                 "rules": obj({"count_parking": BOOL, "count_storage": BOOL})},
                {"counts": obj({"buildings": integer(0), "units": integer(0),
                                "owners": integer(0)})})
UNIT = obj({"id": ID, "community_id": ID, "building_id": ID, "building": string(0),
            "number": string(), "area_centi_m2": integer(1), "area_source": string(),
            "kind": string(), "owner_ids": array(ID), "voter_owner_id": ID,
            "developer_held": BOOL})
OWNER = obj({"id": ID, "community_id": ID, "kind": string(), "name": string(), "id_last4": string(),
             "phone": {"type": ["string", "null"]}, "is_developer": BOOL})
ROW_ERROR = obj({"line": integer(1), "column": string(), "reason": string(1, 500)})
COUNTS = obj({"created": integer(0), "updated": integer(0), "unchanged": integer(0)})
REPORT = obj({"rows": integer(0), "errors": array(ROW_ERROR), "skipped_lines": array(integer(1)),
              "units": COUNTS, "owners": COUNTS, "imported": BOOL, "file_sha256": string()})


def _is_platform_admin(req: Request) -> bool:
    return require_staff(req.principal).has_role(Role.PLATFORM_ADMIN)


async def create_area(req: Request) -> Any:
    body = req.body
    if body.get("parent_id"):
        await req.services.access.staff_area(req.principal, body["parent_id"])
    elif not _is_platform_admin(req):
        raise Forbidden("仅平台管理员可创建市级区域", code="platform_admin_only")
    area = await req.services.registry.create_area(body["name"], AreaLevel(body["level"]),
                                                   body.get("parent_id"), body.get("id"))
    await req.services.audit.record(req.principal, "area.create", community_id="",
                                    target=area["id"], detail=area)
    return Reply(status=201, body=area)


async def get_area(req: Request) -> Any:
    await req.services.access.staff_area(req.principal, req.args["area_id"])
    return {"areas": await req.services.registry.areas_under(req.args["area_id"])}


async def create_company(req: Request) -> Any:
    if not _is_platform_admin(req):
        raise Forbidden("仅平台管理员可登记物业企业", code="platform_admin_only")
    company = await req.services.registry.create_company(req.body["name"], req.body["credit_code"])
    return Reply(status=201, body=company)


async def create_community(req: Request) -> Any:
    body = req.body
    await req.services.access.staff_area(req.principal, body["area_id"])
    rules = body.get("rules", {})
    community = await req.services.registry.create_community(
        body["name"], body["area_id"], body.get("company_id", ""), body.get("has_committee", False),
        rules.get("count_parking", False), rules.get("count_storage", False), body.get("id"))
    await req.services.audit.record(req.principal, "community.create", community_id=community.id,
                                    target=community.id, detail=community.to_json())
    return Reply(status=201, body=community.to_json())


async def list_communities(req: Request) -> Any:
    staff = require_staff(req.principal)
    found = await req.services.registry.communities(staff_community_filter(staff, ALL_STAFF_ROLES))
    return {"communities": [c.to_json() for c in found]}


async def get_community(req: Request) -> Any:
    community = await req.services.access.staff_community(req.principal, req.args["community_id"])
    return {**community.to_json(), "counts": await req.services.registry.counts(community.id)}


async def set_company(req: Request) -> Any:
    community = await req.services.access.staff_community(
        req.principal, req.args["community_id"], (Role.OFFICIAL, Role.PLATFORM_ADMIN))
    updated = await req.services.registry.set_company(community.id, req.body["company_id"])
    await req.services.audit.record(req.principal, "community.set_company", community_id=community.id,
                                    target=community.id,
                                    detail={"from": community.company_id, "to": updated.company_id},
                                    reason=req.body["reason"])
    return updated.to_json()


async def list_buildings(req: Request) -> Any:
    community = await req.services.access.staff_community(req.principal, req.args["community_id"])
    return {"buildings": await req.services.registry.buildings(community.id)}


async def list_units(req: Request) -> Any:
    community = await req.services.access.staff_community(req.principal, req.args["community_id"])
    units = await req.services.registry.units(community.id, req.query.get("building_id"))
    return {"units": [unit_to_json(u) for u in units]}


async def list_owners(req: Request) -> Any:
    community = await req.services.access.staff_community(req.principal, req.args["community_id"])
    crypto = req.services.crypto
    owners = await req.services.registry.owners(community.id)
    return {"owners": [owner_to_json(
        o, mask_phone(crypto.decrypt(o["phone_enc"], "phone")) if o.get("phone_enc") else None)
        for o in owners]}


async def import_roster(req: Request) -> Any:
    community = await req.services.access.staff_community(
        req.principal, req.args["community_id"], (Role.COMMITTEE, Role.PROPERTY, Role.PLATFORM_ADMIN))
    try:
        content = base64.b64decode(req.body["content_base64"], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(fields={"content_base64": "不是有效的 Base64"}) from None
    report = await req.services.roster.run(community.id, content, req.body["format"],
                                           req.body.get("import_valid_rows", False))
    await req.services.audit.record(req.principal, "roster.import", community_id=community.id,
                                    target=community.id,
                                    detail={"file_sha256": report.file_sha256, "rows": report.rows,
                                            "errors": len(report.errors),
                                            "imported": report.imported,
                                            "units": report.units, "owners": report.owners})
    if not report.imported:
        fields = {f"rows[{e.line}].{e.column}": e.reason for e in report.errors}
        raise InvalidInput(f"名册有 {len({e.line for e in report.errors})} 行错误，未导入任何数据",
                           code="roster_invalid", fields=fields)
    return report.to_json()


async def create_staff(req: Request) -> Any:
    grants = [Grant(Role(g["role"]), g.get("community_id", ""), g.get("company_id", ""),
                    g.get("area_id", "")) for g in req.body["grants"]]
    for i, grant in enumerate(grants):
        await _check_may_grant(req, grant, f"grants[{i}]")
    staff_id = await req.services.staff_accounts.create(
        req.body["username"], req.body["password"], req.body["name"], grants)
    await req.services.audit.record(req.principal, "staff.create", community_id="", target=staff_id,
                                    detail={"username": req.body["username"],
                                            "grants": [g.to_doc() for g in grants]})
    return Reply(status=201, body={"staff_id": staff_id})


async def _check_may_grant(req: Request, grant: Grant, path: str) -> None:
    """Platform admins grant anything; officials grant roles inside their own area."""
    if _is_platform_admin(req):
        return
    if grant.role is Role.PLATFORM_ADMIN:
        raise Forbidden(fields={path: "无权授予该角色"})
    if grant.role is Role.OFFICIAL:
        await req.services.access.staff_area(req.principal, grant.area_id)
    elif grant.role is Role.COMMITTEE:
        await req.services.access.staff_community(req.principal, grant.community_id, (Role.OFFICIAL,))
    else:
        raise Forbidden("物业企业账号由平台管理员开通", code="platform_admin_only",
                        fields={path: "无权授予该角色"})


async def community_audit(req: Request) -> Any:
    community = await req.services.access.staff_community(
        req.principal, req.args["community_id"], (Role.COMMITTEE, Role.OFFICIAL, Role.PLATFORM_ADMIN))
    return {"entries": await req.services.audit.for_community(community.id,
                                                               req.query.get("limit", 100))}


AUDIT_ENTRY = obj({"id": ID, "at": TIMESTAMP, "actor": {"type": "object"}, "action": string(),
                   "target": string(0), "detail": {"type": "object"}, "reason": string(0, 500)})
C = "/api/admin/v1/communities/{community_id}"
ROSTER_MAX_B64 = 16 * 1024 * 1024  # a 20,000-row roster is about 2 MB; base64 adds a third

endpoints = [
    Endpoint("POST", "/api/admin/v1/areas", create_area, Auth.ADMIN, "创建行政区域", AREA,
             body=obj({"name": string(1, 60), "level": enum(*AreaLevel)},
                      {"parent_id": ID, "id": ID}), status=201, tag="registry"),
    Endpoint("GET", "/api/admin/v1/areas/{area_id}", get_area, Auth.ADMIN, "区域及其下级",
             obj({"areas": array(AREA)}), tag="registry"),
    Endpoint("POST", "/api/admin/v1/companies", create_company, Auth.ADMIN, "登记物业企业",
             obj({"id": ID, "name": string(), "credit_code": string()}),
             body=obj({"name": string(1, 100), "credit_code": string(18, 18)}), status=201,
             tag="registry"),
    Endpoint("POST", "/api/admin/v1/communities", create_community, Auth.ADMIN, "创建小区",
             COMMUNITY,
             body=obj({"name": string(1, 100), "area_id": ID},
                      {"company_id": ID, "has_committee": BOOL, "id": ID,
                       "rules": obj(optional={"count_parking": BOOL, "count_storage": BOOL})}),
             status=201, tag="registry"),
    Endpoint("GET", "/api/admin/v1/communities", list_communities, Auth.ADMIN, "我可见的小区",
             obj({"communities": array(COMMUNITY)}), tag="registry"),
    Endpoint("GET", C, get_community, Auth.ADMIN, "小区详情与名册统计", COMMUNITY, tag="registry"),
    Endpoint("PUT", C + "/company", set_company, Auth.ADMIN, "变更服务该小区的物业企业",
             COMMUNITY, body=obj({"company_id": string(0, 64), "reason": string(1, 500)}),
             tag="registry"),
    Endpoint("GET", C + "/buildings", list_buildings, Auth.ADMIN, "楼栋列表",
             obj({"buildings": array(obj({"id": ID, "name": string(), "community_id": ID}))}),
             tag="registry"),
    Endpoint("GET", C + "/units", list_units, Auth.ADMIN, "房屋列表", obj({"units": array(UNIT)}),
             query=obj(optional={"building_id": ID}), tag="registry"),
    Endpoint("GET", C + "/owners", list_owners, Auth.ADMIN, "业主列表（手机号脱敏）",
             obj({"owners": array(OWNER)}), tag="registry"),
    Endpoint("POST", C + "/roster", import_roster, Auth.ADMIN,
             "导入业主名册（CSV/XLSX）：先校验全部行；有错行则不导入，除非 import_valid_rows",
             REPORT,
             body=obj({"format": enum("csv", "xlsx"), "content_base64": string(1, ROSTER_MAX_B64)},
                      {"import_valid_rows": BOOL}), tag="registry",
             max_body_bytes=ROSTER_MAX_B64 + 4096),
    Endpoint("POST", "/api/admin/v1/staff", create_staff, Auth.ADMIN, "开通管理人员账号",
             obj({"staff_id": ID}),
             body=obj({"username": string(3, 64, pattern="^[A-Za-z0-9_.@-]+$"),
                       "password": string(10, 200), "name": string(1, 60),
                       "grants": array(obj({"role": enum(*Role)},
                                           {"community_id": ID, "company_id": ID, "area_id": ID}),
                                       1, 20)}),
             status=201, tag="registry"),
    Endpoint("GET", C + "/audit", community_audit, Auth.ADMIN, "小区审计记录",
             obj({"entries": array(AUDIT_ENTRY)}), query=obj(optional={"limit": integer(1, 500)}),
             tag="registry"),
]
