"""Casting votes on every channel: online, paper (two operators), proxy; receipts.

One counted ballot per person is enforced by the store: a vote first inserts a claim whose `_id`
is (ballot, person, round), so of many concurrent casts exactly one wins each round. Only then
is the entry appended to the log. A change of vote is the next round: a new entry that names
the one it supersedes; nothing is ever updated in the log. Every arbitration here is an insert
of a unique `_id`: FerretDB 1.24 applies guarded updates as read-modify-write, so two concurrent
`update_one({_id, state: x})` can both succeed; inserts cannot.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from server.ballots import Ballots, BallotStatus, VotingClosed, voter_key
from server.clock import Clock, as_utc, iso
from server.errors import Conflict, Forbidden, InvalidInput, NotFound
from server.ledger import Ledger, LogSealed
from voting.records import Channel, Revote, pseudonym, split_entry
from voting.signing import KeyPurpose

log = logging.getLogger(__name__)
STALE_CLAIM = timedelta(minutes=5)


class AlreadyVoted(Conflict):
    """This person's vote is recorded and the ballot's rules allow no (further) change."""

    code = "already_voted"
    message = "您已投票，本表决不允许再次修改"


class OwnerAlreadyVoted(Conflict):
    """A proxy may not vote once the owner has voted in person."""

    code = "owner_already_voted"
    message = "业主本人已投票，代理人不能再投票"


class VoteInProgress(Conflict):
    """Another vote for this person is being recorded right now."""

    code = "vote_in_progress"
    message = "该表决票正在记录，请稍后再试"


@dataclass(frozen=True)
class CastBy:
    """Who put the vote in: the owner, a proxy under an authorisation, or two paper operators."""

    channel: Channel
    detail: dict[str, Any]

    @property
    def is_own(self) -> bool:
        return self.channel is not Channel.PROXY


class Casting:
    """Records votes and hands out signed receipts."""

    def __init__(self, db: AsyncDatabase, clock: Clock, ballots: Ballots, ledger: Ledger) -> None:
        self.db = db
        self.clock = clock
        self.ballots = ballots
        self.ledger = ledger

    # -- the one way a vote gets in ----------------------------------------------------------
    async def cast(self, ballot: Mapping[str, Any], person: Mapping[str, Any],
                   choices: Mapping[str, str], by: CastBy) -> dict[str, Any]:
        now = self.clock.now()
        self._check_open(ballot, now)
        self._check_choices(ballot, choices, allow_blank=by.channel is Channel.PAPER)
        ballot_id, person_id = ballot["_id"], person["person_id"]
        await self._first_action(ballot_id, person_id, by)
        rnd, supersedes = await self._next_round(ballot, person_id, by)
        claim_id = f"{ballot_id}:{person_id}:{rnd}"
        try:
            await self.db["vote_claims"].insert_one({
                "_id": claim_id, "ballot_id": ballot_id, "person_id": person_id, "round": rnd,
                "own": by.is_own, "channel": by.channel.value, "seq": None, "at": now})
        except DuplicateKeyError:
            raise AlreadyVoted("该表决票已被记录（重复提交）", code="already_voted") from None
        key = base64.b64decode(ballot["pseudonym_key"])
        public = {"ballot_id": ballot_id, "pseudonym": pseudonym(key, person_id), "round": rnd,
                  "channel": by.channel.value, "cast_at": iso(now), "supersedes": supersedes}
        private = {"salt": secrets.token_hex(16), "person_id": person_id,
                   "choices": dict(choices), "cast_by": {"kind": _kind(by), **by.detail}}
        try:
            seq, leaf = await self.ledger.append(ballot_id, split_entry("vote", public, private),
                                                 private)
        except LogSealed:
            await self.db["vote_claims"].delete_one({"_id": claim_id, "seq": None})
            raise VotingClosed() from None
        await self.db["vote_claims"].update_one({"_id": claim_id}, {"$set": {"seq": seq}})
        return await self._receipt(ballot, person, seq, leaf, now, by)

    async def _first_action(self, ballot_id: str, person_id: str, by: CastBy) -> None:
        """The first vote or unit transfer of a roll person wins one insert; it decides whether
        a transfer hands the vote to the new owner or the earlier owner's vote stands."""
        lock_id = f"{ballot_id}:{person_id}"
        doc = {"_id": lock_id, "kind": "vote", "by": by.detail.get("owner_id", by.channel.value),
               "at": self.clock.now()}
        try:
            await self.db["vote_locks"].insert_one(doc)
            return
        except DuplicateKeyError:
            lock = await self.db["vote_locks"].find_one({"_id": lock_id})
        if lock is None or lock["kind"] != "transfer":
            return
        if by.channel is Channel.PROXY or (
                by.channel is Channel.ONLINE and by.detail["owner_id"] != lock["to_owner_id"]):
            raise Forbidden("该房屋已过户，由新业主投票", code="not_your_vote")

    async def transfer(self, ballot: Mapping[str, Any], person: Mapping[str, Any], unit_id: str,
                       new_owner_id: str, document_sha256: str, staff_id: str) -> dict[str, Any]:
        """A unit changed hands while voting runs: a vote already cast stands; else the new
        owner votes in the frozen person's place (the roll and its totals stay as signed)."""
        if len(person["unit_ids"]) != 1:
            raise Conflict("该业主拥有多套房屋，过户后须拆分投票人，暂不支持在表决期间处理",
                           code="transfer_split_unsupported")
        if ballot["status"] != BallotStatus.PUBLISHED:
            raise VotingClosed()
        old = person["current_voter_owner_id"]
        lock_id = f"{ballot['_id']}:{person['person_id']}"
        try:
            await self.db["vote_locks"].insert_one({
                "_id": lock_id, "kind": "transfer", "to_owner_id": new_owner_id,
                "at": self.clock.now()})
            effect = "voter_changed"
        except DuplicateKeyError:
            lock = await self.db["vote_locks"].find_one({"_id": lock_id})
            if lock is not None and lock["kind"] == "transfer":
                raise Conflict("该房屋的过户已登记", code="transfer_exists") from None
            effect = "vote_stands"
        if effect == "voter_changed":
            await self.db["ballot_rolls"].update_one(
                {"_id": person["_id"]}, {"$set": {"current_voter_owner_id": new_owner_id}})
            await self.db["ballot_voters"].update_one(
                {"_id": voter_key(ballot["_id"], new_owner_id)},
                {"$addToSet": {"person_ids": person["person_id"]},
                 "$setOnInsert": {"ballot_id": ballot["_id"]}}, upsert=True)
        key = base64.b64decode(ballot["pseudonym_key"])
        public = {"ballot_id": ballot["_id"], "pseudonym": pseudonym(key, person["person_id"]),
                  "document_sha256": document_sha256, "recorded_at": iso(self.clock.now()),
                  "effect": effect}
        private = {"salt": secrets.token_hex(16), "person_id": person["person_id"],
                   "unit_id": unit_id, "from_owner_id": old, "to_owner_id": new_owner_id,
                   "recorded_by": staff_id}
        try:
            seq, _ = await self.ledger.append(ballot["_id"], split_entry("transfer", public, private),
                                              private)
        except LogSealed:
            raise VotingClosed() from None
        return {"index": seq, "effect": effect, "person_id": person["person_id"]}

    def _check_open(self, ballot: Mapping[str, Any], now: datetime) -> None:
        if not (ballot["status"] == BallotStatus.PUBLISHED
                and as_utc(ballot["opens_at"]) <= now < as_utc(ballot["closes_at"])):
            raise VotingClosed()

    @staticmethod
    def _check_choices(ballot: Mapping[str, Any], choices: Mapping[str, str],
                       allow_blank: bool) -> None:
        fields: dict[str, str] = {}
        items = {i["item_id"]: i for i in ballot["items"]}
        for item_id, choice in choices.items():
            if item_id not in items:
                fields[f"choices.{item_id}"] = "不是本表决的事项"
            elif choice not in items[item_id]["options"] and not (allow_blank and choice == "blank"):
                fields[f"choices.{item_id}"] = "不是该事项的选项"
        for item_id in items:
            if item_id not in choices:
                fields[f"choices.{item_id}"] = "必填"
        if fields:
            raise InvalidInput("表决票填写有误", code="invalid_choices", fields=fields)

    async def _next_round(self, ballot: Mapping[str, Any], person_id: str,
                          by: CastBy) -> tuple[int, int | None]:
        claims = []  # rounds 0, 1, 2… read by _id (no scan on any store)
        while (claim := await self.db["vote_claims"].find_one(
                {"_id": f"{ballot['_id']}:{person_id}:{len(claims)}"})) is not None:
            claims.append(claim)
        if not claims:
            return 0, None
        latest = claims[-1]
        if latest["seq"] is None:
            raise VoteInProgress()
        own_votes = sum(1 for c in claims if c["own"])
        if not by.is_own and own_votes:
            raise OwnerAlreadyVoted()
        # The owner's own vote always supersedes a proxy's (DOMAIN §3.11).
        if by.is_own and not latest["own"]:
            return latest["round"] + 1, latest["seq"]
        # Own votes and proxy votes are limited separately by the same rule (docs/ballot-bundle.md).
        same_kind = own_votes if by.is_own else sum(1 for c in claims if not c["own"])
        revote = Revote(ballot["rules"]["revote"])
        if revote is Revote.NEVER or (revote is Revote.ONCE and same_kind >= 2):
            raise AlreadyVoted()
        return latest["round"] + 1, latest["seq"]

    # -- receipts ---------------------------------------------------------------------------
    async def _receipt(self, ballot: Mapping[str, Any], person: Mapping[str, Any], seq: int,
                       leaf: bytes, cast_at: datetime, by: CastBy) -> dict[str, Any]:
        payload = {"ballot_id": ballot["_id"], "index": seq, "leaf_hash": leaf.hex(),
                   "cast_at": iso(cast_at)}
        receipt = {**payload, "origin": self.ledger.origin(ballot["_id"]),
                   "signature": self.ledger.keyring.sign(KeyPurpose.RECEIPT, payload)}
        await self.db["vote_receipts"].insert_one({
            "_id": f"{ballot['_id']}:{seq:09d}", "ballot_id": ballot["_id"], "seq": seq,
            "person_id": person["person_id"], "owner_ids": person["owner_ids"],
            "channel": by.channel.value, "receipt": receipt, "at": cast_at})
        return receipt

    async def receipts_for(self, ballot_id: str, person_ids: list[str]) -> list[dict[str, Any]]:
        docs = await self.db["vote_receipts"].find(
            {"ballot_id": ballot_id, "person_id": {"$in": person_ids}}).sort("seq", 1).to_list(None)
        out = []
        for d in docs:
            receipt = dict(d["receipt"])
            inclusion = await self.ledger.inclusion(ballot_id, d["seq"])
            if inclusion is not None:
                receipt.update(checkpoint=inclusion["checkpoint"],
                               inclusion_proof=inclusion["inclusion_proof"])
            out.append({"channel": d["channel"], "receipt": receipt})
        return out

    # -- proxies ------------------------------------------------------------------------------
    async def record_proxy(self, ballot: Mapping[str, Any], person: Mapping[str, Any],
                           proxy_user_id: str, document_sha256: str, valid_from: datetime,
                           valid_until: datetime, staff_id: str) -> dict[str, Any]:
        """A written authorisation (its scan's hash) recorded in the log before any proxy vote."""
        if valid_until <= valid_from:
            raise InvalidInput(fields={"valid_until": "须晚于 valid_from"})
        if ballot["status"] != BallotStatus.PUBLISHED or self.clock.now() >= as_utc(ballot["closes_at"]):
            raise VotingClosed()
        now = self.clock.now()
        key = base64.b64decode(ballot["pseudonym_key"])
        items = [i["item_id"] for i in ballot["items"]]
        public = {"ballot_id": ballot["_id"], "pseudonym": pseudonym(key, person["person_id"]),
                  "document_sha256": document_sha256, "valid_from": iso(valid_from),
                  "valid_until": iso(valid_until), "item_ids": items, "recorded_at": iso(now)}
        private = {"salt": secrets.token_hex(16), "person_id": person["person_id"],
                   "proxy_user_id": proxy_user_id, "recorded_by": staff_id}
        try:
            seq, _ = await self.ledger.append(ballot["_id"],
                                              split_entry("proxy_auth", public, private), private)
        except LogSealed:
            raise VotingClosed() from None
        doc = {"_id": f"{ballot['_id']}:{seq:09d}", "ballot_id": ballot["_id"], "seq": seq,
               "person_id": person["person_id"], "proxy_user_id": proxy_user_id,
               "valid_from": valid_from, "valid_until": valid_until, "item_ids": items}
        await self.db["proxy_auths"].insert_one(doc)
        return {"auth_index": seq, "person_id": person["person_id"],
                "valid_from": iso(valid_from), "valid_until": iso(valid_until)}

    async def proxy_authorisation(self, ballot_id: str, auth_index: int, proxy_user_id: str,
                                  person_id: str) -> dict[str, Any]:
        auth = await self.db["proxy_auths"].find_one({"_id": f"{ballot_id}:{auth_index:09d}"})
        now = self.clock.now()
        if (auth is None or auth["proxy_user_id"] != proxy_user_id
                or auth["person_id"] != person_id):
            raise Forbidden("没有有效的委托书", code="proxy_not_authorised")
        if not as_utc(auth["valid_from"]) <= now < as_utc(auth["valid_until"]):
            raise Forbidden("委托书不在有效期内", code="proxy_expired")
        return auth

    # -- paper ballots --------------------------------------------------------------------------
    async def paper_first_entry(self, ballot: Mapping[str, Any], person_id: str,
                                choices: Mapping[str, str], scan_sha256: str,
                                operator: str) -> dict[str, Any]:
        self._check_open(ballot, self.clock.now())
        self._check_choices(ballot, choices, allow_blank=True)
        doc = {"_id": "pe_" + secrets.token_hex(8), "ballot_id": ballot["_id"],
               "person_id": person_id, "choices": dict(choices), "scan_sha256": scan_sha256,
               "first_operator": operator, "state": "pending", "at": self.clock.now()}
        await self.db["paper_entries"].insert_one(doc)
        return {"entry_id": doc["_id"], "state": "pending"}

    async def paper_confirm(self, ballot: Mapping[str, Any], entry_id: str,
                            choices: Mapping[str, str], scan_sha256: str,
                            operator: str, person: Mapping[str, Any]) -> dict[str, Any]:
        entry = await self.db["paper_entries"].find_one({"_id": entry_id, "ballot_id": ballot["_id"]})
        if entry is None:
            raise NotFound("纸质票录入记录不存在", code="paper_entry_not_found")
        if entry["first_operator"] == operator:
            raise Forbidden("须由另一名操作员复核录入", code="second_operator_required")
        if dict(choices) != entry["choices"] or scan_sha256 != entry["scan_sha256"]:
            await self.db["paper_entries"].update_one(
                {"_id": entry_id, "state": "pending"},
                {"$set": {"state": "mismatch", "second_operator": operator}})
            raise Conflict("两次录入不一致，请重新录入", code="paper_mismatch")
        if entry["state"] != "pending":
            raise Conflict("该录入已处理", code="paper_entry_done")
        try:  # one confirmation per entry, decided by the insert
            await self.db["paper_confirmations"].insert_one(
                {"_id": entry_id, "operator": operator, "at": self.clock.now()})
        except DuplicateKeyError:
            raise Conflict("该录入已处理", code="paper_entry_done") from None
        await self.db["paper_entries"].update_one(
            {"_id": entry_id}, {"$set": {"state": "confirmed", "second_operator": operator}})
        by = CastBy(Channel.PAPER, {"operators": [entry["first_operator"], operator],
                                    "scan_sha256": scan_sha256})
        return await self.cast(ballot, person, choices, by)

    # -- housekeeping ---------------------------------------------------------------------------
    async def sweep_stale_claims(self) -> int:
        """A claim whose writer died before its entry was appended would block that person:
        after STALE_CLAIM it is settled from the log (entry found) or removed (none)."""
        cutoff = self.clock.now() - STALE_CLAIM
        resolved = 0
        async for claim in self.db["vote_claims"].find({"seq": None, "at": {"$lt": cutoff}}):
            entry = await self.db["ballot_log"].find_one({
                "ballot_id": claim["ballot_id"], "type": "vote",
                "private.person_id": claim["person_id"], "entry.public.round": claim["round"]})
            if entry is not None:
                await self.db["vote_claims"].update_one({"_id": claim["_id"]},
                                                        {"$set": {"seq": entry["seq"]}})
            else:
                await self.db["vote_claims"].delete_one({"_id": claim["_id"], "seq": None})
            resolved += 1
        return resolved


def _kind(by: CastBy) -> str:
    return {Channel.ONLINE: "owner", Channel.PAPER: "paper", Channel.PROXY: "proxy"}[by.channel]
