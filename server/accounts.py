"""Mini-program users: WeChat login, verified phone, and binding to units with audit."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any, Protocol

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from server.audit import Audit
from server.auth import MpUser, SessionStore, StaffUser
from server.clock import Clock, as_utc, iso
from server.errors import Conflict, Forbidden, InvalidInput, NotFound
from server.fieldcrypto import FieldCrypto, mask_phone, normalise_phone
from server.registry import Registry


class BindingRole(StrEnum):
    """How a user relates to a unit; only owners vote."""

    OWNER = "owner"
    FAMILY = "family"
    TENANT = "tenant"


class BindingStatus(StrEnum):
    """A binding's state; decisions are audited."""

    PENDING = "pending"
    ACTIVE = "active"
    REJECTED = "rejected"
    REVOKED = "revoked"


class WeChatLogin(Protocol):
    """The part of the WeChat client login needs (see miniprogram_api.wechat)."""

    async def code2session(self, js_code: str) -> Any: ...

    async def get_phone_number(self, code: str, openid: str | None = None) -> Any: ...


def binding_to_json(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": doc["_id"], "unit_id": doc["unit_id"], "community_id": doc["community_id"],
        "role": doc["role"], "status": doc["status"], "owner_id": doc.get("owner_id") or None,
        "can_pay": bool(doc.get("can_pay")), "via": doc.get("via", ""),
        "reason": doc.get("reason", ""), "created_at": iso(doc["created_at"]),
    }


@dataclass(frozen=True)
class LoginResult:
    """A new session for a mini-program user."""

    token: str
    expires_at: Any
    user_id: str
    is_new: bool


class Accounts:
    """Login, phone verification and bindings of mini-program users."""

    def __init__(self, db: AsyncDatabase, clock: Clock, crypto: FieldCrypto,
                 sessions: SessionStore, registry: Registry, audit: Audit,
                 session_ttl_seconds: int) -> None:
        self.db = db
        self.clock = clock
        self.crypto = crypto
        self.sessions = sessions
        self.registry = registry
        self.audit = audit
        self.ttl = session_ttl_seconds

    # -- login ------------------------------------------------------------------------------
    async def login(self, wechat: WeChatLogin, js_code: str) -> LoginResult:
        wx = await wechat.code2session(js_code)
        now = self.clock.now()
        # session_key stays on the server, encrypted at rest; it is never returned or logged.
        update = {
            "$set": {"session_key_enc": self.crypto.encrypt(wx.session_key, "session_key"),
                     "unionid": wx.unionid or "", "last_login_at": now},
            "$setOnInsert": {"_id": "us_" + secrets.token_hex(8), "created_at": now,
                             "phone_hash": "", "phone_enc": ""},
        }
        for attempt in range(2):
            try:
                before = await self.db["users"].find_one_and_update(
                    {"openid": wx.openid}, update, upsert=True, return_document=ReturnDocument.BEFORE)
                break
            except DuplicateKeyError:
                # Two first logins of one openid raced on the unique index; the loser retries
                # and finds the winner's document.
                if attempt:
                    raise
        user = await self.db["users"].find_one({"openid": wx.openid}, {"_id": 1})
        assert user is not None
        token, expires_at = await self.sessions.issue("mp", user["_id"], self.ttl)
        return LoginResult(token, expires_at, user["_id"], is_new=before is None)

    async def profile(self, user: MpUser) -> dict[str, Any]:
        doc = await self.db["users"].find_one({"_id": user.user_id})
        if doc is None:
            raise NotFound("用户不存在", code="user_not_found")
        phone = self.crypto.decrypt(doc["phone_enc"], "phone") if doc.get("phone_enc") else ""
        bindings = await self.db["bindings"].find({"user_id": user.user_id}).sort(
            "created_at", 1).to_list(None)
        return {"user_id": doc["_id"], "phone": mask_phone(phone) if phone else None,
                "bindings": [binding_to_json(b) for b in bindings]}

    # -- phone and automatic binding ---------------------------------------------------------
    async def verify_phone(self, wechat: WeChatLogin, user: MpUser, code: str) -> dict[str, Any]:
        info = await wechat.get_phone_number(code, user.openid)
        phone = normalise_phone(info.pure_phone_number or info.phone_number)
        phone_hash = self.crypto.keyed_hash(phone, "phone")
        await self.db["users"].update_one(
            {"_id": user.user_id},
            {"$set": {"phone_enc": self.crypto.encrypt(phone, "phone"), "phone_hash": phone_hash,
                      "phone_verified_at": self.clock.now()}})
        created = await self._bind_by_phone(user, phone_hash)
        return {"phone": mask_phone(phone), "bound": [binding_to_json(b) for b in created]}

    async def _bind_by_phone(self, user: MpUser, phone_hash: str) -> list[dict[str, Any]]:
        created = []
        async for owner in self.db["owners"].find({"phone_hash": phone_hash}):
            async for unit in self.db["units"].find({"community_id": owner["community_id"],
                                                     "owner_ids": owner["_id"]}):
                doc = self._new_binding(user.user_id, unit, BindingRole.OWNER,
                                        BindingStatus.ACTIVE, owner["_id"], via="phone_match")
                try:
                    await self.db["bindings"].insert_one(doc)
                except DuplicateKeyError:
                    continue  # already bound: binding is idempotent
                created.append(doc)
                await self._index_active(doc)
                await self.audit.record(user, "binding.auto", community_id=unit["community_id"],
                                        target=doc["_id"], detail={"unit_id": unit["_id"]},
                                        reason="已核验手机号与业主名册一致")
        return created

    async def _index_active(self, binding: dict[str, Any]) -> None:
        """Keep the user's active bindings on the user document too, so that every request can
        read them by _id (server.access); the bindings collection stays the source of truth."""
        await self.db["users"].update_one(
            {"_id": binding["user_id"]},
            {"$addToSet": {"active_bindings": {**binding, "status": BindingStatus.ACTIVE.value}}})

    def _new_binding(self, user_id: str, unit: dict[str, Any], role: BindingRole,
                     status: BindingStatus, owner_id: str, via: str, **extra: Any) -> dict[str, Any]:
        return {"_id": "bd_" + secrets.token_hex(8), "user_id": user_id, "unit_id": unit["_id"],
                "community_id": unit["community_id"], "role": role.value, "status": status.value,
                "owner_id": owner_id, "via": via, "created_at": self.clock.now(),
                "decided_by": "", "reason": "", "can_pay": role is not BindingRole.TENANT, **extra}

    # -- requests decided by the committee or the property company ---------------------------
    async def request_binding(self, user: MpUser, unit_id: str, owner_name: str,
                              id_last4: str, evidence_sha256: str, note: str) -> dict[str, Any]:
        unit = await self.registry.unit(unit_id)
        owner_id = ""
        for oid in unit["owner_ids"]:
            owner = await self.registry.owner(oid)
            if owner["name"] == owner_name and owner["id_last4"] == id_last4.upper():
                owner_id = oid
        doc = self._new_binding(user.user_id, unit, BindingRole.OWNER, BindingStatus.PENDING,
                                owner_id, via="request", evidence_sha256=evidence_sha256,
                                note=note, claimed_name=owner_name)
        try:
            await self.db["bindings"].insert_one(doc)
        except DuplicateKeyError:
            raise Conflict("已绑定或已申请该房屋", code="binding_exists") from None
        await self.audit.record(user, "binding.request", community_id=unit["community_id"],
                                target=doc["_id"], detail={"unit_id": unit_id,
                                                           "matches_roster": bool(owner_id)})
        return binding_to_json(doc)

    async def pending(self, community_id: str) -> list[dict[str, Any]]:
        docs = await self.db["bindings"].find({"community_id": community_id,
                                               "status": BindingStatus.PENDING.value}).to_list(None)
        out = []
        for d in docs:
            item = binding_to_json(d)
            item.update(claimed_name=d.get("claimed_name", ""), note=d.get("note", ""),
                        evidence_sha256=d.get("evidence_sha256", ""),
                        matches_roster=bool(d.get("owner_id")))
            out.append(item)
        return out

    async def decide(self, staff: StaffUser, binding: dict[str, Any], approve: bool,
                     reason: str, owner_id: str | None) -> dict[str, Any]:
        if approve:
            unit = await self.registry.unit(binding["unit_id"])
            chosen = owner_id or binding.get("owner_id")
            if not chosen or chosen not in unit["owner_ids"]:
                raise InvalidInput("须指定该房屋名册中的业主", code="owner_required",
                                   fields={"owner_id": "须为该房屋的业主"})
        status = BindingStatus.ACTIVE if approve else BindingStatus.REJECTED
        update: dict[str, Any] = {"status": status.value, "decided_by": staff.staff_id,
                                  "decided_at": self.clock.now(), "reason": reason}
        if approve:
            update["owner_id"] = chosen
        # One decision per request, decided by an insert: two reviewers cannot both decide it.
        # (A guarded update is not enough on FerretDB 1.24, which applies it as read-modify-write.)
        try:
            await self.db["binding_decisions"].insert_one({"_id": binding["_id"], **update})
        except DuplicateKeyError:
            raise Conflict("该申请已处理", code="binding_already_decided") from None
        doc = await self.db["bindings"].find_one_and_update(
            {"_id": binding["_id"]}, {"$set": update}, return_document=ReturnDocument.AFTER)
        assert doc is not None
        if approve:
            await self._index_active(doc)
        await self.audit.record(staff, "binding.approve" if approve else "binding.reject",
                                community_id=doc["community_id"], target=doc["_id"],
                                detail={"unit_id": doc["unit_id"], "owner_id": doc["owner_id"]},
                                reason=reason)
        return binding_to_json(doc)

    async def binding(self, binding_id: str) -> dict[str, Any]:
        doc = await self.db["bindings"].find_one({"_id": binding_id})
        if doc is None:
            raise NotFound("绑定不存在", code="binding_not_found")
        return doc

    # -- family members and tenants ------------------------------------------------------------
    async def invite(self, user: MpUser, unit_id: str, role: BindingRole,
                     can_pay: bool) -> dict[str, Any]:
        owned = await self.db["bindings"].find_one({"user_id": user.user_id, "unit_id": unit_id,
                                                    "role": "owner", "status": "active"})
        if owned is None:
            raise Forbidden("只有已绑定的业主可以邀请家庭成员或租户", code="not_unit_owner")
        code = secrets.token_urlsafe(12)
        expires_at = self.clock.now() + timedelta(days=2)
        await self.db["invites"].insert_one({
            "_id": code, "unit_id": unit_id, "community_id": owned["community_id"],
            "role": role.value, "can_pay": can_pay if role is BindingRole.TENANT else True,
            "invited_by": user.user_id, "expires_at": expires_at, "used_by": "",
        })
        return {"code": code, "expires_at": iso(expires_at), "role": role.value}

    async def accept_invite(self, user: MpUser, code: str) -> dict[str, Any]:
        now = self.clock.now()
        invite = await self.db["invites"].find_one_and_update(
            {"_id": code, "used_by": ""}, {"$set": {"used_by": user.user_id, "used_at": now}})
        if invite is None or as_utc(invite["expires_at"]) <= now:
            raise NotFound("邀请码无效或已使用", code="invite_invalid")
        if invite["invited_by"] == user.user_id:
            raise Conflict("不能接受自己的邀请", code="invite_self")
        unit = await self.registry.unit(invite["unit_id"])
        doc = self._new_binding(user.user_id, unit, BindingRole(invite["role"]),
                                BindingStatus.ACTIVE, "", via="invite", invited_by=invite["invited_by"])
        doc["can_pay"] = invite["can_pay"]
        try:
            await self.db["bindings"].insert_one(doc)
        except DuplicateKeyError:
            raise Conflict("已绑定该房屋", code="binding_exists") from None
        await self._index_active(doc)
        await self.audit.record(user, "binding.invite_accepted", community_id=unit["community_id"],
                                target=doc["_id"], detail={"unit_id": unit["_id"],
                                                           "role": doc["role"]})
        return binding_to_json(doc)
