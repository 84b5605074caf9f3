"""Quarterly service rating (服务质量评价): one rating per voting person per period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from miniprogram_api.wechat import SecCheckResult, SecSuggest
from server.audit import Audit
from server.auth import MpUser
from server.clock import Clock, as_utc, iso
from server.errors import Conflict, Forbidden, InvalidInput, NotFound
from server.periods import last_ended_quarter, period
from server.registry import Community, Registry
from voting.roll import (
    AreaSource,
    EmptyRollError,
    Ownership,
    RollPerson,
    Scope,
    Unit,
    UnitKind,
    build_roll,
)

OVERALL = "overall"
SCORES = (1, 2, 3, 4, 5)


class TextChecker(Protocol):
    """The part of the WeChat client that screens user text (msg_sec_check v2)."""

    async def msg_sec_check(self, openid: str, content: str, scene: int = 2) -> SecCheckResult: ...


async def screen_text(wechat: TextChecker, user: MpUser, text: str, field: str) -> str:
    """'pass' or 'review' (kept but held from others); risky text is refused, nothing stored."""
    result = await wechat.msg_sec_check(user.openid, text, scene=2)
    if result.suggest is SecSuggest.RISKY:
        raise InvalidInput("内容含有违规信息，请修改后再提交", code="content_risky",
                           fields={field: "内容未通过安全检测"})
    return result.suggest.value


def rating_persons(community: Community, units: list[dict[str, Any]]) -> list[RollPerson]:
    """The persons who may rate: the voter roll's persons (one buyer = one person), minus the
    developer. Parking and storage count as in the community's voting rules."""
    counted = [u for u in units
               if not (u["kind"] == UnitKind.PARKING and not community.count_parking)
               and not (u["kind"] == UnitKind.STORAGE and not community.count_storage)]
    try:
        roll = build_roll(
            [Unit(u["_id"], u["building_id"], u["area_centi_m2"], AreaSource(u["area_source"]),
                  UnitKind(u["kind"])) for u in counted],
            [Ownership(u["_id"], tuple(u["owner_ids"]), u["voter_owner_id"],
                       bool(u["developer_held"])) for u in counted],
            Scope.whole_community(), count_parking_and_storage=True)
    except EmptyRollError:
        return []
    # The developer does not rate: its unsold units have no residents receiving the service,
    # and it usually chose the early-stage company itself (前期物业), so it is not independent.
    return [p for p in roll.persons if not p.is_developer]


@dataclass(frozen=True)
class Fraction:
    """An exact average: sum / count, with a display value rounded half up to 2 decimals."""

    total: int
    count: int

    def to_json(self) -> dict[str, Any]:
        if self.count == 0:
            return {"sum": 0, "count": 0, "average": None}
        hundredths = (200 * self.total + self.count) // (2 * self.count)
        return {"sum": self.total, "count": self.count,
                "average": f"{hundredths // 100}.{hundredths % 100:02d}"}


def period_to_json(doc: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {"id": doc["_id"], "community_id": doc["community_id"], "quarter": doc["quarter"],
            "company_id": doc["company_id"], "opens_at": iso(doc["opens_at"]),
            "closes_at": iso(doc["closes_at"]), "is_open": is_open(doc, now),
            "dimensions": doc["dimensions"], "eligible_persons": doc["eligible_count"]}


def is_open(doc: dict[str, Any], now: datetime) -> bool:
    return as_utc(doc["opens_at"]) <= now < as_utc(doc["closes_at"])


class Ratings:
    """Rating periods, ratings and their results."""

    def __init__(self, db: AsyncDatabase, clock: Clock, registry: Registry, audit: Audit,
                 wechat: TextChecker, window_days: int,
                 dimensions: tuple[tuple[str, str], ...]) -> None:
        self.db = db
        self.periods = db["rating_periods"]
        self.ratings = db["ratings"]
        self.clock = clock
        self.registry = registry
        self.audit = audit
        self.wechat = wechat
        self.window = timedelta(days=window_days)
        self.dimensions = [{"key": k, "name": n} for k, n in dimensions if k != OVERALL] + [
            {"key": OVERALL, "name": "总体评价"}]

    # -- periods ----------------------------------------------------------------------------
    async def ensure_period(self, community: Community, quarter: str) -> dict[str, Any]:
        """The rating period of `quarter`: it opens when the quarter ends (idempotent upsert)."""
        period_id = f"rp_{community.id}_{quarter}"
        doc = await self.periods.find_one({"_id": period_id})
        if doc is not None:
            return doc
        q = period(quarter, "quarter")
        if q.ends_at > self.clock.now():
            raise Conflict("该季度评价尚未开始", code="rating_not_open")
        persons = rating_persons(community, await self.registry.units(community.id))
        fields = {"community_id": community.id, "company_id": community.company_id,
                  "area_path": list(community.area_path), "quarter": quarter,
                  "opens_at": q.ends_at, "closes_at": q.ends_at + self.window,
                  "dimensions": self.dimensions,
                  "eligible_person_keys": sorted(p.person_id for p in persons),
                  "eligible_count": len(persons), "created_at": self.clock.now()}
        try:
            await self.periods.update_one({"_id": period_id}, {"$setOnInsert": fields},
                                          upsert=True)
        except DuplicateKeyError:
            pass  # another process opened it at the same moment: theirs is the same period
        doc = await self.periods.find_one({"_id": period_id})
        assert doc is not None
        return doc

    async def period(self, community_id: str, quarter: str) -> dict[str, Any]:
        doc = await self.periods.find_one({"_id": f"rp_{community_id}_{quarter}"})
        if doc is None:
            raise NotFound("该季度没有评价", code="rating_period_not_found")
        return doc

    async def open_due_periods(self, communities: list[Community]) -> int:
        """Scheduled: open the last quarter's period in every community while its window runs."""
        now = self.clock.now()
        quarter = last_ended_quarter(now)
        if now >= period(quarter).ends_at + self.window:
            return 0
        existing = set(await self.periods.distinct("community_id", {"quarter": quarter}))
        opened = 0
        for community in communities:
            if community.id not in existing:
                await self.ensure_period(community, quarter)
                opened += 1
        return opened

    # -- rating -----------------------------------------------------------------------------
    async def my_persons(self, user: MpUser, community: Community,
                         doc: dict[str, Any]) -> list[RollPerson]:
        bindings = await self.db["bindings"].find(
            {"user_id": user.user_id, "community_id": community.id, "role": "owner",
             "status": "active"}).to_list(None)
        owner_ids = {b["owner_id"] for b in bindings if b.get("owner_id")}
        eligible = set(doc["eligible_person_keys"])
        persons = rating_persons(community, await self.registry.units(community.id))
        return [p for p in persons if p.voter_owner_id in owner_ids and p.person_id in eligible]

    async def rate(self, user: MpUser, community: Community, quarter: str, scores: dict[str, int],
                   comment: str, person_key: str | None) -> dict[str, Any]:
        doc = await self.period(community.id, quarter)
        now = self.clock.now()
        if now >= as_utc(doc["closes_at"]):
            raise Conflict("本季度评价已截止", code="rating_closed")
        if now < as_utc(doc["opens_at"]):
            raise Conflict("本季度评价尚未开始", code="rating_not_open")
        wanted = [d["key"] for d in doc["dimensions"]]
        problems = {f"scores.{k}": "必填" for k in wanted if k not in scores}
        problems.update({f"scores.{k}": "不允许的字段" for k in scores if k not in wanted})
        if problems:
            raise InvalidInput(fields=problems)
        persons = await self.my_persons(user, community, doc)
        if not persons:
            raise Forbidden("仅业主（共有房屋为指定表决人）可以评价", code="not_a_rating_person")
        if person_key is None and len(persons) > 1:
            raise InvalidInput("请选择以哪一户评价", code="person_required",
                               fields={"person_key": "可选：" + "、".join(
                                   p.person_id for p in persons)})
        person = next((p for p in persons if person_key in (None, p.person_id)), None)
        if person is None:
            raise InvalidInput(fields={"person_key": "不是您可以评价的一户"})
        comment_status = await screen_text(self.wechat, user, comment, "comment") if comment else ""
        rating = {
            "period_id": doc["_id"], "person_key": person.person_id, "user_id": user.user_id,
            "community_id": community.id, "company_id": doc["company_id"], "quarter": quarter,
            "scores": scores, "score_list": [{"dim": k, "score": scores[k]} for k in wanted],
            "comment": comment, "comment_status": comment_status, "rated_at": now,
        }
        # One rating per person: the unique (period_id, person_key) index refuses a second
        # rater of the same household; the same rater replaces their own rating until close.
        try:
            await self.ratings.replace_one({"period_id": doc["_id"], "person_key": person.person_id,
                                            "user_id": user.user_id}, rating, upsert=True)
        except DuplicateKeyError:
            raise Conflict("该户已由其他家庭成员评价", code="person_already_rated") from None
        await self.audit.record(user, "rating.submit", community_id=community.id,
                                target=doc["_id"], detail={"person_key": person.person_id})
        return self.rating_to_json(rating)

    @staticmethod
    def rating_to_json(doc: dict[str, Any]) -> dict[str, Any]:
        return {"quarter": doc["quarter"], "person_key": doc["person_key"], "scores": doc["scores"],
                "comment": doc["comment"], "comment_status": doc["comment_status"],
                "rated_at": iso(doc["rated_at"])}

    async def my_rating(self, user: MpUser, period_id: str) -> list[dict[str, Any]]:
        docs = await self.ratings.find(
            {"period_id": period_id, "user_id": user.user_id}).to_list(None)
        return [self.rating_to_json(d) for d in docs]

    # -- results ----------------------------------------------------------------------------
    async def results(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Exact sums and counts per dimension, participation and the 1–5 distribution."""
        rows = await (await self.ratings.aggregate([
            {"$match": {"period_id": doc["_id"], "rated_at": {"$lt": doc["closes_at"]}}},
            {"$unwind": "$score_list"},
            {"$group": {"_id": {"dim": "$score_list.dim", "score": "$score_list.score"},
                        "n": {"$sum": 1}}},
        ])).to_list(None)
        raters = await self.ratings.count_documents(
            {"period_id": doc["_id"], "rated_at": {"$lt": doc["closes_at"]}})
        dist = {(r["_id"]["dim"], r["_id"]["score"]): r["n"] for r in rows}
        dimensions = []
        for d in doc["dimensions"]:
            counts = {str(s): dist.get((d["key"], s), 0) for s in SCORES}
            total = sum(s * counts[str(s)] for s in SCORES)
            dimensions.append({"key": d["key"], "name": d["name"], "distribution": counts,
                               **Fraction(total, sum(counts.values())).to_json()})
        return {"period": period_to_json(doc, self.clock.now()),
                "participation": {"rated": raters, "eligible": doc["eligible_count"],
                                  **_percent(raters, doc["eligible_count"])},
                "dimensions": dimensions}

    async def overall_by_company(self, quarters: list[str], area_id: str
                                 ) -> dict[str, tuple[int, int]]:
        """Per company: (sum, count) of overall scores in the area's periods of `quarters`."""
        out: dict[str, tuple[int, int]] = {}
        async for doc in self.periods.find({"quarter": {"$in": quarters}, "area_path": area_id}):
            res = await self.results(doc)
            overall = next(d for d in res["dimensions"] if d["key"] == OVERALL)
            total, count = out.get(doc["company_id"], (0, 0))
            out[doc["company_id"]] = (total + overall["sum"], count + overall["count"])
        return out


def _percent(part: int, whole: int) -> dict[str, Any]:
    """An exact ratio plus a display percentage rounded half up to 2 decimals."""
    if whole == 0:
        return {"percent": None}
    basis_points = (20000 * part + whole) // (2 * whole)
    return {"percent": f"{basis_points // 100}.{basis_points % 100:02d}"}
