"""Ballots: drafting, publication with a frozen roll, closing, the signed result, bundles."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from server.clock import Clock, as_utc, iso, parse_time
from server.errors import Conflict, InvalidInput, NotFound
from server.ledger import Ledger, PositionTaken
from server.outbox import EventType, emit
from server.registry import Community, Registry
from voting.records import FORMAT, CountedVote, final_votes, pseudonym, roll_entries_sha256, tally_items
from voting.roll import (
    AreaSource,
    Ownership,
    RollError,
    Scope,
    ScopeKind,
    Unit,
    UnitKind,
    VoterRoll,
    build_roll,
)
from voting.signing import KeyPurpose
from voting.tally import BlankPolicy, Choice, CountedChoice, MatterKind, RollTotals, turnout

NOTICE_DAYS_MIN = 15  # Notice at least 15 days before the assembly (DOMAIN §3.12).


class BallotStatus(StrEnum):
    """A ballot's life: voting happens while published and inside [opens_at, closes_at)."""

    DRAFT = "draft"
    PUBLISHED = "published"
    CLOSING = "closing"
    CLOSED = "closed"
    WITHDRAWN = "withdrawn"


class VotingClosed(Conflict):
    """The ballot's voting window has ended (or not begun)."""

    code = "voting_closed"
    message = "投票未开始或已截止"


def ballot_summary(doc: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """What anyone entitled to see a ballot sees (no roll, no per-voter data)."""
    status = doc["status"]
    opens, closes = as_utc(doc["opens_at"]), as_utc(doc["closes_at"])
    return {
        "id": doc["_id"], "community_id": doc["community_id"], "title": doc["title"],
        "description": doc["description"], "items": doc["items"], "scope": doc["scope"],
        "rules": doc["rules"], "status": status,
        "is_open": status == BallotStatus.PUBLISHED and opens <= now < closes,
        "opens_at": iso(opens), "closes_at": iso(closes),
        "published_at": iso(doc["published_at"]) if doc.get("published_at") else None,
        "publicity_until": iso(doc["publicity_until"]) if doc.get("publicity_until") else None,
        "supersedes_ballot_id": doc.get("supersedes_ballot_id"),
        "withdrawn_by": doc.get("withdrawn_by"),
        "totals": doc.get("totals"),
    }


class Ballots:
    """Creates, publishes, closes and counts ballots; every step is a guarded single update."""

    def __init__(self, db: AsyncDatabase, clock: Clock, registry: Registry, ledger: Ledger) -> None:
        self.db = db
        self.clock = clock
        self.registry = registry
        self.ledger = ledger

    async def get(self, ballot_id: str) -> dict[str, Any]:
        doc = await self.db["ballots"].find_one({"_id": ballot_id})
        if doc is None:
            raise NotFound("表决不存在", code="ballot_not_found")
        return doc

    async def list_for(self, community_id: str, include_drafts: bool) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"community_id": community_id}
        if not include_drafts:
            query["status"] = {"$ne": BallotStatus.DRAFT.value}
        return await self.db["ballots"].find(query).sort("created_at", -1).to_list(None)

    # -- drafting ---------------------------------------------------------------------------
    async def create(self, community: Community, created_by: str, body: Mapping[str, Any]) -> dict[str, Any]:
        items = []
        for i, item in enumerate(body["items"]):
            options = list(item.get("options", ["agree", "disagree", "abstain"]))
            items.append({"item_id": item.get("item_id") or f"i{i + 1}", "title": item["title"],
                          "kind": item["kind"], "options": options})
        if len({i["item_id"] for i in items}) != len(items):
            raise InvalidInput(fields={"items": "事项编号重复"})
        rules = body.get("rules", {})
        doc = {
            "_id": "bl_" + secrets.token_hex(8), "community_id": community.id,
            "community_name": community.name, "title": body["title"], "description": body.get("description", ""),
            "items": items,
            "scope": {"kind": body["scope"]["kind"], "ids": sorted(set(body["scope"].get("ids", [])))},
            "rules": {
                "revote": rules.get("revote", "never"),
                "follow_majority": bool(rules.get("follow_majority", False)),
                "follow_majority_basis": rules.get("follow_majority_basis", ""),
                "blank_policy": rules.get("blank_policy", BlankPolicy.COUNT_AS_PARTICIPATION_ABSTAIN.value),
                "show_counts_before_close": bool(rules.get("show_counts_before_close", False)),
                "count_parking": community.count_parking, "count_storage": community.count_storage,
            },
            "opens_at": parse_time(body["opens_at"]), "closes_at": parse_time(body["closes_at"]),
            "publicity_days": int(body.get("publicity_days", 7)),
            "notice_days": int(body.get("notice_days", NOTICE_DAYS_MIN)),
            "status": BallotStatus.DRAFT.value, "created_by": created_by,
            "created_at": self.clock.now(), "supersedes_ballot_id": body.get("supersedes_ballot_id"),
            "pseudonym_key": base64.b64encode(secrets.token_bytes(32)).decode(),
        }
        if doc["supersedes_ballot_id"]:
            old = await self.get(doc["supersedes_ballot_id"])
            if old["community_id"] != community.id:
                raise InvalidInput(fields={"supersedes_ballot_id": "须为本小区的表决"})
        await self.db["ballots"].insert_one(doc)
        return doc

    def check_publishable(self, doc: Mapping[str, Any], now: datetime) -> None:
        """Refuse what the law or common sense forbids; every problem named by field."""
        fields: dict[str, str] = {}
        for i, item in enumerate(doc["items"]):
            if "disagree" not in item["options"]:
                fields[f"items[{i}].options"] = "必须包含“反对”选项"
            if "agree" not in item["options"]:
                fields[f"items[{i}].options"] = "必须包含“同意”选项"
        opens, closes = as_utc(doc["opens_at"]), as_utc(doc["closes_at"])
        if closes <= opens:
            fields["closes_at"] = "截止时间须晚于开始时间"
        if opens < now + timedelta(days=doc["notice_days"]):
            fields["opens_at"] = f"须在公告后至少 {doc['notice_days']} 日开始"
        if doc["notice_days"] < NOTICE_DAYS_MIN:
            fields["notice_days"] = f"公告期不得少于 {NOTICE_DAYS_MIN} 日"
        if doc["rules"]["follow_majority"] and not doc["rules"].get("follow_majority_basis"):
            fields["rules.follow_majority_basis"] = "“未参与表决视为同意多数”须写明议事规则依据"
        if doc["scope"]["kind"] != ScopeKind.COMMUNITY and not doc["scope"]["ids"]:
            fields["scope.ids"] = "表决范围为空"
        if fields:
            raise InvalidInput("表决不能发布", code="ballot_not_publishable", fields=fields)

    # -- publication ------------------------------------------------------------------------
    async def build_roll(self, doc: Mapping[str, Any]) -> VoterRoll:
        units_docs = await self.registry.units(doc["community_id"])
        units = [Unit(u["_id"], u["building_id"], u["area_centi_m2"], AreaSource(u["area_source"]),
                      UnitKind(u["kind"])) for u in units_docs]
        ownerships = [Ownership(u["_id"], tuple(u["owner_ids"]),
                                u["voter_owner_id"] if len(u["owner_ids"]) > 1 else None,
                                bool(u["developer_held"])) for u in units_docs]
        scope = {ScopeKind.COMMUNITY: lambda ids: Scope.whole_community(),
                 ScopeKind.BUILDINGS: Scope.buildings,
                 ScopeKind.UNITS: Scope.units}[ScopeKind(doc["scope"]["kind"])](doc["scope"]["ids"])
        rules = doc["rules"]
        if rules["count_parking"] != rules["count_storage"]:
            raise InvalidInput(fields={"rules": "车位与储藏室的计入规则须一致"})
        try:
            return build_roll(units, ownerships, scope,
                              count_parking_and_storage=rules["count_parking"])
        except RollError as exc:
            raise InvalidInput(f"表决范围或名册有误：{exc}", code="roll_invalid",
                               fields={"scope": str(exc)}) from None

    async def publish(self, ballot_id: str, staff_id: str) -> dict[str, Any]:
        doc = await self.get(ballot_id)
        now = self.clock.now()
        if doc["status"] != BallotStatus.DRAFT:
            raise Conflict("只有草稿可以发布", code="ballot_not_draft")
        self.check_publishable(doc, now)
        roll = await self.build_roll(doc)
        key = base64.b64decode(doc["pseudonym_key"])
        entries = [roll_entry(p) for p in roll.persons]
        # The frozen entry never changes (its hash is signed); `current_voter_owner_id` follows
        # unit transfers during voting and `has_voted` arbitrates between a vote and a transfer.
        rows = [{"_id": f"{ballot_id}:{e['person_id']}", "ballot_id": ballot_id,
                 "pseudonym": pseudonym(key, e["person_id"]), **e,
                 "current_voter_owner_id": e["voter_owner_id"], "has_voted": False}
                for e in entries]
        # Who votes for which persons, under a deterministic _id: the vote path then reads by
        # _id only (FerretDB's SQLite backend scans the collection for any other filter).
        by_voter: dict[str, list[str]] = {}
        for e in entries:
            if e["voter_owner_id"]:
                by_voter.setdefault(e["voter_owner_id"], []).append(e["person_id"])
        voters = [{"_id": voter_key(ballot_id, owner), "ballot_id": ballot_id, "person_ids": ids}
                  for owner, ids in by_voter.items()]
        for collection, docs in (("ballot_rolls", rows), ("ballot_voters", voters)):
            try:
                if docs:
                    await self.db[collection].insert_many(docs, ordered=False)
            except BulkWriteError:
                pass  # written by an earlier attempt; the roll is deterministic per draft
        publicity_until = as_utc(doc["closes_at"]) + timedelta(days=doc["publicity_days"])
        totals = {"A": roll.total_area_centi_m2, "N": roll.total_headcount,
                  "persons": len(entries), "roll_sha256": roll_entries_sha256(entries)}
        fields = {"published_at": now, "published_by": staff_id,
                  "publicity_until": publicity_until, "totals": totals}
        try:
            # Entry 0 decides: of concurrent publications, exactly one writes the manifest.
            await self.ledger.write_once(ballot_id, 0, manifest_entry({**doc, **fields}))
        except PositionTaken:
            written = await self.ledger.entry(ballot_id, 0)
            current = await self.get(ballot_id)
            if written is None or current["status"] != BallotStatus.DRAFT:
                raise Conflict("表决已被发布", code="ballot_not_draft") from None
            # An earlier publication wrote its manifest and stopped: finish that one.
            fields["published_at"] = parse_time(written.entry["schedule"]["published_at"])
        published = {**doc, **fields, "status": BallotStatus.PUBLISHED.value}
        await self.write_opening_entries(published)
        await self.db["ballots"].update_one(
            {"_id": ballot_id}, {"$set": {"status": BallotStatus.PUBLISHED.value, **fields}})
        await emit(self.db, self.clock, EventType.BALLOT_PUBLISHED, f"ballot:{ballot_id}",
                   ballot_id, {"ballot_id": ballot_id}, published["community_id"])
        if published.get("supersedes_ballot_id"):
            await self.withdraw(published["supersedes_ballot_id"], by_ballot=ballot_id)
        return published

    async def write_opening_entries(self, doc: Mapping[str, Any]) -> None:
        """Entries 0 (manifest) and 1 (roll); idempotent, so a crashed publish can be repaired."""
        await self.ledger.write_once(doc["_id"], 0, manifest_entry(doc))
        totals = doc["totals"]
        await self.ledger.write_once(doc["_id"], 1, {
            "type": "roll", "ballot_id": doc["_id"], "roll_sha256": totals["roll_sha256"],
            "persons": totals["persons"], "A": totals["A"], "N": totals["N"]})

    async def withdraw(self, ballot_id: str, by_ballot: str) -> None:
        """A correction withdraws the ballot it corrects; its log is closed, never edited."""
        old = await self.db["ballots"].find_one_and_update(
            {"_id": ballot_id, "status": {"$in": [BallotStatus.DRAFT.value,
                                                   BallotStatus.PUBLISHED.value]}},
            {"$set": {"status": BallotStatus.WITHDRAWN.value, "withdrawn_by": by_ballot,
                      "withdrawn_at": self.clock.now()}})
        if old is None:
            raise Conflict("原表决已结束，不能撤回", code="ballot_not_withdrawable")

    # -- roll and turnout -------------------------------------------------------------------
    async def roll(self, ballot_id: str) -> list[dict[str, Any]]:
        return await self.db["ballot_rolls"].find({"ballot_id": ballot_id}).sort(
            "person_id", 1).to_list(None)

    async def persons_for_owners(self, ballot_id: str, owner_ids: list[str]) -> list[dict[str, Any]]:
        persons = []
        for owner_id in owner_ids:
            index = await self.db["ballot_voters"].find_one({"_id": voter_key(ballot_id, owner_id)})
            for person_id in (index or {}).get("person_ids", []):
                person = await self.db["ballot_rolls"].find_one({"_id": f"{ballot_id}:{person_id}"})
                if person is not None and person["current_voter_owner_id"] == owner_id:
                    persons.append(person)
        return persons

    async def counted(self, ballot_id: str) -> dict[str, CountedVote]:
        votes = [(e.seq, e.entry["public"], e.private) for e in await self.ledger.entries(ballot_id)
                 if e.entry["type"] == "vote" and e.private is not None]
        return final_votes(votes)

    async def live_turnout(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        counted = await self.counted(doc["_id"])
        areas = {r["person_id"]: r["area_centi_m2"] for r in await self.roll(doc["_id"])}
        totals = RollTotals(doc["totals"]["A"], doc["totals"]["N"])
        # Turnout counts a person who returned any ballot; the first item stands for all.
        first = doc["items"][0]["item_id"]
        result = turnout(totals, [CountedChoice(p, areas[p], Choice(v.choices[first]))
                                  for p, v in counted.items()],
                         BlankPolicy(doc["rules"]["blank_policy"]))
        return {
            "area": {"numerator": result.area.numerator, "denominator": result.area.denominator},
            "headcount": {"numerator": result.headcount.numerator,
                          "denominator": result.headcount.denominator},
            "quorum_met": result.quorum_met,
            "area_still_needed_centi_m2": result.area_still_needed_centi_m2,
            "headcount_still_needed": result.headcount_still_needed,
        }

    async def live_counts(self, doc: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Per-option counts so far: only where the ballot's rules make them visible."""
        counted = await self.counted(doc["_id"])
        areas = {r["person_id"]: r["area_centi_m2"] for r in await self.roll(doc["_id"])}
        totals = RollTotals(doc["totals"]["A"], doc["totals"]["N"])
        return tally_items(manifest_entry(doc), totals, areas, counted)

    # -- closing ----------------------------------------------------------------------------
    async def close(self, ballot_id: str) -> dict[str, Any] | None:
        """Close a ballot whose window has ended; any number of processes may call this at once:
        the log's close entry is written once (insert arbitration), the result is deterministic."""
        doc = await self.get(ballot_id)
        now = self.clock.now()
        if doc["status"] not in (BallotStatus.PUBLISHED, BallotStatus.CLOSING):
            return None
        closes_at = as_utc(doc["closes_at"])
        if now < closes_at:
            return None
        await self.db["ballots"].update_one({"_id": ballot_id, "status": BallotStatus.PUBLISHED.value},
                                            {"$set": {"status": BallotStatus.CLOSING.value}})
        close_entry = {"type": "close", "ballot_id": ballot_id, "closed_at": iso(closes_at)}

        async def result_for(close_seq: int) -> dict[str, Any]:
            counted = await self.counted(ballot_id)
            areas = {r["person_id"]: r["area_centi_m2"] for r in await self.roll(ballot_id)}
            totals = doc["totals"]
            items = tally_items(manifest_entry(doc), RollTotals(totals["A"], totals["N"]), areas,
                                counted)
            return {"type": "result", "ballot_id": ballot_id, "computed_at": iso(closes_at),
                    "A": totals["A"], "N": totals["N"], "items": items}

        close_seq = await self.ledger.seal(ballot_id, close_entry, result_for)
        result_doc = await self.ledger.entry(ballot_id, close_seq + 1)
        assert result_doc is not None
        result = result_doc.entry
        signature = self.ledger.keyring.sign(KeyPurpose.RESULT, result)
        await self.ledger.checkpoint(ballot_id)
        await self.db["ballots"].update_one(
            {"_id": ballot_id},
            {"$set": {"status": BallotStatus.CLOSED.value, "result": result,
                      "result_signature": signature, "close_seq": close_seq}})
        for kind, data in ((EventType.BALLOT_CLOSED, {"ballot_id": ballot_id}), (
                EventType.BALLOT_RESULT, {"result": result, "result_signature": signature})):
            await emit(self.db, self.clock, kind, f"ballot:{ballot_id}", ballot_id, data,
                       doc["community_id"])
        return await self.get(ballot_id)

    # -- bundles ----------------------------------------------------------------------------
    async def bundle(self, ballot_id: str, variant: str) -> dict[str, Any]:
        doc = await self.get(ballot_id)
        entries = await self.ledger.entries(ballot_id)
        auditor = variant == "auditor"
        roll = None
        if auditor:
            roll = [{k: r[k] for k in ("person_id", "unit_ids", "area_centi_m2", "owner_ids",
                                       "voter_owner_id", "is_developer")}
                    for r in await self.roll(ballot_id)]
        return {
            "format": FORMAT, "variant": variant, "ballot_id": ballot_id,
            "origin": self.ledger.origin(ballot_id), "keys": self.ledger.public_keys(),
            "checkpoint_verifiers": [self.ledger.verifier_string()],
            "entries": [e.entry for e in entries],
            "private": {str(e.seq): e.private for e in entries if auditor and e.private},
            "roll": roll,
            "pseudonym_key": doc["pseudonym_key"] if auditor else None,
            "checkpoints": [c["note"] for c in await self.ledger.checkpoints(ballot_id)],
            "result_signature": doc.get("result_signature"),
        }


def voter_key(ballot_id: str, owner_id: str) -> str:
    return f"{ballot_id}:voter:{owner_id}"


def roll_entry(person: Any) -> dict[str, Any]:
    return {"person_id": person.person_id, "unit_ids": list(person.unit_ids),
            "area_centi_m2": person.area_centi_m2, "owner_ids": list(person.owner_ids),
            "voter_owner_id": person.voter_owner_id, "is_developer": person.is_developer}


def manifest_entry(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": "manifest", "ballot_id": doc["_id"], "community_id": doc["community_id"],
        "community_name": doc.get("community_name", ""), "title": doc["title"],
        "description": doc["description"], "items": doc["items"], "scope": doc["scope"],
        "schedule": {"published_at": iso(doc["published_at"]), "opens_at": iso(doc["opens_at"]),
                     "closes_at": iso(doc["closes_at"]),
                     "publicity_until": iso(doc["publicity_until"])},
        "rules": {k: doc["rules"][k] for k in ("revote", "follow_majority", "blank_policy",
                                               "show_counts_before_close", "count_parking",
                                               "count_storage")},
        "supersedes_ballot_id": doc.get("supersedes_ballot_id"),
        "created_by": doc["created_by"],
    }


__all__ = ["Ballots", "BallotStatus", "MatterKind", "VotingClosed", "ballot_summary"]
