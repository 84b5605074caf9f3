"""Refunds of paid orders through WeChat Pay v3: full or partial, idempotent on out_refund_no.

The refunded amount is reserved first in a per-order ledger (``refund_ledger``): entry n+1 carries
the running total and is inserted under the unique id ``order:n+1``, so of two clerks racing
for the same slot one wins and the other re-reads the new total; nobody can refund more than
was paid. A refund's final state is the first ``refund_outcomes`` insert for it, and only a
refund that did not happen gives its reservation back, once.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from miniprogram_api.wechatpay import (
    NotificationError,
    NotificationReply,
    WeChatPayError,
    WeChatPayUnavailable,
    failure_reply,
    success_reply,
)
from server.audit import Audit
from server.auth import StaffUser
from server.clock import Clock, iso
from server.errors import Conflict, UpstreamRejected, UpstreamUnavailable
from server.payments import OrderStatus, Payments


class RefundState(StrEnum):
    """Our record of a refund."""

    REQUESTED = "requested"    # amount reserved; WeChat Pay asked (or about to be)
    PROCESSING = "processing"  # WeChat Pay accepted it
    SUCCESS = "success"
    CLOSED = "closed"          # WeChat Pay gave up; the reservation is released
    ABNORMAL = "abnormal"      # money stuck (e.g. the payer's card closed): manual handling
    REFUSED = "refused"        # we or WeChat Pay refused it; nothing was refunded


_OPEN = [RefundState.REQUESTED.value, RefundState.PROCESSING.value]
_REFUNDABLE = [OrderStatus.PAID.value, OrderStatus.PAID_AFTER_CLOSE.value]


class RefundExceedsPaid(Conflict):
    """The refund would take back more than the order's remaining paid amount."""

    code = "refund_exceeds_paid"
    message = "退款金额超过订单可退金额"


class RefundNoReused(Conflict):
    """The out_refund_no belongs to a different refund."""

    code = "refund_no_reused"
    message = "退款单号已用于其他退款"


class OrderNotRefundable(Conflict):
    """Only paid orders can be refunded."""

    code = "order_not_refundable"
    message = "订单未支付，不能退款"


def refund_to_json(doc: dict[str, Any]) -> dict[str, Any]:
    return {"out_refund_no": doc["_id"], "order_id": doc["order_id"],
            "amount_fen": doc["amount_fen"], "reason": doc["reason"], "status": doc["status"],
            "refund_id": doc.get("refund_id") or None, "requested_at": iso(doc["requested_at"]),
            "requested_by": doc["requested_by"]}


class Refunds:
    """Refund requests by property staff, refund notifications and refund queries."""

    def __init__(self, db: AsyncDatabase, clock: Clock, audit: Audit, payments: Payments,
                 notify_url: str) -> None:
        self.refunds = db["pay_refunds"]
        self.orders = db["pay_orders"]
        self.orphans = db["orphan_payments"]
        self.ledger = db["refund_ledger"]
        self.outcomes = db["refund_outcomes"]
        self.clock = clock
        self.audit = audit
        self.payments = payments
        self.notify_url = notify_url

    async def request(self, staff: StaffUser, order: dict[str, Any], out_refund_no: str,
                      amount_fen: int, reason: str) -> dict[str, Any]:
        client = self.payments.client()
        if order["status"] not in _REFUNDABLE:
            raise OrderNotRefundable()
        doc = {"_id": out_refund_no, "order_id": order["_id"],
               "out_trade_no": order["out_trade_no"], "community_id": order["community_id"],
               "amount_fen": amount_fen, "reason": reason, "status": RefundState.REQUESTED.value,
               "refund_id": "", "requested_by": staff.staff_id, "requested_at": self.clock.now()}
        try:
            await self.refunds.insert_one(doc)
        except DuplicateKeyError:
            existing = await self.refunds.find_one({"_id": out_refund_no}) or {}
            if existing.get("order_id") != order["_id"] or existing.get("amount_fen") != amount_fen:
                raise RefundNoReused(fields={"out_refund_no": "已用于其他退款"}) from None
            if existing["status"] == RefundState.REFUSED:
                raise RefundExceedsPaid() from None
            if existing["status"] != RefundState.REQUESTED:
                return refund_to_json(existing)  # the same request again: same answer
            doc = existing  # an earlier attempt did not hear back: ask WeChat Pay again
        else:
            if not await self._reserve(order, out_refund_no, amount_fen):
                await self._finish(out_refund_no, RefundState.REFUSED,
                                   {"refused_reason": "exceeds_paid"}, release=False)
                raise RefundExceedsPaid(fields={"amount_fen": "超过可退金额"})
            await self.audit.record(staff, "refund.request", community_id=order["community_id"],
                                    target=out_refund_no, reason=reason,
                                    detail={"order_id": order["_id"], "amount_fen": amount_fen})
        try:
            result = await client.refund(order["out_trade_no"], out_refund_no, amount_fen,
                                         order["total_fen"], reason[:80], self.notify_url)
        except WeChatPayUnavailable:
            raise UpstreamUnavailable(code="wechatpay_unavailable") from None
        except WeChatPayError as exc:
            await self._finish(out_refund_no, RefundState.REFUSED, {"refused_reason": exc.code})
            raise UpstreamRejected("微信支付拒绝了退款请求", code="wechatpay_refund_rejected") from None
        state = RefundState.SUCCESS if result.get("status") == "SUCCESS" else RefundState.PROCESSING
        if state is RefundState.SUCCESS:
            await self._finish(out_refund_no, state, {"refund_id": str(result.get("refund_id", ""))})
        else:
            await self.refunds.update_one(
                {"_id": out_refund_no, "status": RefundState.REQUESTED.value},
                {"$set": {"status": state.value, "refund_id": str(result.get("refund_id", ""))}})
            await self._settle_status(out_refund_no)
        await self._orphan_progress(order, state)
        return refund_to_json(await self.refunds.find_one({"_id": out_refund_no}) or doc)

    async def _reserve(self, order: dict[str, Any], out_refund_no: str, delta_fen: int) -> bool:
        """Append to the order's refund ledger; False if the running total would pass the paid amount."""
        for _ in range(50):
            last = await self.ledger.find({"order_id": order["_id"]}).sort("seq", -1).limit(1).to_list(None)
            seq = last[0]["seq"] + 1 if last else 1
            running = (last[0]["running_fen"] if last else 0) + delta_fen
            if running > order["total_fen"]:
                return False
            try:
                await self.ledger.insert_one({
                    "_id": f"{order['_id']}:{seq:06d}", "order_id": order["_id"], "seq": seq,
                    "delta_fen": delta_fen, "running_fen": running, "out_refund_no": out_refund_no,
                    "at": self.clock.now()})
            except DuplicateKeyError:
                continue  # another refund took this slot: read the new total and try again
            await self.orders.update_one({"_id": order["_id"]},
                                         {"$set": {"refunded_fen": await self.refunded_fen(order["_id"])}})
            return True
        raise Conflict("退款处理繁忙，请稍后重试", code="refund_busy")

    async def refunded_fen(self, order_id: str) -> int:
        """Reserved or refunded so far: the running total of the ledger's last entry."""
        last = await self.ledger.find({"order_id": order_id}).sort("seq", -1).limit(1).to_list(None)
        return int(last[0]["running_fen"]) if last else 0

    async def _finish(self, out_refund_no: str, state: RefundState,
                      extra: Mapping[str, Any] | None = None, release: bool = True) -> bool:
        """Record the refund's one final state; a refund that did not happen returns its money."""
        try:
            await self.outcomes.insert_one({"_id": out_refund_no, "state": state.value,
                                            "at": self.clock.now()})
        except DuplicateKeyError:
            await self._settle_status(out_refund_no)
            return False
        await self.refunds.update_one(
            {"_id": out_refund_no},
            {"$set": {"status": state.value, "finished_at": self.clock.now(), **(extra or {})}})
        doc = await self.refunds.find_one({"_id": out_refund_no})
        if doc is not None and release and state in (RefundState.CLOSED, RefundState.REFUSED):
            order = await self.orders.find_one({"_id": doc["order_id"]})
            if order is not None:
                await self._reserve(order, out_refund_no, -doc["amount_fen"])
        return True

    async def _settle_status(self, out_refund_no: str) -> None:
        """Make the record show the final state, should a slower write have overtaken it."""
        outcome = await self.outcomes.find_one({"_id": out_refund_no})
        if outcome is not None:
            await self.refunds.update_one({"_id": out_refund_no},
                                          {"$set": {"status": outcome["state"]}})

    async def _orphan_progress(self, order: dict[str, Any], state: RefundState) -> None:
        if order["status"] == OrderStatus.PAID_AFTER_CLOSE:
            await self.orphans.update_one(
                {"_id": order["out_trade_no"], "status": {"$in": ["open", "refunding"]}},
                {"$set": {"status": "refunded" if state is RefundState.SUCCESS else "refunding"}})

    async def for_order(self, order_id: str) -> list[dict[str, Any]]:
        docs = await self.refunds.find({"order_id": order_id}).sort("requested_at", 1).to_list(None)
        return [refund_to_json(d) for d in docs]

    # -- refund notifications ---------------------------------------------------------------
    async def handle_notification(self, headers: Mapping[str, str], raw_body: bytes) -> NotificationReply:
        """REFUND.SUCCESS / CLOSED / ABNORMAL, checked and applied like payment notifications."""
        client = self.payments.client()
        try:
            notification = client.parse_notification(headers, raw_body, self.clock.now())
        except NotificationError as exc:
            await self.payments.reject("refund", exc.code, exc.message, headers, raw_body)
            return failure_reply(exc.message, exc.http_status)
        states = {"REFUND.SUCCESS": RefundState.SUCCESS, "REFUND.CLOSED": RefundState.CLOSED,
                  "REFUND.ABNORMAL": RefundState.ABNORMAL}
        resource = notification.resource
        refund = await self.refunds.find_one({"_id": str(resource.get("out_refund_no", ""))})
        problem = None
        if notification.event_type not in states:
            problem = ("unexpected_event", f"事件类型 {notification.event_type}")
        elif refund is None or refund["out_trade_no"] != resource.get("out_trade_no"):
            problem = ("refund_unknown", "退款单不存在")
        elif (resource.get("amount") or {}).get("refund") != refund["amount_fen"]:
            problem = ("amount_mismatch", "退款金额不一致")
        if problem or refund is None:
            code, message = problem or ("refund_unknown", "退款单不存在")
            await self.payments.reject("refund", code, message, headers, raw_body, notification.id)
            return failure_reply(message, 400)
        if not await self.payments.first_sighting(notification.id, "refund", refund["_id"]):
            return success_reply()
        state = states[notification.event_type]
        done = await self._finish(refund["_id"], state,
                                  {"refund_id": str(resource.get("refund_id", ""))})
        if done:
            order = await self.orders.find_one({"_id": refund["order_id"]}) or {}
            if order:
                await self._orphan_progress(order, state)
        await self.payments.db["pay_notifications"].update_one(
            {"_id": notification.id}, {"$set": {"done": True}})
        return success_reply()

    async def sweep(self, limit: int = 200) -> dict[str, int]:
        """Query refunds still open until WeChat Pay reports a final state."""
        client = self.payments.client()
        counts: dict[str, int] = {}
        docs = await self.refunds.find({"status": {"$in": _OPEN}}).limit(limit).to_list(None)
        for doc in docs:
            try:
                result = await client.query_refund(doc["_id"])
            except WeChatPayError:
                counts["unknown"] = counts.get("unknown", 0) + 1
                continue
            state = {"SUCCESS": RefundState.SUCCESS, "CLOSED": RefundState.CLOSED,
                     "ABNORMAL": RefundState.ABNORMAL}.get(str(result.get("status")))
            if state is not None and await self._finish(doc["_id"], state):
                counts[state.value] = counts.get(state.value, 0) + 1
        return counts
