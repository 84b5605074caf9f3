"""Owner e-voting over HTTP: committees draft and publish, owners vote, anyone entitled checks."""

from __future__ import annotations

from typing import Any

from handlers.base import Auth, Endpoint, Reply, Request
from server.access import require_mp, require_staff, staff_covers
from server.auth import Role
from server.ballots import BallotStatus, ballot_summary
from server.casting import CastBy
from server.clock import as_utc, parse_time
from server.errors import Forbidden, InvalidInput, NotFound
from server.registry import Community
from server.validation import BOOL, ID, TIMESTAMP, array, enum, integer, obj, string
from voting.records import Channel

SHA256 = string(64, 64, pattern="^[0-9a-f]{64}$")
CHOICE = enum("agree", "disagree", "abstain", "blank")
CHOICES = {"type": "object", "minProperties": 1, "maxProperties": 50,
           "additionalProperties": CHOICE, "propertyNames": ID}
ITEM = obj({"title": string(1, 200), "kind": enum("ordinary", "special")},
           {"item_id": string(1, 16, pattern="^[A-Za-z0-9_-]+$"),
            "options": array(enum("agree", "disagree", "abstain"), 1, 3, uniqueItems=True)})
RULES = obj(optional={"revote": enum("never", "once", "last"), "follow_majority": BOOL,
                      "follow_majority_basis": string(1, 500),
                      "blank_policy": enum("count_as_participation_abstain", "exclude"),
                      "show_counts_before_close": BOOL})
BALLOT_BODY = obj(
    {"title": string(1, 200), "items": array(ITEM, 1, 20),
     "scope": obj({"kind": enum("community", "buildings", "units")}, {"ids": array(ID, 0, 20000)}),
     "opens_at": TIMESTAMP, "closes_at": TIMESTAMP},
    {"description": string(0, 5000), "rules": RULES, "notice_days": integer(0, 365),
     "publicity_days": integer(1, 365), "supersedes_ballot_id": ID})
BALLOT = {"type": "object", "required": ["id", "status", "items"], "properties": {
    "id": ID, "status": string(), "items": {"type": "array"}, "is_open": BOOL}}
RECEIPT = {"type": "object", "required": ["ballot_id", "index", "leaf_hash", "signature"]}
FRACTION = obj({"numerator": integer(0), "denominator": integer(1)})
TURNOUT = obj({"area": FRACTION, "headcount": FRACTION, "quorum_met": BOOL,
               "area_still_needed_centi_m2": integer(0), "headcount_still_needed": integer(0)})
WRITERS = (Role.COMMITTEE,)
READERS = (Role.COMMITTEE, Role.OFFICIAL, Role.PLATFORM_ADMIN)


async def _community_for_writing(req: Request, community_id: str) -> Community:
    """The committee drafts ballots; the street office does where no committee exists yet."""
    staff = require_staff(req.principal)
    community = await req.services.registry.community(community_id)
    if staff_covers(staff, community, WRITERS):
        return community
    if not community.has_committee and staff_covers(staff, community, (Role.OFFICIAL,)):
        return community
    raise Forbidden("无权组织该小区的表决", code="out_of_scope")


async def _ballot_for_staff(req: Request, write: bool) -> tuple[dict[str, Any], Community]:
    ballot = await req.services.ballots.get(req.args["ballot_id"])
    if write:
        return ballot, await _community_for_writing(req, ballot["community_id"])
    community = await req.services.access.staff_community(req.principal, ballot["community_id"],
                                                          READERS)
    return ballot, community


async def _ballot_for_owner(req: Request) -> tuple[dict[str, Any], list[str]]:
    """The ballot and the caller's owner ids in its community (family and tenants may read)."""
    ballot = await req.services.ballots.get(req.args["ballot_id"])
    if ballot["status"] == BallotStatus.DRAFT:
        raise NotFound("表决不存在", code="ballot_not_found")
    bindings = await req.services.access.owner_bindings(req.principal, ballot["community_id"],
                                                        ("owner", "family", "tenant"))
    if not bindings and not await req.services.store.db["proxy_auths"].find_one(
            {"ballot_id": ballot["_id"], "proxy_user_id": require_mp(req.principal).user_id}):
        # Neither a resident nor a proxy holder of this ballot: it does not exist for them.
        raise NotFound("表决不存在", code="ballot_not_found")
    return ballot, sorted({b["owner_id"] for b in bindings if b["role"] == "owner" and b["owner_id"]})


def _public_view(ballot: dict[str, Any], now: Any) -> dict[str, Any]:
    view = ballot_summary(ballot, now)
    if ballot["status"] == BallotStatus.CLOSED:
        view["result"] = ballot["result"]
        view["result_signature"] = ballot["result_signature"]
    return view


# -- committee / street office ---------------------------------------------------------------
async def create_ballot(req: Request) -> Any:
    community = await _community_for_writing(req, req.args["community_id"])
    staff = require_staff(req.principal)
    doc = await req.services.ballots.create(community, staff.staff_id, req.body)
    await req.services.audit.record(staff, "ballot.create", community_id=community.id,
                                    target=doc["_id"], detail={"title": doc["title"]})
    return Reply(status=201, body=ballot_summary(doc, req.services.clock.now()))


async def list_ballots(req: Request) -> Any:
    community = await req.services.access.staff_community(req.principal, req.args["community_id"],
                                                          READERS)
    docs = await req.services.ballots.list_for(community.id, include_drafts=True)
    now = req.services.clock.now()
    return {"ballots": [ballot_summary(d, now) for d in docs]}


async def get_ballot_admin(req: Request) -> Any:
    ballot, _ = await _ballot_for_staff(req, write=False)
    view = _public_view(ballot, req.services.clock.now())
    if ballot["status"] in (BallotStatus.PUBLISHED, BallotStatus.CLOSING, BallotStatus.CLOSED):
        view["turnout"] = await req.services.ballots.live_turnout(ballot)
    return view


async def publish_ballot(req: Request) -> Any:
    ballot, community = await _ballot_for_staff(req, write=True)
    staff = require_staff(req.principal)
    doc = await req.services.ballots.publish(ballot["_id"], staff.staff_id)
    await req.services.audit.record(staff, "ballot.publish", community_id=community.id,
                                    target=doc["_id"], detail={"totals": doc["totals"]})
    return ballot_summary(doc, req.services.clock.now())


async def close_ballot(req: Request) -> Any:
    ballot, _ = await _ballot_for_staff(req, write=True)
    now = req.services.clock.now()
    if ballot["status"] == BallotStatus.PUBLISHED and now < as_utc(ballot["closes_at"]):
        raise InvalidInput("截止时间未到，不能提前结束", code="ballot_not_due",
                           fields={"closes_at": "截止时间未到"})
    await req.services.ballots.close(ballot["_id"])
    return _public_view(await req.services.ballots.get(ballot["_id"]), now)


async def ballot_roll(req: Request) -> Any:
    ballot, _ = await _ballot_for_staff(req, write=False)
    roll = await req.services.ballots.roll(ballot["_id"])
    return {"totals": ballot.get("totals"),
            "persons": [{k: r[k] for k in ("person_id", "unit_ids", "area_centi_m2", "owner_ids",
                                            "voter_owner_id", "is_developer")} for r in roll]}


async def ballot_votes(req: Request) -> Any:
    """Per-voter records: only the committee and officials in scope, never the public."""
    ballot, _ = await _ballot_for_staff(req, write=False)
    out = []
    for e in await req.services.ledger.entries(ballot["_id"]):
        if e.entry["type"] == "vote" and e.private:
            public = e.entry["public"]
            out.append({"index": e.seq, "person_id": e.private["person_id"],
                        "round": public["round"], "channel": public["channel"],
                        "cast_at": public["cast_at"], "supersedes": public["supersedes"],
                        "choices": e.private["choices"]})
    return {"votes": out}


async def paper_entry(req: Request) -> Any:
    ballot, _ = await _ballot_for_staff(req, write=True)
    staff = require_staff(req.principal)
    await _roll_person(req, ballot["_id"], req.body["person_id"])
    result = await req.services.casting.paper_first_entry(
        ballot, req.body["person_id"], req.body["choices"], req.body["scan_sha256"], staff.staff_id)
    return Reply(status=201, body=result)


async def paper_confirm(req: Request) -> Any:
    ballot, community = await _ballot_for_staff(req, write=True)
    staff = require_staff(req.principal)
    entry = await req.services.store.db["paper_entries"].find_one({"_id": req.args["entry_id"]})
    if entry is None or entry["ballot_id"] != ballot["_id"]:
        raise NotFound("纸质票录入记录不存在", code="paper_entry_not_found")
    person = await _roll_person(req, ballot["_id"], entry["person_id"])
    receipt = await req.services.casting.paper_confirm(
        ballot, entry["_id"], req.body["choices"], req.body["scan_sha256"], staff.staff_id, person)
    await req.services.audit.record(staff, "ballot.paper_vote", community_id=community.id,
                                    target=ballot["_id"], detail={"index": receipt["index"]})
    await req.services.vote_notices.notify(ballot, person, receipt)
    return Reply(status=201, body=receipt)


async def record_proxy(req: Request) -> Any:
    ballot, community = await _ballot_for_staff(req, write=True)
    staff = require_staff(req.principal)
    person = await _roll_person(req, ballot["_id"], req.body["person_id"])
    phone_hash = req.services.crypto.keyed_hash(req.body["proxy_phone"], "phone")
    proxy = await req.services.store.db["users"].find_one({"phone_hash": phone_hash})
    if proxy is None:
        raise InvalidInput("代理人须先登录小程序并验证手机号", code="proxy_not_registered",
                           fields={"proxy_phone": "未找到已验证该手机号的用户"})
    result = await req.services.casting.record_proxy(
        ballot, person, proxy["_id"], req.body["document_sha256"],
        parse_time(req.body["valid_from"]), parse_time(req.body["valid_until"]), staff.staff_id)
    await req.services.audit.record(staff, "ballot.proxy_recorded", community_id=community.id,
                                    target=ballot["_id"], detail={"auth_index": result["auth_index"]})
    return Reply(status=201, body=result)


async def record_transfer(req: Request) -> Any:
    """After the registry shows a new owner of a unit, the committee records it for the ballot."""
    ballot, community = await _ballot_for_staff(req, write=True)
    staff = require_staff(req.principal)
    unit = await req.services.registry.unit(req.body["unit_id"])
    person = await req.services.store.db["ballot_rolls"].find_one(
        {"ballot_id": ballot["_id"], "unit_ids": unit["_id"]})
    if person is None:
        raise Forbidden("该房屋不在本表决范围内", code="not_on_roll")
    if unit["voter_owner_id"] == person["current_voter_owner_id"]:
        raise InvalidInput("名册中该房屋的业主未变更，请先导入过户后的名册", code="no_transfer",
                           fields={"unit_id": "业主未变更"})
    result = await req.services.casting.transfer(ballot, person, unit["_id"],
                                                 unit["voter_owner_id"],
                                                 req.body["document_sha256"], staff.staff_id)
    await req.services.audit.record(staff, "ballot.transfer", community_id=community.id,
                                    target=ballot["_id"], detail=result)
    return Reply(status=201, body=result)


async def bundle_admin(req: Request) -> Any:
    ballot, _ = await _ballot_for_staff(req, write=False)
    return await req.services.ballots.bundle(ballot["_id"], req.query.get("variant", "auditor"))


async def _roll_person(req: Request, ballot_id: str, person_id: str) -> dict[str, Any]:
    person = await req.services.store.db["ballot_rolls"].find_one({"_id": f"{ballot_id}:{person_id}"})
    if person is None:
        raise Forbidden("不在本表决的投票人名册中", code="not_on_roll")
    return person


# -- owners --------------------------------------------------------------------------------
async def my_ballots(req: Request) -> Any:
    bindings = await req.services.access.owner_bindings(req.principal, None,
                                                        ("owner", "family", "tenant"))
    now = req.services.clock.now()
    out = []
    for community_id in sorted({b["community_id"] for b in bindings}):
        for doc in await req.services.ballots.list_for(community_id, include_drafts=False):
            out.append(ballot_summary(doc, now))
    return {"ballots": out}


async def get_ballot_mp(req: Request) -> Any:
    ballot, owner_ids = await _ballot_for_owner(req)
    now = req.services.clock.now()
    view = _public_view(ballot, now)
    persons = await req.services.ballots.persons_for_owners(ballot["_id"], owner_ids)
    view["my_persons"] = [{"person_id": p["person_id"], "unit_ids": p["unit_ids"],
                           "area_centi_m2": p["area_centi_m2"]} for p in persons]
    if ballot["status"] != BallotStatus.DRAFT:
        view["turnout"] = await req.services.ballots.live_turnout(ballot)
    if ballot["status"] == BallotStatus.PUBLISHED and ballot["rules"]["show_counts_before_close"]:
        view["live_counts"] = await req.services.ballots.live_counts(ballot)
    return view


async def cast_vote(req: Request) -> Any:
    user = require_mp(req.principal)
    ballot, owner_ids = await _ballot_for_owner(req)
    body = req.body
    if "proxy_auth_index" in body:
        if "person_id" not in body:
            raise InvalidInput(fields={"person_id": "代理投票须指明被代理人"})
        person = await _roll_person(req, ballot["_id"], body["person_id"])
        await req.services.casting.proxy_authorisation(
            ballot["_id"], body["proxy_auth_index"], user.user_id, person["person_id"])
        by = CastBy(Channel.PROXY, {"auth_index": body["proxy_auth_index"],
                                    "proxy_user_id": user.user_id})
    else:
        if not owner_ids:
            raise Forbidden("只有业主可以投票", code="not_an_owner")
        persons = await req.services.ballots.persons_for_owners(ballot["_id"], owner_ids)
        if not persons:
            raise Forbidden("您的房屋不在本表决范围内", code="not_on_roll")
        if "person_id" in body:
            person = next((p for p in persons if p["person_id"] == body["person_id"]), None)
            if person is None:
                raise Forbidden("您不能代表该投票人", code="not_your_vote")
        elif len(persons) == 1:
            person = persons[0]
        else:
            raise InvalidInput("您可代表多个投票人，请指明 person_id", code="person_required",
                               fields={"person_id": "必填"})
        by = CastBy(Channel.ONLINE, {"owner_id": person["current_voter_owner_id"]})
    receipt = await req.services.casting.cast(ballot, person, body["choices"], by)
    await req.services.vote_notices.notify(ballot, person, receipt)
    return Reply(status=201, body=receipt)


async def my_receipts(req: Request) -> Any:
    ballot, owner_ids = await _ballot_for_owner(req)
    persons = await req.services.ballots.persons_for_owners(ballot["_id"], owner_ids)
    owned = await req.services.store.db["ballot_rolls"].find(
        {"ballot_id": ballot["_id"], "owner_ids": {"$in": owner_ids}}).to_list(None)
    person_ids = sorted({p["person_id"] for p in persons + owned})
    return {"receipts": await req.services.casting.receipts_for(ballot["_id"], person_ids)}


async def bundle_mp(req: Request) -> Any:
    ballot, _ = await _ballot_for_owner(req)
    return await req.services.ballots.bundle(ballot["_id"], "public")


async def poster(req: Request) -> Any:
    ballot, _ = await _ballot_for_staff(req, write=False)
    fmt = req.query.get("format", "png")
    content = await req.services.posters.poster(ballot, fmt)
    return Reply(body=content, content_type="image/png" if fmt == "png" else "image/svg+xml")


B = "/api/admin/v1/ballots/{ballot_id}"
M = "/api/mp/v1/ballots/{ballot_id}"

endpoints = [
    Endpoint("POST", "/api/admin/v1/communities/{community_id}/ballots", create_ballot, Auth.ADMIN,
             "起草表决（业委会；未成立业委会的由街道）", BALLOT, body=BALLOT_BODY, status=201,
             tag="voting"),
    Endpoint("GET", "/api/admin/v1/communities/{community_id}/ballots", list_ballots, Auth.ADMIN,
             "小区的表决列表", obj({"ballots": array(BALLOT)}), tag="voting"),
    Endpoint("GET", B, get_ballot_admin, Auth.ADMIN, "表决详情、实时参与率与结果", BALLOT,
             tag="voting"),
    Endpoint("POST", B + "/publish", publish_ballot, Auth.ADMIN,
             "发布表决：冻结投票人名册与内容，写入日志", BALLOT, tag="voting"),
    Endpoint("POST", B + "/close", close_ballot, Auth.ADMIN, "截止后结束并计票（定时任务也会执行）",
             BALLOT, tag="voting"),
    Endpoint("GET", B + "/roll", ballot_roll, Auth.ADMIN, "冻结的投票人名册与总数 A、N",
             {"type": "object"}, tag="voting"),
    Endpoint("GET", B + "/votes", ballot_votes, Auth.ADMIN, "逐人投票记录（仅业委会与主管部门）",
             obj({"votes": array({"type": "object"})}), tag="voting"),
    Endpoint("POST", B + "/paper-entries", paper_entry, Auth.ADMIN, "纸质票首次录入",
             obj({"entry_id": ID, "state": string()}),
             body=obj({"person_id": string(1, 200), "choices": CHOICES, "scan_sha256": SHA256}),
             status=201, tag="voting"),
    Endpoint("POST", B + "/paper-entries/{entry_id}/confirm", paper_confirm, Auth.ADMIN,
             "纸质票复核录入（须另一名操作员，一致后计入）", RECEIPT,
             body=obj({"choices": CHOICES, "scan_sha256": SHA256}), status=201, tag="voting"),
    Endpoint("POST", B + "/proxies", record_proxy, Auth.ADMIN, "登记书面委托（委托书扫描件哈希）",
             {"type": "object"},
             body=obj({"person_id": string(1, 200), "proxy_phone": string(11, 11, pattern="^1[0-9]{10}$"),
                       "document_sha256": SHA256, "valid_from": TIMESTAMP,
                       "valid_until": TIMESTAMP}), status=201, tag="voting"),
    Endpoint("POST", B + "/transfers", record_transfer, Auth.ADMIN,
             "表决期间房屋过户：已投票的保留，未投票的由新业主投票",
             obj({"index": integer(0), "effect": enum("voter_changed", "vote_stands"),
                  "person_id": string(1, 200)}),
             body=obj({"unit_id": ID, "document_sha256": SHA256}), status=201, tag="voting"),
    Endpoint("GET", B + "/bundle", bundle_admin, Auth.ADMIN, "导出核验包（审计版或公开版）",
             {"type": "object"}, query=obj(optional={"variant": enum("auditor", "public")}),
             tag="voting"),
    Endpoint("GET", B + "/poster", poster, Auth.ADMIN, "表决海报（PNG 或 SVG，含小程序码）",
             query=obj(optional={"format": enum("png", "svg")}), tag="voting",
             raw_response="image/png"),
    Endpoint("GET", "/api/mp/v1/ballots", my_ballots, Auth.MP, "我所在小区的表决",
             obj({"ballots": array(BALLOT)}), tag="mp"),
    Endpoint("GET", M, get_ballot_mp, Auth.MP, "表决详情、我可投的票、参与率与结果", BALLOT,
             tag="mp"),
    Endpoint("POST", M + "/votes", cast_vote, Auth.MP, "投票（本人或受托代理），返回签名回执",
             RECEIPT, body=obj({"choices": CHOICES},
                               {"person_id": string(1, 200), "proxy_auth_index": integer(0)}),
             status=201, tag="mp"),
    Endpoint("GET", M + "/receipts", my_receipts, Auth.MP, "以我名义记录的投票回执及包含证明",
             obj({"receipts": array({"type": "object"})}), tag="mp"),
    Endpoint("GET", M + "/bundle", bundle_mp, Auth.MP, "公开核验包（不含任何人的选择）",
             {"type": "object"}, tag="mp"),
]
