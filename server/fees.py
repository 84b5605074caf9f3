"""Property fees: fee items, bills per unit and period, recorded adjustments, arrears, rates.

Money is integer fen throughout. The property fee of a unit is

    area_centi_m2 × price_fen_per_m2_month × months, in 0.01 fen,

rounded half up to whole fen once, at the end (``property_fee_fen``). A bill's amount due is
its base plus the sum of its adjustments; adjustments are appended, never edited.

Who may change a bill is decided by a unique insert into ``bill_locks`` (_id = bill id): an
order holds the lock while it is open (for ever once paid), an adjustment for the moment it
writes. A guarded ``update_one`` alone is not enough on FerretDB 1.24: under concurrency two
updates guarded by the same expected state can both apply, and ``$inc`` can lose increments
(docs/fees.md, "Concurrency"). Inserts against a unique key are atomic on every store.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import timedelta
from enum import StrEnum
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from server.audit import Audit, actor_of
from server.auth import Principal
from server.clock import Clock, iso
from server.errors import Conflict, InvalidInput, NotFound
from server.registry import Community, UnitKind, stable_id


class FeeKind(StrEnum):
    """How a fee item's monthly amount is found."""

    PROPERTY = "property"  # 物业费: floor area × unit price per m² per month
    PARKING = "parking"    # 车位管理费: a fixed amount per parking space per month
    FIXED = "fixed"        # other fixed items per unit per month (e.g. 垃圾清运费)


class BillStatus(StrEnum):
    """A bill's state; only unpaid bills can be adjusted or put into an order."""

    UNPAID = "unpaid"
    PAID = "paid"
    WAIVED = "waived"  # adjusted down to zero: nothing is owed


CYCLES = (1, 3, 6, 12)  # billing cycle of an item, months; periods start on a cycle boundary
DEFAULT_UNIT_KINDS: dict[FeeKind, tuple[UnitKind, ...]] = {
    FeeKind.PROPERTY: (UnitKind.RESIDENTIAL, UnitKind.COMMERCIAL),
    FeeKind.PARKING: (UnitKind.PARKING,),
    FeeKind.FIXED: (UnitKind.RESIDENTIAL, UnitKind.COMMERCIAL),
}


class BillLocks:
    """`bill_locks`: at most one holder per bill, decided by the unique _id."""

    def __init__(self, db: AsyncDatabase, clock: Clock) -> None:
        self.locks = db["bill_locks"]
        self.clock = clock

    async def acquire(self, bill_id: str, holder: str) -> bool:
        try:
            await self.locks.insert_one({"_id": bill_id, "holder": holder,
                                         "kind": holder.split("_", 1)[0], "at": self.clock.now()})
            return True
        except DuplicateKeyError:
            return False

    async def release(self, bill_ids: list[str], holder: str) -> None:
        """Drop only the locks `holder` owns (never another order's)."""
        await self.locks.delete_many({"_id": {"$in": bill_ids}, "holder": holder})

    async def clear_stale_adjustments(self, older_than_seconds: int = 300) -> int:
        """An adjustment holds its lock for one write; one left behind by a crash is dropped."""
        cutoff = self.clock.now() - timedelta(seconds=older_than_seconds)
        result = await self.locks.delete_many({"kind": "adj", "at": {"$lt": cutoff}})
        return result.deleted_count

    async def holder(self, bill_id: str) -> str | None:
        doc = await self.locks.find_one({"_id": bill_id})
        return doc["holder"] if doc else None


class BillNotAdjustable(Conflict):
    """Only an unpaid bill outside any open order can be adjusted, and never below zero."""

    code = "bill_not_adjustable"
    message = "账单已缴清、正在支付中或调整后金额为负，不能调整"


def property_fee_fen(area_centi_m2: int, price_fen_per_m2_month: int, months: int) -> int:
    """Floor area × unit price × months, rounded half up to whole fen once, at the end.

    The product of 0.01 m² and fen per m² is 0.01 fen; every factor is a non-negative integer,
    so ``(product + 50) // 100`` is exact round-half-up. Rounding once means a quarter's bill
    is not the sum of three rounded monthly amounts (e.g. 81.55 m² × 1.35 元 × 3 = 330.28 元).
    """
    if area_centi_m2 < 0 or price_fen_per_m2_month < 0 or months < 1:
        raise ValueError("area and price must be non-negative and months at least 1")
    return (area_centi_m2 * price_fen_per_m2_month * months + 50) // 100


def item_amount_fen(item: dict[str, Any], unit: dict[str, Any]) -> int:
    """What one unit owes for one item over one cycle."""
    months = item["cycle_months"]
    if item["kind"] == FeeKind.PROPERTY:
        return property_fee_fen(unit["area_centi_m2"], item["price_fen_per_m2_month"], months)
    return item["amount_fen_per_month"] * months


def period_starts_cycle(period: str, cycle_months: int) -> bool:
    """'2026-04' starts a quarter, '2026-02' does not: cycles never overlap for one item."""
    return (int(period[5:7]) - 1) % cycle_months == 0


def period_end(period: str, months: int) -> str:
    """The last month a period covers: ('2026-04', 3) -> '2026-06'."""
    index = int(period[:4]) * 12 + int(period[5:7]) - 1 + months - 1
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def item_to_json(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "community_id": doc["community_id"], "name": doc["name"],
            "kind": doc["kind"], "cycle_months": doc["cycle_months"],
            "price_fen_per_m2_month": doc.get("price_fen_per_m2_month"),
            "amount_fen_per_month": doc.get("amount_fen_per_month"),
            "unit_kinds": doc["unit_kinds"], "active": doc["active"],
            "created_at": iso(doc["created_at"])}


def bill_to_json(doc: dict[str, Any], *, for_staff: bool = False) -> dict[str, Any]:
    out = {
        "id": doc["_id"], "community_id": doc["community_id"], "unit_id": doc["unit_id"],
        "unit_label": doc["unit_label"], "item_id": doc["item_id"], "item_name": doc["item_name"],
        "kind": doc["kind"], "period": doc["period"], "period_end": doc["period_end"],
        "months": doc["months"], "base_fen": doc["base_fen"],
        "amount_due_fen": doc["amount_due_fen"], "status": doc["status"],
        "in_open_order": bool(doc["order_id"]) and doc["status"] == BillStatus.UNPAID,
        "paid_at": iso(doc["paid_at"]) if doc.get("paid_at") else None,
        "adjustments": [{"id": a["id"], "delta_fen": a["delta_fen"], "reason": a["reason"],
                         "at": iso(a["at"])} for a in doc.get("adjustments", [])],
    }
    if for_staff:
        out["order_id"] = doc["order_id"] or None
        out["paid_order_id"] = doc.get("paid_order_id") or None
    return out


def rate_basis_points(paid_fen: int, due_fen: int) -> int:
    """paid / due in 0.01 % (basis points), rounded half up; 0 when nothing is due."""
    return (paid_fen * 10000 * 2 + due_fen) // (due_fen * 2) if due_fen else 0


class Fees:
    """Fee items and bills of communities; converts documents in one place."""

    def __init__(self, db: AsyncDatabase, clock: Clock, audit: Audit) -> None:
        self.db = db
        self.items = db["fee_items"]
        self.bills = db["bills"]
        self.clock = clock
        self.audit = audit
        self.locks = BillLocks(db, clock)

    # -- fee items --------------------------------------------------------------------------
    async def create_item(self, principal: Principal | None, community: Community,
                          body: dict[str, Any]) -> dict[str, Any]:
        kind = FeeKind(body["kind"])
        fields: dict[str, str] = {}
        price, amount = body.get("price_fen_per_m2_month"), body.get("amount_fen_per_month")
        if kind is FeeKind.PROPERTY:
            if price is None:
                fields["price_fen_per_m2_month"] = "物业费须填写单价（分/平方米/月）"
            if amount is not None:
                fields["amount_fen_per_month"] = "物业费按面积计算，不填固定金额"
        else:
            if amount is None:
                fields["amount_fen_per_month"] = "须填写每月固定金额（分）"
            if price is not None:
                fields["price_fen_per_m2_month"] = "仅物业费按面积单价计算"
        if fields:
            raise InvalidInput(fields=fields)
        unit_kinds = list(dict.fromkeys(body.get("unit_kinds") or DEFAULT_UNIT_KINDS[kind]))
        doc = {"_id": "fi_" + secrets.token_hex(6), "community_id": community.id,
               "name": body["name"], "kind": kind.value, "cycle_months": body["cycle_months"],
               "price_fen_per_m2_month": price, "amount_fen_per_month": amount,
               "unit_kinds": unit_kinds, "active": True, "created_at": self.clock.now(),
               "created_by": actor_of(principal)["id"]}
        try:
            await self.items.insert_one(doc)
        except DuplicateKeyError:
            raise Conflict("该小区已有同名收费项目", code="fee_item_exists",
                           fields={"name": "名称重复"}) from None
        await self.audit.record(principal, "fee_item.create", community_id=community.id,
                                target=doc["_id"], detail=item_to_json(doc))
        return item_to_json(doc)

    async def list_items(self, community_id: str) -> list[dict[str, Any]]:
        docs = await self.items.find({"community_id": community_id}).sort("created_at", 1).to_list(None)
        return [item_to_json(d) for d in docs]

    async def set_item_active(self, principal: Principal | None, community: Community, item_id: str,
                              active: bool, reason: str) -> dict[str, Any]:
        doc = await self.items.find_one_and_update(
            {"_id": item_id, "community_id": community.id}, {"$set": {"active": active}},
            return_document=ReturnDocument.AFTER)
        if doc is None:
            raise NotFound("收费项目不存在", code="fee_item_not_found")
        await self.audit.record(principal, "fee_item.active" if active else "fee_item.inactive",
                                community_id=community.id, target=item_id, reason=reason)
        return item_to_json(doc)

    # -- bills --------------------------------------------------------------------------------
    async def generate(self, principal: Principal | None, community: Community, period: str,
                       item_ids: list[str]) -> dict[str, Any]:
        """One bill per (unit, item, period); running it again creates nothing new.

        The unique index on (community_id, unit_id, item_id, period) makes the batch
        idempotent even when two clerks press the button at once.
        """
        items = {d["_id"]: d for d in await self.items.find(
            {"_id": {"$in": item_ids}, "community_id": community.id}).to_list(None)}
        fields: dict[str, str] = {}
        for i, item_id in enumerate(item_ids):
            item = items.get(item_id)
            if item is None:
                fields[f"item_ids[{i}]"] = "收费项目不存在"
            elif not item["active"]:
                fields[f"item_ids[{i}]"] = "收费项目已停用"
            elif not period_starts_cycle(period, item["cycle_months"]):
                fields[f"item_ids[{i}]"] = f"该项目按 {item['cycle_months']} 个月计费，账期须从周期首月开始"
        if fields:
            raise InvalidInput("账期或收费项目有误，未生成任何账单", code="bills_invalid",
                               fields=fields)
        now = self.clock.now()
        units = await self.db["units"].find({"community_id": community.id}).to_list(None)
        docs = []
        for item in items.values():
            for unit in units:
                if unit["kind"] not in item["unit_kinds"]:
                    continue
                base = item_amount_fen(item, unit)
                docs.append({
                    "_id": stable_id("bl", community.id, unit["_id"], item["_id"], period),
                    "community_id": community.id, "area_path": list(community.area_path),
                    "unit_id": unit["_id"],
                    "unit_label": f"{unit.get('building_name', '')}{unit['number']}",
                    "area_centi_m2": unit["area_centi_m2"], "item_id": item["_id"],
                    "item_name": item["name"], "kind": item["kind"], "period": period,
                    "period_end": period_end(period, item["cycle_months"]),
                    "months": item["cycle_months"],
                    "price_fen_per_m2_month": item.get("price_fen_per_m2_month"),
                    "base_fen": base, "amount_due_fen": base, "adjustments": [],
                    "status": BillStatus.UNPAID.value if base > 0 else BillStatus.WAIVED.value,
                    "order_id": "", "paid_order_id": "", "paid_at": None, "created_at": now,
                })
        created = await self._insert_new(docs)
        result = {"period": period, "created": created, "existing": len(docs) - created,
                  "units": len(units)}
        await self.audit.record(principal, "bills.generate", community_id=community.id,
                                target=community.id, detail={**result, "item_ids": item_ids})
        return result

    async def _insert_new(self, docs: list[dict[str, Any]]) -> int:
        created = 0
        for start in range(0, len(docs), 500):
            batch = docs[start:start + 500]
            try:
                result = await self.bills.insert_many(batch, ordered=False)
                created += len(result.inserted_ids)
            except BulkWriteError as exc:
                if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                    raise
                created += exc.details.get("nInserted", 0)
        return created

    async def bill(self, bill_id: str) -> dict[str, Any]:
        doc = await self.bills.find_one({"_id": bill_id})
        if doc is None:
            raise NotFound("账单不存在", code="bill_not_found")
        return doc

    async def list_bills(self, query: dict[str, Any], limit: int = 500) -> list[dict[str, Any]]:
        return await self.bills.find(query).sort(
            [("period", 1), ("unit_label", 1), ("item_name", 1)]).limit(limit).to_list(None)

    async def adjust(self, principal: Principal | None, bill: dict[str, Any], delta_fen: int,
                     reason: str) -> dict[str, Any]:
        """Append an adjustment and move the amount due, holding the bill's lock meanwhile.

        The lock keeps out orders (whose total must match what is paid) and other
        adjustments (whose `$inc` could otherwise be lost), so the write below has no rival.
        """
        adjustment = {"id": "adj_" + secrets.token_hex(6), "delta_fen": delta_fen,
                      "reason": reason, "at": self.clock.now(), "by": actor_of(principal)}
        if not await self.locks.acquire(bill["_id"], adjustment["id"]):
            raise BillNotAdjustable()
        try:
            current = await self.bill(bill["_id"])
            if (current["status"] != BillStatus.UNPAID
                    or current["amount_due_fen"] + delta_fen < 0):
                raise BillNotAdjustable()
            total = current["amount_due_fen"] + delta_fen
            update: dict[str, Any] = {"$push": {"adjustments": adjustment},
                                      "$set": {"amount_due_fen": total}}
            if total == 0:
                update["$set"]["status"] = BillStatus.WAIVED.value
            doc = await self.bills.find_one_and_update(
                {"_id": bill["_id"], "status": BillStatus.UNPAID.value}, update,
                return_document=ReturnDocument.AFTER)
            if doc is None:
                raise BillNotAdjustable()
        finally:
            await self.locks.release([bill["_id"]], adjustment["id"])
        await self.audit.record(principal, "bill.adjust", community_id=doc["community_id"],
                                target=doc["_id"], reason=reason,
                                detail={"delta_fen": delta_fen,
                                        "amount_due_fen": doc["amount_due_fen"]})
        return doc

    # -- who may see and pay ----------------------------------------------------------------------
    async def payable_unit_ids(self, user_id: str) -> set[str]:
        """Units whose bills a user sees and pays: owner and family, tenants the owner allowed."""
        bindings = await self.db["bindings"].find(
            {"user_id": user_id, "status": "active"}).to_list(None)
        return {b["unit_id"] for b in bindings
                if b["role"] in ("owner", "family") or (b["role"] == "tenant" and b.get("can_pay"))}

    # -- arrears and collection ---------------------------------------------------------------
    async def _group(self, match: dict[str, Any], key: str) -> dict[str, tuple[int, int]]:
        """{key value: (sum of amount_due_fen, number of bills)} over bills matching `match`.

        One accumulator per aggregation: FerretDB 1.24 returns 0 for every accumulator of a
        $group after the first (found by test_arrears_and_collection_rate…), so the amount and
        the count are two passes over the same index range.
        """
        out: dict[str, list[int]] = {}
        for position, accumulator in enumerate(({"$sum": "$amount_due_fen"}, {"$sum": 1})):
            cursor = await self.bills.aggregate([
                {"$match": match}, {"$group": {"_id": f"${key}", "value": accumulator}}])
            for row in await cursor.to_list(None):
                out.setdefault(row["_id"], [0, 0])[position] = row["value"]
        return {k: (v[0], v[1]) for k, v in out.items()}

    async def arrears(self, community_id: str) -> list[dict[str, Any]]:
        rows = await self._group({"community_id": community_id,
                                  "status": BillStatus.UNPAID.value}, "unit_id")
        labels = await self._unit_labels(rows)
        found = sorted(rows.items(), key=lambda kv: (-kv[1][0], labels.get(kv[0], "")))
        return [{"unit_id": unit_id, "unit_label": labels.get(unit_id, ""), "amount_fen": amount,
                 "bills": count} for unit_id, (amount, count) in found]

    async def _unit_labels(self, unit_ids: Iterable[str]) -> dict[str, str]:
        docs = await self.db["units"].find({"_id": {"$in": list(unit_ids)}}).to_list(None)
        return {d["_id"]: f"{d.get('building_name', '')}{d['number']}" for d in docs}

    async def collection(self, match: dict[str, Any]) -> list[dict[str, Any]]:
        """Amount due and paid per community for bills matching `match` ($match/$group only)."""
        per: dict[str, dict[str, int]] = {}
        for status in BillStatus:
            rows = await self._group({**match, "status": status.value}, "community_id")
            for community_id, (amount, count) in rows.items():
                totals = per.setdefault(community_id, {})
                totals[status.value + "_fen"] = amount
                totals[status.value + "_bills"] = count
        out = []
        for community_id in sorted(per):
            t = per[community_id]
            paid, unpaid = t.get("paid_fen", 0), t.get("unpaid_fen", 0)
            due = paid + unpaid  # waived bills owe nothing and are left out of the rate
            out.append({"community_id": community_id, "due_fen": due, "paid_fen": paid,
                        "unpaid_fen": unpaid,
                        "bills": t.get("paid_bills", 0) + t.get("unpaid_bills", 0),
                        "paid_bills": t.get("paid_bills", 0),
                        "waived_bills": t.get("waived_bills", 0),
                        "rate_bp": rate_basis_points(paid, due)})
        return out
