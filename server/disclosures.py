"""The three disclosures (三公开): signed, versioned documents by the company and the committee."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from server.attachments import Attachments
from server.audit import Audit, actor_of
from server.auth import Principal
from server.clock import Clock, as_utc, iso
from server.errors import Conflict, InvalidInput, NotFound
from server.outbox import EventType, emit
from server.periods import last_ended_quarter, period, previous_quarter
from server.registry import Community
from voting.canonical import sha256_hex
from voting.signing import KeyPurpose, Keyring, derive_key_id, generate_keyring_config, verify


class Publisher(StrEnum):
    """Who publishes: the property company serving the community, or its owners' committee."""

    PROPERTY = "property"
    COMMITTEE = "committee"


class Kind(StrEnum):
    """The three disclosures of the plan (item 13)."""

    SERVICE_STANDARDS = "service_standards"    # 物业服务标准（含收费标准）
    COMPLAINT_CHANNELS = "complaint_channels"  # 投诉渠道
    COMMON_INCOME = "common_income"            # 公共部位收益（按季度）


NOT_PERIODIC = ""  # period of the standing disclosures; always written, so the unique index holds


def disclosure_keyring(seed_b64: str) -> Keyring:
    """The 'disclosure' key from DISCLOSURE_SIGNING_KEY, or a fresh one (tests, first demo run)."""
    if not seed_b64:
        return Keyring.from_config(generate_keyring_config([KeyPurpose.DISCLOSURE]))
    seed = base64.b64decode(seed_b64)
    raw_public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    kid = derive_key_id(KeyPurpose.DISCLOSURE, raw_public)
    return Keyring.from_config({KeyPurpose.DISCLOSURE: {"active": kid, "keys": {kid: seed_b64}}})


class Signer:
    """Signs records with the disclosure key; verifies with every key it knows."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    def sign(self, payload: dict[str, Any]) -> dict[str, str]:
        return self.keyring.sign(KeyPurpose.DISCLOSURE, payload)

    def verify(self, signature: dict[str, Any], payload: dict[str, Any]) -> bool:
        return verify(signature, payload, self.keyring.verifier_keys(KeyPurpose.DISCLOSURE))

    def public_keys(self) -> list[dict[str, Any]]:
        return [{"kid": kid, **entry} for kid, entry in self.keyring.public_keys().items()
                if entry["purpose"] == KeyPurpose.DISCLOSURE]


def check_income_statement(content: dict[str, Any], carried_over_expected: int | None,
                           previous_label: str) -> None:
    """The statement must add up; the first line that does not is named with its path.

    balance = Σ income − Σ cost; closing = carried-over + balance; carried-over = the previous
    period's closing balance when that statement exists. All amounts are integer fen.
    """
    total_income = sum(line["amount_fen"] for line in content["income_lines"])
    total_cost = sum(line["amount_fen"] for line in content["cost_lines"])
    checks = [
        ("total_income_fen", total_income, f"应等于收入明细合计 {total_income} 分"),
        ("total_cost_fen", total_cost, f"应等于支出明细合计 {total_cost} 分"),
        ("balance_fen", total_income - total_cost,
         f"应等于收入合计减支出合计 {total_income - total_cost} 分"),
    ]
    if carried_over_expected is not None:
        checks.append(("carried_over_fen", carried_over_expected,
                       f"应等于上期（{previous_label}）期末结余 {carried_over_expected} 分"))
    closing = content["carried_over_fen"] + total_income - total_cost
    checks.append(("closing_balance_fen", closing, f"应等于上期结转加本期结余 {closing} 分"))
    for name, expected, reason in checks:
        if content[name] != expected:
            raise InvalidInput("公共收益收支不平衡", code="statement_unbalanced",
                               fields={f"content.{name}": reason})


def disclosure_to_json(doc: dict[str, Any], signer: Signer | None = None) -> dict[str, Any]:
    out = {
        "id": doc["_id"], "community_id": doc["community_id"], "company_id": doc["company_id"],
        "publisher": doc["publisher"], "kind": doc["kind"], "period": doc["period"] or None,
        "version": doc["version"], "reason": doc["reason"], "content": doc["content"],
        "attachments": doc["attachments"], "published_at": iso(doc["published_at"]),
        "published_by": doc["published_by"]["name"], "previous_sha256": doc["previous_sha256"],
        "payload_sha256": doc["payload_sha256"], "signature": doc["signature"],
    }
    if signer is not None:
        out["signature_valid"] = signer.verify(doc["signature"], signed_payload(doc))
    return out


def signed_payload(doc: dict[str, Any]) -> dict[str, Any]:
    """Exactly what is signed (RFC 8785 bytes of this object): everything a reader relies on."""
    return {"type": "disclosure", "community_id": doc["community_id"],
            "company_id": doc["company_id"], "publisher": doc["publisher"], "kind": doc["kind"],
            "period": doc["period"], "version": doc["version"], "reason": doc["reason"],
            "content": doc["content"], "attachments": doc["attachments"],
            "published_at": iso(doc["published_at"]), "previous_sha256": doc["previous_sha256"]}


@dataclass(frozen=True)
class Currency:
    """Whether one publisher's disclosures of one community are current for a quarter."""

    community_id: str
    publisher: str
    service_standards: bool
    complaint_channels: bool
    income_status: str  # on_time | late | missing | not_due
    income_published_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {"community_id": self.community_id, "publisher": self.publisher,
                "service_standards": self.service_standards,
                "complaint_channels": self.complaint_channels,
                "income_status": self.income_status,
                "income_published_at": iso(self.income_published_at)
                if self.income_published_at else None,
                "current": self.service_standards and self.complaint_channels
                and self.income_status in ("on_time", "late", "not_due")}


class Disclosures:
    """Publishes and reads disclosures; nothing is edited in place, a correction is a version."""

    def __init__(self, db: AsyncDatabase, clock: Clock, audit: Audit, attachments: Attachments,
                 signer: Signer, deadline_days: int) -> None:
        self.docs = db["disclosures"]
        self.clock = clock
        self.audit = audit
        self.attachments = attachments
        self.signer = signer
        self.deadline = timedelta(days=deadline_days)

    def due_at(self, quarter: str) -> datetime:
        """When the common-income statement of `quarter` is due."""
        return period(quarter).ends_at + self.deadline

    async def publish(self, principal: Principal, community: Community, publisher: Publisher,
                      kind: Kind, period_label: str, content: dict[str, Any],
                      attachment_ids: list[str], corrects_version: int | None,
                      reason: str) -> dict[str, Any]:
        key = {"community_id": community.id, "publisher": publisher.value, "kind": kind.value,
               "period": period_label}
        now = self.clock.now()
        if kind is Kind.COMMON_INCOME:
            if period(period_label).ends_at > now:
                raise InvalidInput("该季度尚未结束", code="period_not_over",
                                   fields={"period": "只能公开已结束季度的收益"})
            previous = await self.latest({**key, "period": previous_quarter(period_label)})
            check_income_statement(
                content, previous["content"]["closing_balance_fen"] if previous else None,
                previous_quarter(period_label))
        latest = await self.latest(key)
        if corrects_version is None and latest is not None:
            raise Conflict("已公开过，请以更正方式发布新版本", code="disclosure_exists")
        if corrects_version is not None:
            if latest is None or latest["version"] != corrects_version:
                raise Conflict("更正的版本不是最新版本", code="disclosure_stale_version")
            if not reason.strip():
                raise InvalidInput("更正须说明理由", code="reason_required",
                                   fields={"reason": "更正须说明理由"})
        attachments = await self.attachments.resolve(community.id, attachment_ids, "attachments")
        doc: dict[str, Any] = {
            "_id": "dc_" + secrets.token_hex(8), **key, "company_id": community.company_id,
            "area_path": list(community.area_path),
            "version": (latest or {"version": 0})["version"] + 1,
            "reason": reason, "content": content, "attachments": attachments,
            "published_at": now, "published_by": actor_of(principal),
            "previous_sha256": latest["payload_sha256"] if latest else "",
        }
        payload = signed_payload(doc)
        doc["payload_sha256"] = sha256_hex(payload)
        doc["signature"] = self.signer.sign(payload)
        try:
            await self.docs.insert_one(doc)
        except DuplicateKeyError:
            # Someone published the same version at the same moment; theirs stands.
            raise Conflict("该版本已由他人发布，请刷新后重试",
                           code="disclosure_stale_version") from None
        await self.audit.record(principal, "disclosure.publish", community_id=community.id,
                                target=doc["_id"], reason=reason,
                                detail={"publisher": publisher.value, "kind": kind.value,
                                        "period": period_label, "version": doc["version"],
                                        "payload_sha256": doc["payload_sha256"]})
        await emit(self.docs.database, self.clock, EventType.DISCLOSURE_PUBLISHED, "disclosure:"
                   + ":".join(key.values()), doc["_id"], disclosure_to_json(doc), community.id)
        return disclosure_to_json(doc)

    async def latest(self, key: dict[str, Any]) -> dict[str, Any] | None:
        docs = await self.docs.find(key).sort("version", -1).limit(1).to_list(None)
        return docs[0] if docs else None

    async def get(self, disclosure_id: str) -> dict[str, Any]:
        doc = await self.docs.find_one({"_id": disclosure_id})
        if doc is None:
            raise NotFound("公开信息不存在", code="disclosure_not_found")
        return doc

    async def history(self, doc: dict[str, Any]) -> list[dict[str, Any]]:
        """Every version of the same disclosure, oldest first."""
        key = {k: doc[k] for k in ("community_id", "publisher", "kind", "period")}
        docs = await self.docs.find(key).sort("version", 1).to_list(None)
        return [{"id": d["_id"], "version": d["version"], "reason": d["reason"],
                 "published_at": iso(d["published_at"]), "payload_sha256": d["payload_sha256"]}
                for d in docs]

    async def current(self, community_id: str, publisher: str | None = None,
                      kind: str | None = None) -> list[dict[str, Any]]:
        """The latest version of each disclosure of a community, newest period first."""
        query: dict[str, Any] = {"community_id": community_id}
        if publisher:
            query["publisher"] = publisher
        if kind:
            query["kind"] = kind
        docs = await self.docs.find(query, {"content": 0}).sort(
            [("publisher", 1), ("kind", 1), ("period", -1), ("version", -1)]).to_list(None)
        seen: set[tuple[str, str, str]] = set()
        out = []
        for d in docs:
            k = (d["publisher"], d["kind"], d["period"])
            if k in seen:
                continue
            seen.add(k)
            out.append({"id": d["_id"], "publisher": d["publisher"], "kind": d["kind"],
                        "period": d["period"] or None, "version": d["version"],
                        "published_at": iso(d["published_at"])})
        return out

    async def currency(self, communities: list[Community], quarter: str | None = None
                       ) -> tuple[str, datetime, list[Currency]]:
        """Per community and publisher: standards, channels, and the quarter's income statement."""
        now = self.clock.now()
        quarter = quarter or last_ended_quarter(now)
        due = self.due_at(quarter)
        ids = [c.id for c in communities]
        first_versions = await self.docs.find(
            {"community_id": {"$in": ids}, "version": 1,
             "period": {"$in": [NOT_PERIODIC, quarter]}},
            {"community_id": 1, "publisher": 1, "kind": 1, "published_at": 1}).to_list(None)
        found = {(d["community_id"], d["publisher"], d["kind"]): as_utc(d["published_at"])
                 for d in first_versions}
        out = []
        for c in communities:
            publishers = ([Publisher.PROPERTY] if c.company_id else []) + (
                [Publisher.COMMITTEE] if c.has_committee else [])
            for p in publishers:
                at = found.get((c.id, p.value, Kind.COMMON_INCOME.value))
                status = ("on_time" if at is not None and at <= due else "late" if at is not None
                          else "missing" if now > due else "not_due")
                out.append(Currency(
                    c.id, p.value, (c.id, p.value, Kind.SERVICE_STANDARDS.value) in found,
                    (c.id, p.value, Kind.COMPLAINT_CHANNELS.value) in found, status, at))
        return quarter, due, out

    async def punctual(self, communities: list[Community],
                       quarter: str) -> dict[str, tuple[int, int]]:
        """Per company: (communities whose company statement was on time, communities served)."""
        _, _, rows = await self.currency(communities, quarter)
        by_community = {c.id: c.company_id for c in communities}
        out: dict[str, tuple[int, int]] = {}
        for row in rows:
            if row.publisher != Publisher.PROPERTY:
                continue
            company = by_community[row.community_id]
            on_time, total = out.get(company, (0, 0))
            out[company] = (on_time + (row.income_status == "on_time"), total + 1)
        return out


def period_or_standing(kind: Kind, label: str | None) -> str:
    """Income statements are per quarter; the standing disclosures have no period."""
    if kind is Kind.COMMON_INCOME:
        return period(label or "", "period").label
    return NOT_PERIODIC

