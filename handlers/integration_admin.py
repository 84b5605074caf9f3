"""Admin API of the integration: register clients (secret shown once), webhooks, dead letters.

Platform admins manage every client; an official manages a client only when every area and
community in the client's scope lies inside the official's own area.
"""

from __future__ import annotations

from typing import Any

from handlers.base import Auth, Endpoint, Reply, Request
from server.access import require_staff
from server.auth import Role
from server.errors import Forbidden, InvalidInput
from server.outbox import EventType
from server.validation import ID, TIMESTAMP, array, enum, integer, obj, string

P = "/api/admin/v1/integration"
T = "integration"
NULL_STR = {"type": ["string", "null"]}
SCOPE = {"area_ids": array(ID, 0, 200, uniqueItems=True),
         "community_ids": array(ID, 0, 5000, uniqueItems=True)}
CLIENT = obj({"id": ID, "name": string(), **SCOPE, "rate_per_minute": integer(1),
              "status": enum("active", "disabled"), "created_at": TIMESTAMP,
              "created_by": string(0)})
CLIENT_WITH_SECRET = obj({"id": ID, "name": string(), **SCOPE, "rate_per_minute": integer(1),
                          "status": enum("active", "disabled"), "created_at": TIMESTAMP,
                          "created_by": string(0),
                          "secret": string(1, 200, description="密钥，仅此一次显示，请妥善保存")})
SUBSCRIPTION = obj({"id": ID, "client_id": ID, "url": string(1, 2000),
                    "events": array(enum(*EventType)), "status": enum("active", "disabled"),
                    "created_at": TIMESTAMP})
DELIVERY = obj({"id": string(1, 200), "event_id": ID, "event_type": enum(*EventType),
                "subject": string(), "seq": integer(1), "client_id": ID, "subscription_id": ID,
                "state": enum("pending", "delivered", "dead"), "attempts": integer(0),
                "replays": integer(0), "next_attempt_at": NULL_STR, "last_error": string(0, 500),
                "delivered_at": NULL_STR, "dead_at": NULL_STR})


async def _check_scope(req: Request, area_ids: list[str], community_ids: list[str]) -> None:
    """The caller may hand out this scope: platform admin, or an official covering all of it."""
    staff = require_staff(req.principal)
    if staff.has_role(Role.PLATFORM_ADMIN):
        for area_id in area_ids:
            await req.services.registry.area(area_id)
        for community_id in community_ids:
            await req.services.registry.community(community_id)
        return
    if not staff.has_role(Role.OFFICIAL):
        raise Forbidden("仅平台管理员或主管部门可管理对接客户端", code="integration_admin_only")
    for area_id in area_ids:
        await req.services.access.staff_area(req.principal, area_id)
    for community_id in community_ids:
        await req.services.access.staff_community(req.principal, community_id,
                                                  (Role.OFFICIAL, Role.PLATFORM_ADMIN))


async def _client(req: Request, client_id: str) -> dict[str, Any]:
    doc = await req.services.integration.get(client_id)
    await _check_scope(req, doc["area_ids"], doc["community_ids"])
    return doc


async def register_client(req: Request) -> Any:
    body = req.body
    await _check_scope(req, body.get("area_ids", []), body.get("community_ids", []))
    client = await req.services.integration.register(
        req.principal, body["name"], body.get("area_ids", []), body.get("community_ids", []),
        body.get("rate_per_minute"))
    await req.services.audit.record(req.principal, "integration.register", community_id="",
                                    target=client["id"],
                                    detail={k: client[k] for k in ("name", "area_ids",
                                                                   "community_ids",
                                                                   "rate_per_minute")})
    return Reply(status=201, body=client)


async def list_clients(req: Request) -> Any:
    staff = require_staff(req.principal)
    if not staff.has_role(Role.PLATFORM_ADMIN, Role.OFFICIAL):
        raise Forbidden("仅平台管理员或主管部门可管理对接客户端", code="integration_admin_only")
    visible = []
    for client in await req.services.integration.list():
        try:
            await _check_scope(req, client["area_ids"], client["community_ids"])
        except Forbidden:
            continue
        visible.append(client)
    return {"clients": visible}


async def rotate_secret(req: Request) -> Any:
    doc = await _client(req, req.args["client_id"])
    client = await req.services.integration.rotate(doc["_id"])
    await req.services.audit.record(req.principal, "integration.rotate", community_id="",
                                    target=doc["_id"])
    return client


async def set_status(req: Request) -> Any:
    doc = await _client(req, req.args["client_id"])
    client = await req.services.integration.set_status(doc["_id"], req.body["status"])
    await req.services.audit.record(req.principal, "integration.status", community_id="",
                                    target=doc["_id"], detail={"status": req.body["status"]})
    return client


async def subscribe(req: Request) -> Any:
    doc = await _client(req, req.args["client_id"])
    sub = await req.services.webhooks.subscribe(req.principal, doc["_id"], req.body["url"],
                                                req.body["events"])
    return Reply(status=201, body=sub)


async def list_subscriptions(req: Request) -> Any:
    doc = await _client(req, req.args["client_id"])
    return {"subscriptions": await req.services.webhooks.subscriptions(doc["_id"])}


async def unsubscribe(req: Request) -> Any:
    sub = await req.services.webhooks.subscription(req.args["subscription_id"])
    await _client(req, sub["client_id"])
    return await req.services.webhooks.unsubscribe(req.principal, sub["_id"])


async def dead_letters(req: Request) -> Any:
    client_id = req.query.get("client_id")
    if client_id:
        await _client(req, client_id)
    elif not require_staff(req.principal).has_role(Role.PLATFORM_ADMIN):
        raise InvalidInput("请指定对接客户端", code="client_required",
                           fields={"client_id": "主管部门须指定客户端"})
    return await req.services.webhooks.dead_letters(client_id, req.query.get("cursor"),
                                                    int(req.query.get("limit", 50)))


async def replay(req: Request) -> Any:
    delivery = await req.services.webhooks.delivery(req.args["delivery_id"])
    await _client(req, delivery["client_id"])
    return await req.services.webhooks.replay(req.principal, delivery["_id"])


endpoints = [
    Endpoint("POST", P + "/clients", register_client, Auth.ADMIN,
             "登记对接客户端（密钥仅在此返回一次）", CLIENT_WITH_SECRET,
             body=obj({"name": string(1, 100)},
                      {**SCOPE, "rate_per_minute": integer(1, 6000)}), status=201, tag=T),
    Endpoint("GET", P + "/clients", list_clients, Auth.ADMIN, "对接客户端列表（不含密钥）",
             obj({"clients": array(CLIENT, 0, 10000)}), tag=T),
    Endpoint("POST", P + "/clients/{client_id}/secret", rotate_secret, Auth.ADMIN,
             "更换密钥（新密钥仅此一次显示，旧密钥立即失效）", CLIENT_WITH_SECRET, tag=T),
    Endpoint("PUT", P + "/clients/{client_id}/status", set_status, Auth.ADMIN,
             "启用或停用对接客户端", CLIENT, body=obj({"status": enum("active", "disabled")}),
             tag=T),
    Endpoint("POST", P + "/clients/{client_id}/webhooks", subscribe, Auth.ADMIN,
             "订阅事件推送（回调地址与事件类型）", SUBSCRIPTION,
             body=obj({"url": string(8, 2000, pattern="^https?://"),
                       "events": array(enum(*EventType), 1, 20, uniqueItems=True)}),
             status=201, tag=T),
    Endpoint("GET", P + "/clients/{client_id}/webhooks", list_subscriptions, Auth.ADMIN,
             "客户端的事件订阅", obj({"subscriptions": array(SUBSCRIPTION, 0, 1000)}), tag=T),
    Endpoint("DELETE", P + "/webhooks/{subscription_id}", unsubscribe, Auth.ADMIN,
             "停用一个事件订阅", SUBSCRIPTION, tag=T),
    Endpoint("GET", P + "/dead-letters", dead_letters, Auth.ADMIN,
             "推送失败的死信列表（游标分页）",
             obj({"items": array(DELIVERY, 0, 200), "next_cursor": NULL_STR}),
             query=obj(optional={"client_id": ID,
                                 "cursor": string(1, 400, pattern="^[A-Za-z0-9_-]+$"),
                                 "limit": integer(1, 200)}), tag=T),
    Endpoint("POST", P + "/deliveries/{delivery_id}/replay", replay, Auth.ADMIN,
             "重放一条死信（只投递一次）", DELIVERY, tag=T),
]
