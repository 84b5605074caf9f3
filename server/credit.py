"""Credit evaluation of property companies and the red/black lists (信用评价, 红黑榜).

The formula (docs/disclosures-ratings-complaints.md) is a pure function of published inputs, so
anyone holding a published list can recompute it: `evaluate(inputs, formula)`.

    rating        = (overall sum − count) / (4 · count)   owners' overall score 1–5 → 0–1
    response      = responded / received                  complaints answered at all
    completion    = completed / received                  complaints resolved (not reopened)
    satisfaction  = (rating sum − count) / (4 · count)    owners' 1–5 rating of the handling
    disclosure    = statements on time / statements due   company's common-income statements
    score         = 100 · Σ wᵢ·xᵢ / Σ wᵢ                  over the components that have data

A component without data (no ratings, no complaints…) is left out and the others re-weighted,
so a company is neither punished nor rewarded for silence. Scores are exact fractions; lists
compare exactly: red when score ≥ red_min, black when score < black_below.
"""

from __future__ import annotations

from datetime import timedelta
from fractions import Fraction
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from server.audit import Audit, actor_of
from server.auth import Principal
from server.clock import Clock, iso
from server.complaints import Complaints
from server.disclosures import Disclosures, Signer
from server.errors import Conflict, InvalidInput, NotFound
from server.outbox import EventType, emit
from server.periods import period
from server.ratings import Ratings
from server.registry import AreaLevel, Registry
from voting.canonical import sha256_hex

COMPONENTS = ("rating", "response", "completion", "satisfaction", "disclosure")


def make_formula(weights: tuple[tuple[str, int], ...], red_min: int, black_below: int
                 ) -> dict[str, Any]:
    """Validate the configured formula (at start-up: a bad one stops the process)."""
    table = dict(weights)
    if set(table) != set(COMPONENTS) or sum(table.values()) != 100 or min(table.values()) < 0:
        raise ValueError(f"CREDIT_WEIGHTS must give {', '.join(COMPONENTS)} summing to 100")
    if black_below > red_min:
        raise ValueError("CREDIT_BLACK_BELOW must not exceed CREDIT_RED_MIN")
    return {"weights": table, "red_min": red_min, "black_below": black_below}


def _components(row: dict[str, Any]) -> dict[str, Fraction]:
    out: dict[str, Fraction] = {}
    if row["rating_count"]:
        out["rating"] = Fraction(row["rating_sum"] - row["rating_count"], 4 * row["rating_count"])
    if row["complaints_received"]:
        out["response"] = Fraction(row["complaints_responded"], row["complaints_received"])
        out["completion"] = Fraction(row["complaints_completed"], row["complaints_received"])
    if row["satisfaction_count"]:
        out["satisfaction"] = Fraction(row["satisfaction_sum"] - row["satisfaction_count"],
                                       4 * row["satisfaction_count"])
    if row["disclosures_due"]:
        out["disclosure"] = Fraction(row["disclosures_on_time"], row["disclosures_due"])
    return out


def _display(value: Fraction) -> str:
    hundredths = (value * 100 + Fraction(1, 2)).__floor__()
    return f"{hundredths // 100}.{hundredths % 100:02d}"


def evaluate(inputs: list[dict[str, Any]], formula: dict[str, Any]) -> dict[str, Any]:
    """Scores, ranking and lists from inputs alone (pure; the published record re-runs this)."""
    weights = formula["weights"]
    results = []
    for row in inputs:
        parts = _components(row)
        if not parts:
            continue  # nothing to judge the company by this period
        total_weight = sum(weights[k] for k in parts)
        if total_weight == 0:
            continue
        score = 100 * sum((weights[k] * v for k, v in parts.items()), Fraction(0)) / total_weight
        results.append((score, row["company_id"], parts))
    results.sort(key=lambda r: (-r[0], r[1]))
    ranked = []
    for rank, (score, company_id, parts) in enumerate(results, start=1):
        listed = ("red" if score >= formula["red_min"]
                  else "black" if score < formula["black_below"] else "")
        ranked.append({
            "rank": rank, "company_id": company_id, "list": listed,
            "score": {"num": score.numerator, "den": score.denominator, "display": _display(score)},
            "components": {k: {"num": v.numerator, "den": v.denominator} for k, v in parts.items()},
        })
    return {"results": ranked,
            "red": [r["company_id"] for r in ranked if r["list"] == "red"],
            "black": [r["company_id"] for r in ranked if r["list"] == "black"]}


class Credit:
    """Gathers each company's inputs for an area and period, evaluates, publishes signed lists."""

    def __init__(self, db: AsyncDatabase, clock: Clock, registry: Registry, ratings: Ratings,
                 complaints: Complaints, disclosures: Disclosures, audit: Audit, signer: Signer,
                 formula: dict[str, Any], rating_window_days: int) -> None:
        self.lists = db["credit_lists"]
        self.clock = clock
        self.registry = registry
        self.ratings = ratings
        self.complaints = complaints
        self.disclosures = disclosures
        self.audit = audit
        self.signer = signer
        self.formula = formula
        self.rating_window_days = rating_window_days

    async def inputs(self, area_id: str, period_label: str) -> list[dict[str, Any]]:
        p = period(period_label)
        quarters = list(p.quarters)
        communities = await self.registry.communities({"area_path": area_id})
        ratings = await self.ratings.overall_by_company(quarters, area_id)
        complaints = {r["company_id"]: r for r in await self.complaints.stats(
            {"area_path": area_id, "quarter": {"$in": quarters}}, ("company_id",))}
        disclosed: dict[str, tuple[int, int]] = {}
        for q in quarters:
            punctual = await self.disclosures.punctual(communities, q)
            for company, (on_time, due) in punctual.items():
                a, b = disclosed.get(company, (0, 0))
                disclosed[company] = (a + on_time, b + due)
        companies = sorted((set(ratings) | set(complaints) | set(disclosed)) - {""})
        rows = []
        for company_id in companies:
            c = complaints.get(company_id, {})
            rows.append({
                "company_id": company_id,
                "company_name": (await self.registry.company(company_id))["name"],
                "rating_sum": ratings.get(company_id, (0, 0))[0],
                "rating_count": ratings.get(company_id, (0, 0))[1],
                "complaints_received": c.get("received", 0),
                "complaints_responded": c.get("responded", 0),
                "complaints_completed": c.get("completed", 0),
                "satisfaction_sum": c.get("satisfaction_sum", 0),
                "satisfaction_count": c.get("rated", 0),
                "disclosures_on_time": disclosed.get(company_id, (0, 0))[0],
                "disclosures_due": disclosed.get(company_id, (0, 0))[1],
            })
        return rows

    async def publish(self, principal: Principal, area: dict[str, Any],
                      period_label: str) -> dict[str, Any]:
        p = period(period_label)
        # Plan item 6: districts list quarterly, the city half-yearly.
        if p.is_quarter and area["level"] != AreaLevel.DISTRICT:
            raise InvalidInput("季度榜单按区（市）发布", code="credit_scope",
                               fields={"period": "季度榜单须由区（市）发布"})
        if not p.is_quarter and area["level"] != AreaLevel.CITY:
            raise InvalidInput("半年榜单按全市发布", code="credit_scope",
                               fields={"period": "半年榜单须由市发布"})
        final_at = p.ends_at + timedelta(days=max(self.rating_window_days,
                                                  self.disclosures.deadline.days))
        if self.clock.now() < final_at:
            raise Conflict(f"评价与公开期限未结束，{iso(final_at)} 后可发布",
                           code="credit_period_not_final")
        inputs = await self.inputs(area["_id"], period_label)
        outcome = evaluate(inputs, self.formula)
        now = self.clock.now()
        doc: dict[str, Any] = {
            "_id": f"cl_{area['_id']}_{period_label}", "area_id": area["_id"],
            "area_level": area["level"], "period": period_label, "formula": self.formula,
            "inputs": inputs, **outcome, "published_at": now,
            "published_by": actor_of(principal),
        }
        payload = signed_list(doc)
        doc["payload_sha256"] = sha256_hex(payload)
        doc["signature"] = self.signer.sign(payload)
        try:
            await self.lists.insert_one(doc)
        except DuplicateKeyError:
            raise Conflict("该期榜单已发布", code="credit_list_exists") from None
        await self.audit.record(principal, "credit.publish", community_id="", target=doc["_id"],
                                detail={"red": doc["red"], "black": doc["black"],
                                        "payload_sha256": doc["payload_sha256"]})
        await emit(self.lists.database, self.clock, EventType.CREDIT_LIST_PUBLISHED,
                   f"credit_list:{area['_id']}", doc["_id"], list_to_json(doc), "", area["path"])
        return list_to_json(doc)

    async def get(self, area_id: str, period_label: str) -> dict[str, Any]:
        doc = await self.lists.find_one({"_id": f"cl_{area_id}_{period_label}"})
        if doc is None:
            raise NotFound("该期榜单尚未发布", code="credit_list_not_found")
        return list_to_json(doc)

    async def of_company(self, company_id: str) -> list[dict[str, Any]]:
        """Every published list the company appears in, with its own inputs and components."""
        out = []
        async for doc in self.lists.find({"inputs.company_id": company_id}).sort("period", -1):
            row = next(r for r in doc["inputs"] if r["company_id"] == company_id)
            result = next((r for r in doc["results"] if r["company_id"] == company_id), None)
            out.append({"list_id": doc["_id"], "area_id": doc["area_id"], "period": doc["period"],
                        "inputs": row, "result": result, "formula": doc["formula"]})
        return out


def signed_list(doc: dict[str, Any]) -> dict[str, Any]:
    return {"type": "credit_list", "area_id": doc["area_id"], "period": doc["period"],
            "formula": doc["formula"], "inputs": doc["inputs"], "results": doc["results"],
            "red": doc["red"], "black": doc["black"], "published_at": iso(doc["published_at"])}


def list_to_json(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "area_id": doc["area_id"], "area_level": doc["area_level"],
            "period": doc["period"], "formula": doc["formula"], "inputs": doc["inputs"],
            "results": doc["results"], "red": doc["red"], "black": doc["black"],
            "published_at": iso(doc["published_at"]), "payload_sha256": doc["payload_sha256"],
            "signature": doc["signature"]}
