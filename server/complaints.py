"""Complaints and whistle-and-report (吹哨报到): filed by owners, escalated when overdue.

Every change moves a complaint from version v to v+1 and appends its event. It is claimed first
by inserting the unique step id `<complaint>#v`; two sweepers (or two server processes) that
find the same overdue complaint race on that insert and exactly one wins (see `transition`).
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from miniprogram_api.wechat import SubscribeQuotaExhausted, WeChatError
from server.attachments import Attachments
from server.audit import Audit, actor_of
from server.auth import MpUser, Principal
from server.clock import Clock, as_utc, iso
from server.errors import Conflict, InvalidInput, NotFound
from server.outbox import EventType, complaint_event, emit
from server.periods import quarter_of
from server.ratings import screen_text
from server.registry import Community, Registry

log = logging.getLogger("server.complaints")
STALE_CLAIM = timedelta(seconds=60)


class Category(StrEnum):
    """What the complaint is about; the named ones are the plan's item 12 list."""

    COMMON_FACILITIES = "common_facilities"      # 占用公共设施
    ILLEGAL_CONSTRUCTION = "illegal_construction"  # 私搭乱建
    PARKING = "parking"                          # 车辆乱停乱放
    ILLEGAL_RENOVATION = "illegal_renovation"    # 违规装修
    EBIKE_UPSTAIRS = "ebike_upstairs"            # 电动车上楼
    COMMON_INCOME = "common_income"              # 公共收益不公开
    MAINTENANCE_FUND = "maintenance_fund"        # 维修资金使用不便捷
    SERVICE = "service"                          # 物业服务（保洁、维修、秩序…）
    FEES = "fees"                                # 违规收费
    OTHER = "other"                              # 其他


CATEGORY_NAMES = {
    Category.COMMON_FACILITIES: "占用公共设施", Category.ILLEGAL_CONSTRUCTION: "私搭乱建",
    Category.PARKING: "车辆乱停乱放", Category.ILLEGAL_RENOVATION: "违规装修",
    Category.EBIKE_UPSTAIRS: "电动车上楼", Category.COMMON_INCOME: "公共收益不公开",
    Category.MAINTENANCE_FUND: "维修资金使用不便捷", Category.SERVICE: "物业服务",
    Category.FEES: "违规收费", Category.OTHER: "其他",
}


class State(StrEnum):
    """Where a complaint is; `level` says who must act on it."""

    HELD = "held"            # text flagged 'review' by msg_sec_check: waits for a moderator
    REJECTED = "rejected"    # the moderator refused it
    OPEN = "open"            # the handler at `level` must respond (报到) by due_at
    RESPONDED = "responded"  # the handler responded and must resolve by due_at
    RESOLVED = "resolved"    # handler reports it done; the owner confirms or reopens
    CLOSED = "closed"        # the owner confirmed and rated the handling


class Level(StrEnum):
    """Who handles: the property company, then the 社区, then the street (吹哨)."""

    PROPERTY = "property"
    SHEQU = "shequ"
    STREET = "street"


# (statistic, 0/1 or 0–5 field summed for it)
STAT_FIELDS = (("received", "n_received"), ("responded", "n_responded"),
               ("responded_on_time", "n_on_time"), ("completed", "n_completed"),
               ("escalated", "n_escalated"), ("rated", "n_rated"),
               ("satisfaction_sum", "satisfaction"))
STATE_PHRASE = {State.OPEN: "待处理", State.RESPONDED: "处理中", State.RESOLVED: "已办结",
                State.CLOSED: "已完成", State.HELD: "审核中", State.REJECTED: "未受理"}


def next_level(community: Community, level: Level) -> Level | None:
    """property → 社区 (when the community lies in one) → street → nobody (top)."""
    has_shequ = len(community.area_path) >= 4
    if level is Level.PROPERTY:
        return Level.SHEQU if has_shequ else Level.STREET
    if level is Level.SHEQU:
        return Level.STREET
    return None


def level_area(community: Community, level: Level) -> str:
    """The area whose officials handle the complaint at `level` ('' for the company)."""
    if level is Level.SHEQU:
        return community.area_path[3]
    if level is Level.STREET:
        return community.area_path[2]
    return ""


def complaint_to_json(doc: dict[str, Any], for_owner: bool = False) -> dict[str, Any]:
    out = {
        "id": doc["_id"], "community_id": doc["community_id"], "company_id": doc["company_id"],
        "category": doc["category"], "text": doc["text"], "photos": doc["photos"],
        "unit_id": doc["unit_id"] or None, "state": doc["state"], "level": doc["level"],
        "handler_area_id": doc["handler_area_id"] or None, "version": doc["version"],
        "filed_at": iso(doc["filed_at"]), "due_at": iso(doc["due_at"]) if doc["due_at"] else None,
        "departments": doc["departments"], "satisfaction": doc["satisfaction"] or None,
        "events": [{**e, "at": iso(e["at"]), "actor": e["actor"] if not for_owner
                    else {"kind": e["actor"]["kind"]}} for e in doc["events"]],
    }
    return out


class Complaints:
    """Files, moves and counts complaints."""

    def __init__(self, db: AsyncDatabase, clock: Clock, registry: Registry, audit: Audit,
                 attachments: Attachments, wechat: Any, respond_hours: int, resolve_hours: int,
                 template_id: str) -> None:
        self.db = db
        self.docs = db["complaints"]
        self.steps = db["complaint_steps"]
        self.clock = clock
        self.registry = registry
        self.audit = audit
        self.attachments = attachments
        self.wechat = wechat
        self.respond_limit = timedelta(hours=respond_hours)
        self.resolve_limit = timedelta(hours=resolve_hours)
        self.template_id = template_id

    # -- filing -----------------------------------------------------------------------------
    async def file(self, user: MpUser, community: Community, category: Category, text: str,
                   photo_ids: list[str], unit_id: str | None) -> dict[str, Any]:
        if unit_id:
            unit = await self.db["bindings"].find_one({"user_id": user.user_id, "unit_id": unit_id,
                                                       "status": "active"})
            if unit is None or unit["community_id"] != community.id:
                raise InvalidInput(fields={"unit_id": "不是您绑定的房屋"})
        photos = await self.attachments.resolve(community.id, photo_ids, "photos")
        verdict = await screen_text(self.wechat, user, text, "text")  # risky: refused here
        now = self.clock.now()
        state = State.HELD if verdict == "review" else State.OPEN
        doc: dict[str, Any] = {
            "_id": "cp_" + secrets.token_hex(8), "community_id": community.id,
            "company_id": community.company_id, "area_path": list(community.area_path),
            "quarter": quarter_of(now), "category": category.value, "text": text,
            "text_check": verdict, "photos": photos, "unit_id": unit_id or "",
            "filed_by": user.user_id, "filed_at": now, "state": state.value,
            "level": Level.PROPERTY.value, "handler_area_id": "", "version": 1,
            "due_at": now + self.respond_limit if state is State.OPEN else None,
            "first_respond_by": now + self.respond_limit, "departments": [], "satisfaction": 0,
            # 0/1 counters, so the statistics are plain $group sums (FerretDB has no $cond).
            "n_received": int(state is State.OPEN), "n_responded": 0, "n_on_time": 0,
            "n_completed": 0, "n_rated": 0, "n_escalated": 0,
            "events": [_event(now, user, "file", "", state.value, Level.PROPERTY.value,
                              "" if state is State.OPEN else "内容待人工审核")],
        }
        await self.docs.insert_one(doc)
        await self.audit.record(user, "complaint.file", community_id=community.id,
                                target=doc["_id"], detail={"category": category.value,
                                                           "state": state.value})
        if state is State.OPEN:
            await self._notify_company(doc, community)
        return complaint_to_json(doc, for_owner=True)

    async def get(self, complaint_id: str) -> dict[str, Any]:
        doc = await self.docs.find_one({"_id": complaint_id})
        if doc is None:
            raise NotFound("投诉不存在", code="complaint_not_found")
        return await self.settle(doc)

    async def mine(self, user: MpUser) -> list[dict[str, Any]]:
        docs = await self.docs.find({"filed_by": user.user_id}).sort("filed_at", -1).to_list(200)
        return [complaint_to_json(d, for_owner=True) for d in docs]

    async def of_community(self, community_id: str, state: str | None,
                           level: str | None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"community_id": community_id}
        if state:
            query["state"] = state
        if level:
            query["level"] = level
        docs = await self.docs.find(query).sort("filed_at", -1).to_list(500)
        return [complaint_to_json(d) for d in docs]

    # -- transitions ------------------------------------------------------------------------
    async def transition(self, doc: dict[str, Any], actor: Principal | None, action: str,
                         to_state: State, note: str, extra: dict[str, Any] | None = None,
                         level: Level | None = None) -> dict[str, Any] | None:
        """Apply one step iff nobody has moved the complaint on from the version `doc` shows.

        The step is first claimed by inserting `<complaint>#<version>` into complaint_steps:
        the unique _id lets exactly one caller win, on FerretDB as on MongoDB. (FerretDB 1.24
        on SQLite applies a guarded update as read-modify-write, so two concurrent
        `update_one({_id, version: v})` calls can both report success; an insert of one _id
        cannot.) The claim holds the whole change, so anyone can finish it if the claimer dies.
        """
        now = self.clock.now()
        new_level = level or Level(doc["level"])
        step = {"_id": f"{doc['_id']}#{doc['version']}", "complaint_id": doc["_id"],
                "from_version": doc["version"], "at": now,
                "set": {"state": to_state.value, "level": new_level.value,
                        "version": doc["version"] + 1, **(extra or {})},
                "event": _event(now, actor, action, doc["state"], to_state.value,
                                new_level.value, note)}
        try:
            await self.steps.insert_one(step)
        except DuplicateKeyError:
            return None  # someone else moved it on from this version first
        updated = await self._apply(step)
        await self.audit.record(actor, f"complaint.{action}", community_id=doc["community_id"],
                                target=doc["_id"], reason=note,
                                detail={"from": doc["state"], "to": to_state.value,
                                        "level": new_level.value})
        return updated

    async def _apply(self, step: dict[str, Any]) -> dict[str, Any]:
        await self.docs.update_one({"_id": step["complaint_id"], "version": step["from_version"]},
                                   {"$set": step["set"], "$push": {"events": step["event"]}})
        doc = await self.docs.find_one({"_id": step["complaint_id"]})
        assert doc is not None
        return doc

    async def settle(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Finish a step whose claimer stopped between claiming and applying (crash recovery).

        Only claims older than STALE_CLAIM are finished, so the claimer's own apply is never raced.
        """
        step = await self.steps.find_one({"_id": f"{doc['_id']}#{doc['version']}"})
        if step is None or self.clock.now() - as_utc(step["at"]) < STALE_CLAIM:
            return doc
        log.warning("finishing an interrupted complaint step", extra={"step": step["_id"]})
        return await self._apply(step)

    async def _step(self, doc: dict[str, Any], actor: Principal, action: str, allowed: set[State],
                    to_state: State, note: str, extra: dict[str, Any] | None = None,
                    level: Level | None = None) -> dict[str, Any]:
        if State(doc["state"]) not in allowed:
            raise Conflict("投诉当前状态不允许该操作", code="complaint_wrong_state")
        updated = await self.transition(doc, actor, action, to_state, note, extra, level)
        if updated is None:
            raise Conflict("投诉已被他人处理，请刷新", code="complaint_changed")
        return updated

    async def respond(self, doc: dict[str, Any], staff: Principal, note: str) -> dict[str, Any]:
        now = self.clock.now()
        extra = {"due_at": now + self.resolve_limit, **self._first_response(doc, now)}
        updated = await self._step(doc, staff, "respond", {State.OPEN}, State.RESPONDED, note,
                                   extra)
        await self._notify_owner(updated)
        return updated

    async def resolve(self, doc: dict[str, Any], staff: Principal, note: str) -> dict[str, Any]:
        now = self.clock.now()
        extra = {"due_at": None, "n_completed": 1, "resolved_at": now,
                 **self._first_response(doc, now)}
        updated = await self._step(doc, staff, "resolve", {State.OPEN, State.RESPONDED},
                                   State.RESOLVED, note, extra)
        await self._notify_owner(updated)
        return updated

    def _first_response(self, doc: dict[str, Any], now: datetime) -> dict[str, Any]:
        if doc["n_responded"]:
            return {}
        return {"n_responded": 1, "responded_at": now,
                "n_on_time": int(now <= as_utc(doc["first_respond_by"]))}

    async def confirm(self, doc: dict[str, Any], user: MpUser, accept: bool, rating: int,
                      note: str) -> dict[str, Any]:
        if doc["filed_by"] != user.user_id:
            raise NotFound("投诉不存在", code="complaint_not_found")
        if accept:
            return await self._step(doc, user, "confirm", {State.RESOLVED}, State.CLOSED, note,
                                    {"satisfaction": rating, "n_rated": 1,
                                     "closed_at": self.clock.now()})
        # Not solved after all: back to the same handler, with a fresh limit to resolve it.
        return await self._step(doc, user, "reopen", {State.RESOLVED}, State.RESPONDED, note,
                                {"n_completed": 0, "due_at": self.clock.now() + self.resolve_limit})

    async def escalate(self, doc: dict[str, Any], actor: Principal | None, note: str,
                       community: Community | None = None) -> dict[str, Any] | None:
        """Hand the complaint up one level ('whistle'); None if someone else moved it first."""
        community = community or await self.registry.community(doc["community_id"])
        target = next_level(community, Level(doc["level"]))
        if target is None:
            raise Conflict("已在街道层级，无法继续上报", code="complaint_top_level")
        if State(doc["state"]) not in (State.OPEN, State.RESPONDED):
            raise Conflict("投诉当前状态不允许该操作", code="complaint_wrong_state")
        updated = await self.transition(
            doc, actor, "escalate", State.OPEN, note,
            {"handler_area_id": level_area(community, target),
             "due_at": self.clock.now() + self.respond_limit, "n_escalated": 1}, level=target)
        if updated is not None:
            await self._notify_owner(updated)
            await emit(self.db, self.clock, EventType.COMPLAINT_ESCALATED, f"complaint:{doc['_id']}",
                       f"{doc['_id']}#{doc['version']}", complaint_event(updated), community.id)
        return updated

    async def assign(self, doc: dict[str, Any], staff: Principal, departments: list[str],
                     note: str) -> dict[str, Any]:
        """The street calls departments in (镇街吹哨、部门报到)."""
        if doc["level"] != Level.STREET:
            raise Conflict("仅街道层级可指派部门", code="complaint_not_at_street")
        merged = sorted(set(doc["departments"]) | set(departments))
        return await self._step(doc, staff, "assign", {State.OPEN, State.RESPONDED},
                                State(doc["state"]), note, {"departments": merged})

    async def moderate(self, doc: dict[str, Any], staff: Principal, approve: bool,
                       note: str) -> dict[str, Any]:
        now = self.clock.now()
        if approve:
            # The response limit starts when the complaint reaches the company.
            updated = await self._step(doc, staff, "release", {State.HELD}, State.OPEN, note,
                                       {"due_at": now + self.respond_limit, "n_received": 1,
                                        "first_respond_by": now + self.respond_limit})
            await self._notify_company(updated, await self.registry.community(doc["community_id"]))
            return updated
        return await self._step(doc, staff, "reject", {State.HELD}, State.REJECTED, note)

    # -- the schedule -----------------------------------------------------------------------
    async def escalate_overdue(self, limit: int = 500) -> int:
        """Scheduled: escalate every complaint past its limit; returns how many this call moved."""
        now = self.clock.now()
        moved = 0
        candidates = await self.docs.find(
            {"state": {"$in": [State.OPEN.value, State.RESPONDED.value]},
             "level": {"$ne": Level.STREET.value}, "due_at": {"$lt": now}}
        ).limit(limit).to_list(None)
        communities: dict[str, Community] = {}
        for doc in candidates:
            doc = await self.settle(doc)
            if doc["state"] not in (State.OPEN, State.RESPONDED) or as_utc(doc["due_at"]) >= now:
                continue
            cid = doc["community_id"]
            if cid not in communities:
                communities[cid] = await self.registry.community(cid)
            what = "未按时响应" if doc["state"] == State.OPEN else "未按时办结"
            if await self.escalate(doc, None, f"{what}，自动上报", communities[cid]) is not None:
                moved += 1
        return moved

    # -- statistics -------------------------------------------------------------------------
    async def stats(self, match: dict[str, Any], by: tuple[str, ...]) -> list[dict[str, Any]]:
        """Received, responded (on time), completed, satisfaction per group; exact counts.

        One $group per counter: FerretDB 1.24 computes only the first accumulator of a $group
        stage and answers 0 for the others.
        """
        rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        for name, source in STAT_FIELDS:
            cursor = await self.docs.aggregate([
                {"$match": {**match, "n_received": 1}},
                {"$group": {"_id": {k: f"${k}" for k in by}, "v": {"$sum": f"${source}"}}},
            ])
            for r in await cursor.to_list(None):
                key = tuple(r["_id"][k] for k in by)
                rows.setdefault(key, {k: r["_id"][k] for k in by})[name] = r["v"]
        return [rows[k] for k in sorted(rows)]

    # -- notifications ----------------------------------------------------------------------
    async def set_contacts(self, community_id: str, user_ids: list[str]) -> list[str]:
        await self.db["complaint_contacts"].update_one(
            {"_id": community_id}, {"$set": {"user_ids": user_ids, "at": self.clock.now()}},
            upsert=True)
        return user_ids

    async def _notify_company(self, doc: dict[str, Any], community: Community) -> None:
        contacts = await self.db["complaint_contacts"].find_one({"_id": community.id})
        for user_id in (contacts or {}).get("user_ids", []):
            await self._send(user_id, doc, community.name)

    async def _notify_owner(self, doc: dict[str, Any]) -> None:
        await self._send(doc["filed_by"], doc, "")

    async def _send(self, user_id: str, doc: dict[str, Any], place: str) -> str:
        """One subscribe message; no quota (43101) or any WeChat failure never fails the case."""
        if not self.template_id:
            return "disabled"
        user = await self.db["users"].find_one({"_id": user_id}, {"openid": 1})
        if user is None:
            return "no_user"
        data = {"character_string1": doc["_id"],
                "thing2": CATEGORY_NAMES[Category(doc["category"])][:20],
                "phrase3": STATE_PHRASE[State(doc["state"])],
                "thing4": (place or "您的投诉有新进展")[:20]}
        outcome = "sent"
        try:
            await self.wechat.send_subscribe_message(user["openid"], self.template_id, data,
                                                     page="pages/index/index")
        except SubscribeQuotaExhausted:
            outcome = "no_quota"
        except WeChatError as exc:
            log.warning("complaint notice not sent: %s", exc.code)
            outcome = "failed"
        await self.db["complaint_notices"].insert_one({
            "_id": "cn_" + secrets.token_hex(8), "complaint_id": doc["_id"], "user_id": user_id,
            "state": doc["state"], "outcome": outcome, "at": self.clock.now()})
        return outcome


def _event(at: datetime, actor: Principal | None, action: str, from_state: str, to_state: str,
           level: str, note: str) -> dict[str, Any]:
    return {"at": at, "action": action, "actor": actor_of(actor), "from": from_state,
            "to": to_state, "level": level, "note": note}
