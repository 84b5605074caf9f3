"""Paying bills (mp), and orders, refunds, orphan payments and reconciliation (admin)."""

from __future__ import annotations

from datetime import date
from typing import Any

from handlers.base import Auth, Endpoint, Reply, Request
from handlers.fees import FEE_READERS, NULLABLE_STR, PROPERTY_STAFF
from server.access import require_mp, require_staff
from server.auth import Role
from server.clock import iso
from server.errors import Forbidden, InvalidInput
from server.payments import OrderStatus, order_to_json
from server.validation import ID, TIMESTAMP, array, enum, integer, obj, string

ORDER_FIELDS: dict[str, Any] = {
    "id": ID, "out_trade_no": string(6, 32), "community_id": ID, "bill_ids": array(ID),
    "total_fen": integer(1), "status": enum(*OrderStatus), "created_at": TIMESTAMP,
    "expires_at": TIMESTAMP, "paid_at": NULLABLE_STR, "refunded_fen": integer(0)}
ORDER = obj(ORDER_FIELDS)
STAFF_ORDER = obj(ORDER_FIELDS, {"transaction_id": NULLABLE_STR, "user_id": ID,
                                 "close_reason": NULLABLE_STR})
PAY_PARAMS = obj({"appId": string(), "timeStamp": string(), "nonceStr": string(),
                  "package": string(), "signType": enum("RSA"), "paySign": string(1, 1000)})
ORDER_AND_PARAMS = obj({"order": ORDER, "pay_params": PAY_PARAMS})
RECEIPT = obj({"id": ID, "number": string(), "order_id": ID, "community_id": ID,
               "community_name": string(0),
               "lines": array(obj({"bill_id": ID, "unit_label": string(0), "item_name": string(),
                                   "period": string(), "period_end": string(),
                                   "amount_fen": integer(0)})),
               "total_fen": integer(1), "paid_at": TIMESTAMP, "transaction_id": string(0),
               "issued_at": TIMESTAMP})
REFUND = obj({"out_refund_no": string(), "order_id": ID, "amount_fen": integer(1),
              "reason": string(), "status": string(), "refund_id": NULLABLE_STR,
              "requested_at": TIMESTAMP, "requested_by": ID})
ORPHAN = obj({"out_trade_no": string(), "order_id": string(0), "amount_fen": integer(0),
              "transaction_id": string(0), "route": enum("refund", "review"),
              "status": string(), "found_via": string(), "at": TIMESTAMP})
RECONCILIATION = obj({"date": string(), "ran_at": TIMESTAMP, "rows": integer(0),
                      "differences": array({"type": "object"})})
DATE = string(10, 10, pattern=r"^\d{4}-\d\d-\d\d$")


# -- owners ---------------------------------------------------------------------------------------
async def create_order(req: Request) -> Any:
    result = await req.services.payments.create_order(require_mp(req.principal),
                                                      req.body["bill_ids"])
    return Reply(status=201, body=result)


async def my_order(req: Request) -> Any:
    return order_to_json(await req.services.payments.order_for_user(
        require_mp(req.principal), req.args["order_id"]))


async def confirm_order(req: Request) -> Any:
    return await req.services.payments.confirm(require_mp(req.principal), req.args["order_id"])


async def pay_params(req: Request) -> Any:
    return await req.services.payments.pay_params(require_mp(req.principal), req.args["order_id"])


async def my_receipt(req: Request) -> Any:
    order = await req.services.payments.order_for_user(require_mp(req.principal),
                                                       req.args["order_id"])
    return await req.services.payments.receipt(order["_id"])


# -- staff --------------------------------------------------------------------------------------
async def _staff_order(req: Request, roles: tuple[Role, ...]) -> dict[str, Any]:
    order = await req.services.payments.order(req.args["order_id"])
    await req.services.access.staff_community(req.principal, order["community_id"], roles)
    return order


async def community_orders(req: Request) -> Any:
    community = await req.services.access.staff_community(
        req.principal, req.args["community_id"], FEE_READERS)
    query: dict[str, Any] = {"community_id": community.id}
    if req.query.get("status"):
        query["status"] = req.query["status"]
    docs = await req.services.payments.orders.find(query).sort("created_at", -1).limit(
        req.query.get("limit", 200)).to_list(None)
    return {"orders": [order_to_json(d, for_staff=True) for d in docs]}


async def staff_order(req: Request) -> Any:
    order = await _staff_order(req, FEE_READERS)
    order["refunded_fen"] = await req.services.refunds.refunded_fen(order["_id"])  # the ledger
    return {"order": order_to_json(order, for_staff=True),
            "refunds": await req.services.refunds.for_order(order["_id"])}


async def staff_receipt(req: Request) -> Any:
    order = await _staff_order(req, FEE_READERS)
    return await req.services.payments.receipt(order["_id"])


async def refund(req: Request) -> Any:
    order = await _staff_order(req, PROPERTY_STAFF)
    result = await req.services.refunds.request(
        require_staff(req.principal), order, req.body["out_refund_no"], req.body["amount_fen"],
        req.body["reason"])
    return Reply(status=201, body=result)


async def orphan_payments(req: Request) -> Any:
    community = await req.services.access.staff_community(
        req.principal, req.args["community_id"], FEE_READERS)
    docs = await req.services.payments.db["orphan_payments"].find(
        {"community_id": community.id}).sort("at", -1).to_list(200)
    return {"payments": [{"out_trade_no": d["_id"], "order_id": d["order_id"],
                          "amount_fen": d["amount_fen"], "transaction_id": d["transaction_id"],
                          "route": d["route"], "status": d["status"], "found_via": d["found_via"],
                          "at": iso(d["at"])} for d in docs]}


def _platform_admin(req: Request) -> None:
    if not require_staff(req.principal).has_role(Role.PLATFORM_ADMIN):
        raise Forbidden("仅平台管理员", code="platform_admin_only")


async def sweep(req: Request) -> Any:
    _platform_admin(req)
    return {"orders": await req.services.payments.sweep(),
            "refunds": await req.services.refunds.sweep()}


async def reconcile(req: Request) -> Any:
    _platform_admin(req)
    try:
        day = date.fromisoformat(req.body["date"])
    except ValueError:
        raise InvalidInput(fields={"date": "日期无效"}) from None
    return await req.services.reconciliation.run(day)


async def reconciliations(req: Request) -> Any:
    _platform_admin(req)
    return {"days": await req.services.reconciliation.list()}


async def rejections(req: Request) -> Any:
    _platform_admin(req)
    docs = await req.services.payments.db["pay_rejections"].find().sort("at", -1).limit(
        req.query.get("limit", 100)).to_list(None)
    return {"rejections": [{"id": d["_id"], "at": iso(d["at"]),
                            "kind": d["kind"], "code": d["code"], "message": d["message"],
                            "notification_id": d["notification_id"]} for d in docs]}


MP = "/api/mp/v1/orders"
ADMIN = "/api/admin/v1/orders/{order_id}"
COUNTS = {"type": "object", "additionalProperties": {"type": "integer"}}

endpoints = [
    Endpoint("POST", MP, create_order, Auth.MP,
             "选择未缴账单下单（微信支付 JSAPI），返回 wx.requestPayment 参数", ORDER_AND_PARAMS,
             body=obj({"bill_ids": array(ID, 1, 50, uniqueItems=True)}), status=201, tag="mp"),
    Endpoint("GET", MP + "/{order_id}", my_order, Auth.MP, "我的缴费订单", ORDER, tag="mp"),
    Endpoint("POST", MP + "/{order_id}/confirm", confirm_order, Auth.MP,
             "小程序支付完成后确认（以微信支付查单结果为准）", ORDER, tag="mp"),
    Endpoint("POST", MP + "/{order_id}/pay-params", pay_params, Auth.MP,
             "待支付订单重新获取支付参数", ORDER_AND_PARAMS, tag="mp"),
    Endpoint("GET", MP + "/{order_id}/receipt", my_receipt, Auth.MP, "电子收据", RECEIPT,
             tag="mp"),
    Endpoint("GET", "/api/admin/v1/communities/{community_id}/orders", community_orders,
             Auth.ADMIN, "小区缴费订单", obj({"orders": array(STAFF_ORDER)}),
             query=obj(optional={"status": enum(*OrderStatus), "limit": integer(1, 1000)}),
             tag="fees"),
    Endpoint("GET", ADMIN, staff_order, Auth.ADMIN, "订单详情与退款记录",
             obj({"order": STAFF_ORDER, "refunds": array(REFUND)}), tag="fees"),
    Endpoint("GET", ADMIN + "/receipt", staff_receipt, Auth.ADMIN, "订单电子收据", RECEIPT,
             tag="fees"),
    Endpoint("POST", ADMIN + "/refunds", refund, Auth.ADMIN,
             "退款（全额或部分，须写明理由；同一退款单号只退一次）", REFUND,
             body=obj({"out_refund_no": string(6, 64, pattern="^[A-Za-z0-9_-]+$"),
                       "amount_fen": integer(1, 100_000_000), "reason": string(1, 80)}),
             status=201, tag="fees"),
    Endpoint("GET", "/api/admin/v1/communities/{community_id}/orphan-payments", orphan_payments,
             Auth.ADMIN, "订单关闭后到账的款项（待退款或人工核对）",
             obj({"payments": array(ORPHAN)}), tag="fees"),
    Endpoint("POST", "/api/admin/v1/pay/sweep", sweep, Auth.ADMIN,
             "立即查询待支付订单与退款（后台任务也会定期执行）",
             obj({"orders": COUNTS, "refunds": COUNTS}), tag="fees"),
    Endpoint("POST", "/api/admin/v1/pay/reconciliations", reconcile, Auth.ADMIN,
             "按日对账（下载微信支付交易账单并比对）", RECONCILIATION,
             body=obj({"date": DATE}), tag="fees"),
    Endpoint("GET", "/api/admin/v1/pay/reconciliations", reconciliations, Auth.ADMIN,
             "对账结果", obj({"days": array(RECONCILIATION)}), tag="fees"),
    Endpoint("GET", "/api/admin/v1/pay/rejections", rejections, Auth.ADMIN,
             "被拒绝的支付通知（待核查）",
             obj({"rejections": array(obj({"id": ID, "at": TIMESTAMP, "kind": string(),
                                           "code": string(), "message": string(0, 300),
                                           "notification_id": string(0)}))}),
             query=obj(optional={"limit": integer(1, 500)}), tag="fees"),
]
