"""Sign-in for mini-program users (WeChat login, phone) and for staff (password)."""

from __future__ import annotations

from typing import Any

from handlers.base import Auth, Endpoint, Reply, Request
from server.access import require_mp, require_staff
from server.clock import iso
from server.validation import BOOL, ID, TIMESTAMP, array, obj, string

TOKEN = obj({"token": string(1, 200), "expires_at": TIMESTAMP}, {"user_id": ID, "is_new": BOOL})
BINDING = obj({"id": ID, "unit_id": ID, "community_id": ID, "role": string(), "status": string(),
               "owner_id": {"type": ["string", "null"]}, "can_pay": BOOL, "via": string(0),
               "reason": string(0, 500), "created_at": TIMESTAMP})
PROFILE = obj({"user_id": ID, "phone": {"type": ["string", "null"]}, "bindings": array(BINDING)})


async def mp_login(req: Request) -> Any:
    result = await req.services.accounts.login(req.services.wechat, req.body["code"])
    return Reply(status=201, body={"token": result.token, "expires_at": iso(result.expires_at),
                                   "user_id": result.user_id, "is_new": result.is_new})


async def mp_logout(req: Request) -> Any:
    await req.services.sessions.revoke(req.headers["Authorization"].split(" ", 1)[1].strip())
    return Reply(status=204)


async def mp_me(req: Request) -> Any:
    return await req.services.accounts.profile(require_mp(req.principal))


async def mp_phone(req: Request) -> Any:
    user = require_mp(req.principal)
    result = await req.services.accounts.verify_phone(req.services.wechat, user, req.body["code"])
    req.services.access.forget(user.user_id)
    return result


async def admin_login(req: Request) -> Any:
    token, expires_at, staff = await req.services.staff_accounts.login(
        req.body["username"], req.body["password"])
    await req.services.audit.record(staff, "staff.login", community_id="", target=staff.staff_id)
    return Reply(status=201, body={"token": token, "expires_at": iso(expires_at)})


async def admin_logout(req: Request) -> Any:
    await req.services.sessions.revoke(req.headers["Authorization"].split(" ", 1)[1].strip())
    return Reply(status=204)


async def admin_me(req: Request) -> Any:
    staff = require_staff(req.principal)
    return {"staff_id": staff.staff_id, "username": staff.username, "name": staff.name,
            "grants": [g.to_doc() for g in staff.grants]}


GRANT = obj({"role": string(), "community_id": string(0), "company_id": string(0),
             "area_id": string(0)})

endpoints = [
    Endpoint("POST", "/api/mp/v1/session", mp_login, Auth.PUBLIC, "小程序登录（wx.login code）",
             TOKEN, body=obj({"code": string(1, 128)}), status=201, tag="mp"),
    Endpoint("DELETE", "/api/mp/v1/session", mp_logout, Auth.MP, "退出登录", status=204, tag="mp"),
    Endpoint("GET", "/api/mp/v1/me", mp_me, Auth.MP, "我的资料与房屋绑定", PROFILE, tag="mp"),
    Endpoint("POST", "/api/mp/v1/me/phone", mp_phone, Auth.MP,
             "手机号验证（getPhoneNumber code），名册一致时自动绑定房屋",
             obj({"phone": string(), "bound": array(BINDING)}),
             body=obj({"code": string(1, 128)}), tag="mp"),
    Endpoint("POST", "/api/admin/v1/session", admin_login, Auth.PUBLIC, "管理人员登录", TOKEN,
             body=obj({"username": string(1, 64), "password": string(1, 200)}), status=201,
             tag="admin"),
    Endpoint("DELETE", "/api/admin/v1/session", admin_logout, Auth.ADMIN, "管理人员退出",
             status=204, tag="admin"),
    Endpoint("GET", "/api/admin/v1/me", admin_me, Auth.ADMIN, "当前管理人员与授权范围",
             obj({"staff_id": ID, "username": string(), "name": string(0),
                  "grants": array(GRANT)}), tag="admin"),
]
