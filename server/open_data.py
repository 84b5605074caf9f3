"""What the city platform may read through the open API, always within the client's scope.

Every list is one `page()` in _id order (opaque cursor = last _id), so a list walked while
others insert returns each existing document exactly once. Reads go through the owning
modules' services where they exist (registry counts, ballot bundles, disclosure signatures,
rating results, complaint statistics, fee collection); the page queries read the collections
those services own, filtered by the client's scope.
"""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from server.auth import ClientUser
from server.ballots import BallotStatus, Ballots, ballot_summary
from server.clock import Clock
from server.complaints import Complaints
from server.credit import Credit, list_to_json
from server.disclosures import Disclosures, disclosure_to_json
from server.errors import InvalidInput, NotFound
from server.fees import Fees
from server.integration import community_filter, covers_area, covers_community, out_of_scope, page
from server.periods import quarter_of
from server.ratings import Ratings
from server.registry import Community, Registry, community_from_doc


class OpenData:
    """The open API's reads; each method takes the calling client and checks its scope."""

    def __init__(self, db: AsyncDatabase, clock: Clock, registry: Registry, ballots: Ballots,
                 disclosures: Disclosures, ratings: Ratings, complaints: Complaints,
                 credit: Credit, fees: Fees) -> None:
        self.db = db
        self.clock = clock
        self.registry = registry
        self.ballots = ballots
        self.disclosures = disclosures
        self.ratings = ratings
        self.complaints = complaints
        self.credit = credit
        self.fees = fees

    # -- scope --------------------------------------------------------------------------------
    async def community(self, client: ClientUser, community_id: str) -> Community:
        community = await self.registry.community(community_id)
        if not covers_community(client, community):
            raise out_of_scope()
        return community

    async def area(self, client: ClientUser, area_id: str) -> dict[str, Any]:
        area = await self.registry.area(area_id)
        if not covers_area(client, area["path"]):
            raise out_of_scope("该区域")
        return area

    async def _where(self, client: ClientUser, community_id: str | None,
                     area_id: str | None) -> dict[str, Any]:
        """Filter on documents carrying community_id and area_path: scope ∧ the asked place."""
        clauses = [community_filter(client, "community_id")]
        if community_id:
            await self.community(client, community_id)
            clauses.append({"community_id": community_id})
        if area_id:
            await self.area(client, area_id)
            clauses.append({"area_path": area_id})
        return {"$and": clauses}

    async def _community_ids(self, client: ClientUser, community_id: str | None,
                             area_id: str | None) -> list[str]:
        if community_id:
            return [(await self.community(client, community_id)).id]
        query = community_filter(client)
        if area_id:
            await self.area(client, area_id)
            query = {"$and": [query, {"area_path": area_id}]}
        return await self.db["communities"].distinct("_id", query)

    # -- communities --------------------------------------------------------------------------
    async def communities(self, client: ClientUser, area_id: str | None, cursor: str | None,
                          limit: int) -> dict[str, Any]:
        query = community_filter(client)
        if area_id:
            await self.area(client, area_id)
            query = {"$and": [query, {"area_path": area_id}]}
        docs, next_cursor = await page(self.db["communities"], query, cursor, limit)
        items = [{**community_from_doc(d).to_json(), "counts": await self.registry.counts(d["_id"])}
                 for d in docs]
        return {"items": items, "next_cursor": next_cursor}

    async def community_detail(self, client: ClientUser, community_id: str) -> dict[str, Any]:
        community = await self.community(client, community_id)
        return {**community.to_json(), "counts": await self.registry.counts(community.id)}

    # -- ballots ------------------------------------------------------------------------------
    def _ballot_json(self, doc: dict[str, Any]) -> dict[str, Any]:
        return {**ballot_summary(doc, self.clock.now()), "result": doc.get("result"),
                "result_signature": doc.get("result_signature")}

    async def ballot_list(self, client: ClientUser, community_id: str | None, area_id: str | None,
                          status: str | None, cursor: str | None, limit: int) -> dict[str, Any]:
        ids = await self._community_ids(client, community_id, area_id)
        query: dict[str, Any] = {"community_id": {"$in": ids},
                                 "status": {"$ne": BallotStatus.DRAFT.value}}
        if status:
            query["status"] = status
        docs, next_cursor = await page(self.db["ballots"], query, cursor, limit,
                                       {"pseudonym_key": 0})
        return {"items": [self._ballot_json(d) for d in docs], "next_cursor": next_cursor}

    async def _ballot(self, client: ClientUser, ballot_id: str) -> dict[str, Any]:
        doc = await self.ballots.get(ballot_id)
        if doc["status"] == BallotStatus.DRAFT:
            raise NotFound("表决不存在", code="ballot_not_found")
        await self.community(client, doc["community_id"])
        return doc

    async def ballot(self, client: ClientUser, ballot_id: str) -> dict[str, Any]:
        return self._ballot_json(await self._ballot(client, ballot_id))

    async def ballot_bundle(self, client: ClientUser, ballot_id: str) -> dict[str, Any]:
        doc = await self._ballot(client, ballot_id)
        return await self.ballots.bundle(doc["_id"], "public")

    # -- disclosures --------------------------------------------------------------------------
    async def disclosure_list(self, client: ClientUser, community_id: str | None,
                              area_id: str | None, kind: str | None, cursor: str | None,
                              limit: int) -> dict[str, Any]:
        query = await self._where(client, community_id, area_id)
        if kind:
            query["$and"].append({"kind": kind})
        docs, next_cursor = await page(self.db["disclosures"], query, cursor, limit)
        signer = self.disclosures.signer
        return {"items": [disclosure_to_json(d, signer) for d in docs], "next_cursor": next_cursor}

    async def disclosure(self, client: ClientUser, disclosure_id: str) -> dict[str, Any]:
        doc = await self.disclosures.get(disclosure_id)
        await self.community(client, doc["community_id"])
        return disclosure_to_json(doc, self.disclosures.signer)

    # -- ratings and credit lists -------------------------------------------------------------
    async def rating_results(self, client: ClientUser, quarter: str | None,
                             community_id: str | None, area_id: str | None, cursor: str | None,
                             limit: int) -> dict[str, Any]:
        query = await self._where(client, community_id, area_id)
        if quarter:
            query["$and"].append({"quarter": quarter})
        docs, next_cursor = await page(self.db["rating_periods"], query, cursor, limit)
        items = [{"community_id": d["community_id"], "company_id": d["company_id"],
                  "quarter": d["quarter"], **await self.ratings.results(d)} for d in docs]
        return {"items": items, "next_cursor": next_cursor}

    async def _list_areas(self, client: ClientUser) -> list[str]:
        """Lists of areas in scope, and of the areas above it (the district list of a street)."""
        below = await self.db["areas"].distinct("_id", {"path": {"$in": list(client.area_ids)}})
        above: set[str] = set()
        for doc in await self.db["areas"].find({"_id": {"$in": list(client.area_ids)}}).to_list(None):
            above.update(doc["path"])
        for doc in await self.db["communities"].find(
                {"_id": {"$in": list(client.community_ids)}}).to_list(None):
            above.update(doc["area_path"])
        return sorted(set(below) | above)

    async def credit_lists(self, client: ClientUser, area_id: str | None, cursor: str | None,
                           limit: int) -> dict[str, Any]:
        allowed = await self._list_areas(client)
        if area_id and area_id not in allowed:
            raise out_of_scope("该区域")
        query: dict[str, Any] = {"area_id": area_id if area_id else {"$in": allowed}}
        docs, next_cursor = await page(self.db["credit_lists"], query, cursor, limit)
        return {"items": [list_to_json(d) for d in docs], "next_cursor": next_cursor}

    async def credit_list(self, client: ClientUser, area_id: str, period_label: str) -> dict[str, Any]:
        if area_id not in await self._list_areas(client):
            raise out_of_scope("该区域")
        return await self.credit.get(area_id, period_label)

    # -- statistics ---------------------------------------------------------------------------
    def _one_place(self, community_id: str | None, area_id: str | None) -> None:
        if bool(community_id) == bool(area_id):
            raise InvalidInput("请指定 community_id 或 area_id 之一", code="place_required",
                               fields={"area_id": "与 community_id 二选一"})

    async def complaint_stats(self, client: ClientUser, community_id: str | None,
                              area_id: str | None, quarter: str | None) -> dict[str, Any]:
        self._one_place(community_id, area_id)
        quarter = quarter or quarter_of(self.clock.now())
        if community_id:
            await self.community(client, community_id)
            match: dict[str, Any] = {"community_id": community_id, "quarter": quarter}
        else:
            await self.area(client, str(area_id))
            match = {"area_path": area_id, "quarter": quarter}
        return {"quarter": quarter,
                "by_community": await self.complaints.stats(match, ("community_id", "company_id")),
                "by_company": await self.complaints.stats(match, ("company_id",))}

    async def fee_stats(self, client: ClientUser, community_id: str | None, area_id: str | None,
                        period_label: str) -> dict[str, Any]:
        self._one_place(community_id, area_id)
        if community_id:
            await self.community(client, community_id)
            match: dict[str, Any] = {"community_id": community_id, "period": period_label}
        else:
            await self.area(client, str(area_id))
            match = {"area_path": area_id, "period": period_label}
        rows = await self.fees.collection(match)
        due = sum(r["due_fen"] for r in rows)
        paid = sum(r["paid_fen"] for r in rows)
        return {"period": period_label, "by_community": rows,
                "total": {"due_fen": due, "paid_fen": paid, "unpaid_fen": due - paid}}
