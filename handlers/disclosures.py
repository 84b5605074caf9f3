"""The three disclosures: publish (company or committee), read (staff, owners), attachments."""

from __future__ import annotations

from typing import Any

from handlers.base import Auth, Endpoint, Reply, Request
from server.access import require_staff
from server.attachments import DOCUMENT_TYPES, IMAGE_TYPES, MAX_ATTACHMENT_B64
from server.auth import Role
from server.disclosures import Kind, Publisher, disclosure_to_json, period_or_standing
from server.errors import InvalidInput
from server.periods import QUARTER_PATTERN
from server.registry import Community
from server.validation import BOOL, ID, TIMESTAMP, array, enum, integer, obj, string

FEN = integer(-10**15, 10**15)   # well inside the canonical-JSON safe-integer range
FEN_POSITIVE = integer(0, 10**15)
PHONE = string(3, 20, pattern=r"^[0-9+() -]+$")

SERVICE_STANDARDS = obj(
    {"service_level": string(1, 40),
     "items": array(obj({"name": string(1, 60), "standard": string(1, 500)},
                        {"frequency": string(0, 60)}), 1, 200),
     "fee_standards": array(obj(
         {"item": string(1, 60),
          "unit": enum("per_m2_month", "per_month", "per_space_month", "per_time"),
          "price_fen": integer(0, 10**9), "basis": enum("government_guided", "market")},
         {"note": string(0, 200)}), 1, 100)},
    {"valid_from": string(10, 10, pattern=r"^\d{4}-\d\d-\d\d$")})
COMPLAINT_CHANNELS = obj(
    {"phones": array(obj({"label": string(1, 40), "number": PHONE}), 1, 10),
     "hours": string(1, 100),
     "responsible": array(obj({"name": string(1, 40), "role": string(1, 40)}, {"phone": PHONE}),
                          1, 10),
     "city_hotline": PHONE, "response_promise_hours": integer(1, 720)},
    {"online": string(0, 200), "address": string(0, 200)})
COMMON_INCOME = obj(
    {"income_lines": array(obj({"item": string(1, 60), "amount_fen": FEN_POSITIVE},
                               {"category": enum("advertising", "parking", "rental", "venue",
                                                 "other"), "note": string(0, 200)}), 0, 200),
     "cost_lines": array(obj({"item": string(1, 60), "amount_fen": FEN_POSITIVE},
                             {"note": string(0, 200)}), 0, 200),
     "total_income_fen": FEN_POSITIVE, "total_cost_fen": FEN_POSITIVE, "balance_fen": FEN,
     "carried_over_fen": FEN, "closing_balance_fen": FEN},
    {"notes": string(0, 1000)})


def publish_body(content: dict[str, Any]) -> dict[str, Any]:
    return obj({"content": content},
               {"attachments": array(ID, 0, 20), "corrects_version": integer(1),
                "reason": string(1, 500)})


ATTACHMENT = obj({"id": ID, "sha256": string(64, 64), "size": integer(1),
                  "content_type": string(), "name": string(0, 100)})
SIGNATURE = obj({"alg": string(), "kid": string(), "sig": string()})
HISTORY = array(obj({"id": ID, "version": integer(1), "reason": string(0, 500),
                     "published_at": TIMESTAMP, "payload_sha256": string(64, 64)}))
DISCLOSURE = obj(
    {"id": ID, "community_id": ID, "company_id": string(0, 64), "publisher": string(),
     "kind": string(), "period": {"type": ["string", "null"]}, "version": integer(1),
     "reason": string(0, 500), "content": {"type": "object"}, "attachments": array(ATTACHMENT),
     "published_at": TIMESTAMP, "published_by": string(0), "previous_sha256": string(0, 64),
     "payload_sha256": string(64, 64), "signature": SIGNATURE},
    {"signature_valid": BOOL, "history": HISTORY})
SUMMARY = obj({"id": ID, "publisher": string(), "kind": string(),
               "period": {"type": ["string", "null"]}, "version": integer(1),
               "published_at": TIMESTAMP})
UPLOAD = obj({"name": string(1, 100), "content_base64": string(4, MAX_ATTACHMENT_B64)})
A = "/api/admin/v1/communities/{community_id}"


def _publisher(req: Request) -> Publisher:
    try:
        return Publisher(req.args["publisher"])
    except ValueError:
        raise InvalidInput(fields={"publisher": "应为 property 或 committee"}) from None


async def _publishing_community(req: Request, publisher: Publisher) -> Community:
    """Only the company serving the community, or its own committee, publishes as itself."""
    role = Role.PROPERTY if publisher is Publisher.PROPERTY else Role.COMMITTEE
    return await req.services.access.staff_community(req.principal, req.args["community_id"],
                                                     (role,))


async def _publish(req: Request, kind: Kind) -> Any:
    publisher = _publisher(req)
    community = await _publishing_community(req, publisher)
    label = period_or_standing(kind, req.args.get("period"))
    body = req.body
    result = await req.services.duties.disclosures.publish(
        req.principal, community, publisher, kind, label, body["content"],
        body.get("attachments", []), body.get("corrects_version"), body.get("reason", ""))
    return Reply(status=201, body=result)


async def publish_standards(req: Request) -> Any:
    return await _publish(req, Kind.SERVICE_STANDARDS)


async def publish_channels(req: Request) -> Any:
    return await _publish(req, Kind.COMPLAINT_CHANNELS)


async def publish_income(req: Request) -> Any:
    return await _publish(req, Kind.COMMON_INCOME)


async def _full(req: Request, doc: dict[str, Any]) -> dict[str, Any]:
    d = req.services.duties
    return {**disclosure_to_json(doc, d.signer), "history": await d.disclosures.history(doc)}


async def admin_list(req: Request) -> Any:
    community = await req.services.access.staff_community(req.principal, req.args["community_id"])
    return {"disclosures": await req.services.duties.disclosures.current(
        community.id, req.query.get("publisher"), req.query.get("kind"))}


async def admin_get(req: Request) -> Any:
    doc = await req.services.duties.disclosures.get(req.args["disclosure_id"])
    await req.services.access.staff_community(req.principal, doc["community_id"])
    return await _full(req, doc)


async def mp_list(req: Request) -> Any:
    community = await req.services.access.mp_community(req.principal, req.args["community_id"])
    return {"disclosures": await req.services.duties.disclosures.current(
        community.id, req.query.get("publisher"), req.query.get("kind"))}


async def mp_get(req: Request) -> Any:
    doc = await req.services.duties.disclosures.get(req.args["disclosure_id"])
    await req.services.access.mp_community(req.principal, doc["community_id"])
    return await _full(req, doc)


async def currency(req: Request) -> Any:
    """Supervision: is each community's disclosure current (the plan's 阳光行动 indicator)."""
    area = await req.services.access.staff_area(req.principal, req.args["area_id"])
    communities = await req.services.registry.communities({"area_path": area["_id"]})
    quarter, due, rows = await req.services.duties.disclosures.currency(
        communities, req.query.get("quarter"))
    items = [r.to_json() for r in rows]
    return {"quarter": quarter, "income_due_at": due.isoformat().replace("+00:00", "Z"),
            "communities": items, "current": sum(1 for i in items if i["current"]),
            "expected": len(items)}


async def admin_upload(req: Request) -> Any:
    community = await req.services.access.staff_community(req.principal, req.args["community_id"])
    att = await req.services.duties.attachments.upload(
        req.principal, community.id, req.body["name"], req.body["content_base64"], DOCUMENT_TYPES)
    return Reply(status=201, body=att.to_json())


async def mp_upload(req: Request) -> Any:
    community = await req.services.access.mp_community(req.principal, req.args["community_id"])
    att = await req.services.duties.attachments.upload(
        req.principal, community.id, req.body["name"], req.body["content_base64"], IMAGE_TYPES)
    return Reply(status=201, body=att.to_json())


def _file_reply(att: Any, data: bytes) -> Reply:
    return Reply(body=data, content_type=att.content_type,
                 headers={"ETag": f'"{att.sha256}"', "X-Content-SHA256": att.sha256,
                          "Content-Disposition": "inline"})


async def admin_file(req: Request) -> Any:
    att, data = await req.services.duties.attachments.content(req.args["attachment_id"])
    await req.services.access.staff_community(require_staff(req.principal), att.community_id)
    return _file_reply(att, data)


async def mp_file(req: Request) -> Any:
    att, data = await req.services.duties.attachments.content(req.args["attachment_id"])
    await req.services.access.mp_community(req.principal, att.community_id)
    return _file_reply(att, data)


async def keys(req: Request) -> Any:
    return {"keys": req.services.duties.signer.public_keys()}


LIST_QUERY = obj(optional={"publisher": enum(*Publisher), "kind": enum(*Kind)})
LIST = obj({"disclosures": array(SUMMARY)})
UPLOAD_LIMIT = MAX_ATTACHMENT_B64 + 4096
T = "disclosures"

endpoints = [
    Endpoint("POST", A + "/disclosures/{publisher}/service-standards", publish_standards,
             Auth.ADMIN, "公开物业服务标准（含收费标准）；更正须 corrects_version 与理由",
             DISCLOSURE, body=publish_body(SERVICE_STANDARDS), status=201, tag=T),
    Endpoint("POST", A + "/disclosures/{publisher}/complaint-channels", publish_channels,
             Auth.ADMIN, "公开投诉渠道", DISCLOSURE, body=publish_body(COMPLAINT_CHANNELS),
             status=201, tag=T),
    Endpoint("POST", A + "/disclosures/{publisher}/common-income/{period}", publish_income,
             Auth.ADMIN, "公开季度公共部位收益收支（分；须收支平衡）", DISCLOSURE,
             body=publish_body(COMMON_INCOME), status=201, tag=T),
    Endpoint("GET", A + "/disclosures", admin_list, Auth.ADMIN, "小区各项公开的最新版本", LIST,
             query=LIST_QUERY, tag=T),
    Endpoint("GET", "/api/admin/v1/disclosures/{disclosure_id}", admin_get, Auth.ADMIN,
             "公开详情、签名校验与历史版本", DISCLOSURE, tag=T),
    Endpoint("GET", "/api/admin/v1/areas/{area_id}/disclosure-currency", currency, Auth.ADMIN,
             "辖区三公开是否按时（监管指标）",
             obj({"quarter": string(), "income_due_at": TIMESTAMP, "current": integer(0),
                  "expected": integer(0), "communities": array({"type": "object"})}),
             query=obj(optional={"quarter": string(6, 6, pattern=QUARTER_PATTERN)}), tag=T),
    Endpoint("POST", A + "/attachments", admin_upload, Auth.ADMIN,
             "上传附件（图片或 PDF，≤2 MiB，按内容识别类型）", ATTACHMENT, body=UPLOAD,
             status=201, tag=T, max_body_bytes=UPLOAD_LIMIT),
    Endpoint("GET", "/api/admin/v1/attachments/{attachment_id}", admin_file, Auth.ADMIN,
             "下载附件", None, tag=T, raw_response="application/octet-stream"),
    Endpoint("GET", "/api/mp/v1/communities/{community_id}/disclosures", mp_list, Auth.MP,
             "本小区三公开（仅限已绑定住户）", LIST, query=LIST_QUERY, tag="mp"),
    Endpoint("GET", "/api/mp/v1/disclosures/{disclosure_id}", mp_get, Auth.MP,
             "公开详情与历史版本（仅限已绑定住户）", DISCLOSURE, tag="mp"),
    Endpoint("POST", "/api/mp/v1/communities/{community_id}/attachments", mp_upload, Auth.MP,
             "上传投诉照片（≤2 MiB）", ATTACHMENT, body=UPLOAD, status=201, tag="mp",
             max_body_bytes=UPLOAD_LIMIT),
    Endpoint("GET", "/api/mp/v1/attachments/{attachment_id}", mp_file, Auth.MP, "查看附件",
             None, tag="mp", raw_response="application/octet-stream"),
    Endpoint("GET", "/api/mp/v1/disclosure-keys", keys, Auth.PUBLIC,
             "公开信息与榜单的签名公钥（Ed25519）",
             obj({"keys": array({"type": "object"})}), tag="mp"),
]
