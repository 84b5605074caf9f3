"""Fee items, bills, adjustments, arrears and collection rates (admin) and owners' bills (mp)."""

from __future__ import annotations

from typing import Any

from handlers.base import Auth, Endpoint, Reply, Request
from server.access import ALL_STAFF_ROLES, require_mp
from server.auth import Role
from server.fees import BillStatus, FeeKind, bill_to_json, rate_basis_points
from server.registry import UnitKind
from server.validation import BOOL, ID, TIMESTAMP, array, enum, integer, obj, string

PROPERTY_STAFF = (Role.PROPERTY, Role.PLATFORM_ADMIN)           # may change fees
FEE_READERS = (Role.PROPERTY, Role.OFFICIAL, Role.PLATFORM_ADMIN)  # officials read only
PERIOD = string(7, 7, pattern=r"^\d{4}-(0[1-9]|1[0-2])$")
NULLABLE_INT = {"type": ["integer", "null"]}
NULLABLE_STR = {"type": ["string", "null"]}

ITEM = obj({"id": ID, "community_id": ID, "name": string(), "kind": enum(*FeeKind),
            "cycle_months": integer(1, 12), "price_fen_per_m2_month": NULLABLE_INT,
            "amount_fen_per_month": NULLABLE_INT, "unit_kinds": array(string()), "active": BOOL,
            "created_at": TIMESTAMP})
ADJUSTMENT = obj({"id": ID, "delta_fen": integer(), "reason": string(1, 200), "at": TIMESTAMP})
BILL_FIELDS: dict[str, Any] = {
    "id": ID, "community_id": ID, "unit_id": ID, "unit_label": string(0), "item_id": ID,
    "item_name": string(), "kind": enum(*FeeKind), "period": PERIOD, "period_end": PERIOD,
    "months": integer(1, 12), "base_fen": integer(0), "amount_due_fen": integer(0),
    "status": enum(*BillStatus), "in_open_order": BOOL, "paid_at": NULLABLE_STR,
    "adjustments": array(ADJUSTMENT)}
BILL = obj(BILL_FIELDS)
STAFF_BILL = obj(BILL_FIELDS, {"order_id": NULLABLE_STR, "paid_order_id": NULLABLE_STR})
COLLECTION = obj({"community_id": ID, "due_fen": integer(0), "paid_fen": integer(0),
                  "unpaid_fen": integer(0), "bills": integer(0), "paid_bills": integer(0),
                  "waived_bills": integer(0), "rate_bp": integer(0, 10000)})
C = "/api/admin/v1/communities/{community_id}"


# -- fee items ---------------------------------------------------------------------------------
async def create_item(req: Request) -> Any:
    community = await req.services.access.staff_community(
        req.principal, req.args["community_id"], PROPERTY_STAFF)
    item = await req.services.fees.create_item(req.principal, community, req.body)
    return Reply(status=201, body=item)


async def list_items(req: Request) -> Any:
    community = await req.services.access.staff_community(
        req.principal, req.args["community_id"], ALL_STAFF_ROLES)
    return {"items": await req.services.fees.list_items(community.id)}


async def set_item_active(req: Request) -> Any:
    community = await req.services.access.staff_community(
        req.principal, req.args["community_id"], PROPERTY_STAFF)
    return await req.services.fees.set_item_active(
        req.principal, community, req.args["item_id"], req.body["active"], req.body["reason"])


# -- bills ---------------------------------------------------------------------------------------
async def generate_bills(req: Request) -> Any:
    community = await req.services.access.staff_community(
        req.principal, req.args["community_id"], PROPERTY_STAFF)
    return await req.services.fees.generate(req.principal, community, req.body["period"],
                                            req.body["item_ids"])


async def list_bills(req: Request) -> Any:
    community = await req.services.access.staff_community(
        req.principal, req.args["community_id"], ALL_STAFF_ROLES)
    query: dict[str, Any] = {"community_id": community.id}
    for name in ("period", "status", "unit_id"):
        if req.query.get(name):
            query[name] = req.query[name]
    docs = await req.services.fees.list_bills(query, req.query.get("limit", 500))
    return {"bills": [bill_to_json(d, for_staff=True) for d in docs]}


async def adjust_bill(req: Request) -> Any:
    bill = await req.services.fees.bill(req.args["bill_id"])
    await req.services.access.staff_community(req.principal, bill["community_id"], PROPERTY_STAFF)
    doc = await req.services.fees.adjust(req.principal, bill, req.body["delta_fen"],
                                         req.body["reason"])
    return Reply(status=201, body=bill_to_json(doc, for_staff=True))


async def arrears(req: Request) -> Any:
    community = await req.services.access.staff_community(
        req.principal, req.args["community_id"], ALL_STAFF_ROLES)
    units = await req.services.fees.arrears(community.id)
    return {"units": units, "total_fen": sum(u["amount_fen"] for u in units)}


async def community_collection(req: Request) -> Any:
    community = await req.services.access.staff_community(
        req.principal, req.args["community_id"], FEE_READERS)
    rows = await req.services.fees.collection({"community_id": community.id,
                                               "period": req.query["period"]})
    return {"period": req.query["period"], "communities": rows}


async def area_collection(req: Request) -> Any:
    area = await req.services.access.staff_area(req.principal, req.args["area_id"])
    rows = await req.services.fees.collection({"area_path": area["_id"],
                                               "period": req.query["period"]})
    due = sum(r["due_fen"] for r in rows)
    paid = sum(r["paid_fen"] for r in rows)
    return {"period": req.query["period"], "communities": rows,
            "total": {"due_fen": due, "paid_fen": paid, "rate_bp": rate_basis_points(paid, due)}}


# -- owners ---------------------------------------------------------------------------------------
async def my_bills(req: Request) -> Any:
    user = require_mp(req.principal)
    units = await req.services.fees.payable_unit_ids(user.user_id)
    query: dict[str, Any] = {"unit_id": {"$in": sorted(units)}}
    status = req.query.get("status", "unpaid")
    if status != "all":
        query["status"] = status
    docs = await req.services.fees.list_bills(query) if units else []
    owed = sum(d["amount_due_fen"] for d in docs if d["status"] == BillStatus.UNPAID)
    return {"bills": [bill_to_json(d) for d in docs], "arrears_fen": owed}


endpoints = [
    Endpoint("POST", C + "/fee-items", create_item, Auth.ADMIN,
             "物业企业设置收费项目（物业费按面积×单价/月，车位费与其他固定项目按月定额）", ITEM,
             body=obj({"name": string(1, 40), "kind": enum(*FeeKind),
                       "cycle_months": {"type": "integer", "enum": [1, 3, 6, 12]}},
                      {"price_fen_per_m2_month": integer(1, 100_000),
                       "amount_fen_per_month": integer(1, 10_000_000),
                       "unit_kinds": array(enum(*UnitKind), 1, 4, uniqueItems=True)}),
             status=201, tag="fees"),
    Endpoint("GET", C + "/fee-items", list_items, Auth.ADMIN, "收费项目列表",
             obj({"items": array(ITEM)}), tag="fees"),
    Endpoint("PUT", C + "/fee-items/{item_id}/active", set_item_active, Auth.ADMIN,
             "启用或停用收费项目（须写明理由）", ITEM,
             body=obj({"active": BOOL, "reason": string(1, 200)}), tag="fees"),
    Endpoint("POST", C + "/bills/generate", generate_bills, Auth.ADMIN,
             "按账期批量生成账单（幂等：同一房屋、项目、账期只生成一次）",
             obj({"period": PERIOD, "created": integer(0), "existing": integer(0),
                  "units": integer(0)}),
             body=obj({"period": PERIOD, "item_ids": array(ID, 1, 20, uniqueItems=True)}),
             tag="fees"),
    Endpoint("GET", C + "/bills", list_bills, Auth.ADMIN, "小区账单", obj({"bills": array(STAFF_BILL)}),
             query=obj(optional={"period": PERIOD, "status": enum(*BillStatus), "unit_id": ID,
                                 "limit": integer(1, 2000)}), tag="fees"),
    Endpoint("POST", "/api/admin/v1/bills/{bill_id}/adjustments", adjust_bill, Auth.ADMIN,
             "账单调整（只追加调整记录并写明理由；已缴或支付中的账单不能调整）", STAFF_BILL,
             body=obj({"delta_fen": integer(-100_000_000, 100_000_000, **{"not": {"const": 0}}),
                       "reason": string(1, 200)}), status=201, tag="fees"),
    Endpoint("GET", C + "/fees/arrears", arrears, Auth.ADMIN, "按房屋统计欠费",
             obj({"units": array(obj({"unit_id": ID, "unit_label": string(0),
                                      "amount_fen": integer(0), "bills": integer(0)})),
                  "total_fen": integer(0)}), tag="fees"),
    Endpoint("GET", C + "/fees/collection", community_collection, Auth.ADMIN,
             "小区账期收缴率（rate_bp 为万分比）",
             obj({"period": PERIOD, "communities": array(COLLECTION)}),
             query=obj({"period": PERIOD}), tag="fees"),
    Endpoint("GET", "/api/admin/v1/areas/{area_id}/fees/collection", area_collection, Auth.ADMIN,
             "辖区内各小区账期收缴率（主管部门）",
             obj({"period": PERIOD, "communities": array(COLLECTION),
                  "total": obj({"due_fen": integer(0), "paid_fen": integer(0),
                                "rate_bp": integer(0, 10000)})}),
             query=obj({"period": PERIOD}), tag="fees"),
    Endpoint("GET", "/api/mp/v1/bills", my_bills, Auth.MP,
             "我的账单（业主、家庭成员；租户须业主允许缴费）",
             obj({"bills": array(BILL), "arrears_fen": integer(0)}),
             query=obj(optional={"status": enum("unpaid", "paid", "waived", "all")}), tag="mp"),
]
