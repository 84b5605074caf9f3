"""Paying bills with WeChat Pay v3 (JSAPI): orders, payment notifications, settlement, receipts.

Every decision is an insert against a unique key, so it is made exactly once on any store
(FerretDB 1.24 does not make a guarded ``update_one`` atomic under concurrency): a bill joins an
order by inserting its ``bill_locks`` entry; an order's fate (paid, closed, failed) is the
first ``pay_outcomes`` insert for it; a receipt is unique per order; a notification id is
unique. The documents are then brought in line with plain, idempotent ``$set`` updates, so a
retry, a replay or a crash half-way only ever completes the work.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from miniprogram_api.wechatpay import (
    BEIJING,
    NotificationError,
    NotificationReply,
    TradeState,
    Transaction,
    WeChatPayClient,
    WeChatPayError,
    WeChatPayUnavailable,
    failure_reply,
    success_reply,
)
from server.audit import Audit
from server.auth import MpUser
from server.clock import Clock, as_utc, iso
from server.errors import Conflict, DomainError, InvalidInput, NotFound, UpstreamRejected, UpstreamUnavailable
from server.fees import BillStatus, Fees

log = logging.getLogger("server.payments")


class OrderStatus(StrEnum):
    """A payment order's state."""

    PENDING = "pending"    # placed (or being placed) at WeChat Pay; its bills are claimed
    PAID = "paid"          # WeChat Pay confirmed; bills paid; receipt issued
    CLOSED = "closed"      # expired or closed at WeChat Pay; bills released
    FAILED = "failed"      # never placed (a bill was taken, or WeChat Pay refused); released
    PAID_AFTER_CLOSE = "paid_after_close"  # money arrived after we closed it: an orphan payment


class PaymentNotConfigured(DomainError):
    """WeChat Pay merchant settings are absent: online payment is switched off."""

    status = 503
    code = "payment_not_configured"
    message = "暂未开通在线缴费"


class BillTaken(Conflict):
    """A bill is already paid, waived, or in another open order."""

    code = "bill_in_open_order"
    message = "账单已在其他待支付订单中或已缴清"


class OrderNotPending(Conflict):
    """The order is no longer awaiting payment."""

    code = "order_not_pending"
    message = "订单已支付、关闭或失效"


class _Rejected(Exception):
    """A verified notification that does not match our records (amount, state, appid…)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def order_to_json(doc: dict[str, Any], *, for_staff: bool = False) -> dict[str, Any]:
    out = {"id": doc["_id"], "out_trade_no": doc["out_trade_no"],
           "community_id": doc["community_id"], "bill_ids": doc["bill_ids"],
           "total_fen": doc["total_fen"], "status": doc["status"],
           "created_at": iso(doc["created_at"]), "expires_at": iso(doc["expires_at"]),
           "paid_at": iso(doc["paid_at"]) if doc.get("paid_at") else None,
           "refunded_fen": doc.get("refunded_fen", 0)}
    if for_staff:
        out.update(transaction_id=doc.get("transaction_id") or None, user_id=doc["user_id"],
                   close_reason=doc.get("close_reason") or None)
    return out


def receipt_to_json(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "number": doc["number"], "order_id": doc["order_id"],
            "community_id": doc["community_id"], "community_name": doc["community_name"],
            "lines": doc["lines"], "total_fen": doc["total_fen"],
            "paid_at": iso(doc["paid_at"]), "transaction_id": doc["transaction_id"],
            "issued_at": iso(doc["issued_at"])}


def headers_for_log(headers: Mapping[str, str]) -> dict[str, str]:
    """The Wechatpay-* headers worth keeping for review (the signature itself is not)."""
    keep = ("wechatpay-serial", "wechatpay-timestamp", "wechatpay-nonce")
    return {k.lower(): v[:100] for k, v in headers.items() if k.lower() in keep}


class Payments:
    """Orders over bills, WeChat Pay notifications, reconciliation queries and receipts."""

    def __init__(self, db: AsyncDatabase, clock: Clock, audit: Audit, fees: Fees,
                 client: WeChatPayClient | None, notify_url: str, order_ttl_seconds: int) -> None:
        self.db = db
        self.orders = db["pay_orders"]
        self.bills = db["bills"]
        self.clock = clock
        self.audit = audit
        self.fees = fees
        self._pay = client
        self.notify_url = notify_url
        self.order_ttl = timedelta(seconds=order_ttl_seconds)

    @property
    def configured(self) -> bool:
        return self._pay is not None

    def client(self) -> WeChatPayClient:
        if self._pay is None:
            raise PaymentNotConfigured()
        return self._pay

    # -- orders -------------------------------------------------------------------------------
    async def create_order(self, user: MpUser, bill_ids: list[str]) -> dict[str, Any]:
        """Claim the bills for a new order, place it at WeChat Pay, return wx.requestPayment args."""
        client = self.client()
        units = await self.fees.payable_unit_ids(user.user_id)
        found = {b["_id"]: b for b in await self.bills.find({"_id": {"$in": bill_ids}}).to_list(None)
                 if b["unit_id"] in units}
        missing = {f"bill_ids[{i}]": "账单不存在" for i, b in enumerate(bill_ids) if b not in found}
        if missing:
            raise NotFound("账单不存在", code="bill_not_found", fields=missing)
        bills = [found[b] for b in bill_ids]
        if len({b["community_id"] for b in bills}) > 1:
            raise InvalidInput("一次只能缴纳同一小区的账单", code="bills_mixed_communities",
                               fields={"bill_ids": "须为同一小区的账单"})
        taken = {f"bill_ids[{i}]": "已缴清或正在支付中" for i, b in enumerate(bills)
                 if b["status"] != BillStatus.UNPAID or b["order_id"]}
        if taken:
            raise BillTaken(fields=taken)
        community = await self.db["communities"].find_one({"_id": bills[0]["community_id"]})
        now = self.clock.now()
        order = {
            "_id": "po_" + secrets.token_hex(8),
            # 26 chars of [A-Z0-9]: within WeChat Pay's 6–32 and unique by the index.
            "out_trade_no": f"PF{now.astimezone(BEIJING):%Y%m%d}{secrets.token_hex(8).upper()}",
            "user_id": user.user_id, "openid": user.openid,
            "community_id": bills[0]["community_id"], "bill_ids": bill_ids,
            "unit_ids": sorted({b["unit_id"] for b in bills}),
            "total_fen": sum(b["amount_due_fen"] for b in bills),
            "description": f"{(community or {}).get('name', '')}物业缴费（{len(bills)}笔）"[:120],
            "status": OrderStatus.PENDING.value, "created_at": now,
            "expires_at": now + self.order_ttl, "prepay_id": "", "transaction_id": "",
            "paid_at": None, "refunded_fen": 0, "close_reason": "",
        }
        # The order exists before any bill points at it, so a crash never strands a claim:
        # the sweep finds the pending order, learns WeChat Pay never saw it, and releases it.
        await self.orders.insert_one(order)
        for i, bill in enumerate(bills):
            if not await self.fees.locks.acquire(bill["_id"], order["_id"]):
                await self._abandon(order, "bill_taken")
                raise BillTaken(fields={f"bill_ids[{i}]": "已缴清、正在调整或正在支付中"})
            current = await self.fees.bill(bill["_id"])
            if (current["status"] != BillStatus.UNPAID
                    or current["amount_due_fen"] != bill["amount_due_fen"]):
                await self._abandon(order, "bill_changed")
                raise BillTaken(fields={f"bill_ids[{i}]": "账单已缴清或金额已调整，请刷新"})
            await self.bills.update_one({"_id": bill["_id"]}, {"$set": {"order_id": order["_id"]}})
        prepay_id = await self._place(client, order)
        await self.orders.update_one({"_id": order["_id"]}, {"$set": {"prepay_id": prepay_id}})
        await self.audit.record(user, "pay_order.create", community_id=order["community_id"],
                                target=order["_id"],
                                detail={"bill_ids": bill_ids, "total_fen": order["total_fen"],
                                        "out_trade_no": order["out_trade_no"]})
        order["prepay_id"] = prepay_id
        return {"order": order_to_json(order),
                "pay_params": client.jsapi_pay_params(prepay_id, now=self.clock.now())}

    async def _place(self, client: WeChatPayClient, order: dict[str, Any]) -> str:
        try:
            # Same arguments give the same prepay_id, so re-placing a pending order is safe.
            return await client.create_jsapi_order(
                out_trade_no=order["out_trade_no"], description=order["description"],
                amount_total_fen=order["total_fen"], payer_openid=order["openid"],
                notify_url=self.notify_url, time_expire=as_utc(order["expires_at"]),
                attach=order["_id"])
        except WeChatPayUnavailable:
            # Outcome unknown: the order may exist at WeChat Pay. It stays pending with its
            # bills; pay-params may retry, and the sweep closes it at expiry.
            raise UpstreamUnavailable(code="wechatpay_unavailable") from None
        except WeChatPayError as exc:
            await self._abandon(order, f"wechatpay_refused:{exc.code}")
            raise UpstreamRejected("微信支付拒绝了下单请求", code="wechatpay_rejected") from None

    async def pay_params(self, user: MpUser, order_id: str) -> dict[str, Any]:
        """wx.requestPayment arguments again for a pending order (e.g. the owner closed the sheet)."""
        client = self.client()
        order = await self.order_for_user(user, order_id)
        if order["status"] != OrderStatus.PENDING or as_utc(order["expires_at"]) <= self.clock.now():
            raise OrderNotPending()
        prepay_id = await self._place(client, order)
        await self.orders.update_one({"_id": order["_id"]}, {"$set": {"prepay_id": prepay_id}})
        return {"order": order_to_json(order),
                "pay_params": client.jsapi_pay_params(prepay_id, now=self.clock.now())}

    async def _decide(self, order_id: str, outcome: str) -> tuple[str, bool]:
        """The order's one outcome: ours if we are first, else the earlier one; and who won."""
        try:
            await self.db["pay_outcomes"].insert_one(
                {"_id": order_id, "outcome": outcome, "at": self.clock.now()})
            return outcome, True
        except DuplicateKeyError:
            doc = await self.db["pay_outcomes"].find_one({"_id": order_id}) or {}
            return str(doc.get("outcome", "")), False

    async def _abandon(self, order: dict[str, Any], reason: str) -> None:
        """Mark a never-placed order failed and release whatever bills it claimed."""
        outcome, won = await self._decide(order["_id"], OrderStatus.FAILED.value)
        if won:
            await self.orders.update_one(
                {"_id": order["_id"]},
                {"$set": {"status": OrderStatus.FAILED.value, "close_reason": reason,
                          "closed_at": self.clock.now()}})
            await self._release(order)

    async def _release(self, order: dict[str, Any]) -> None:
        # The display field first, then the locks: once a lock is gone another order may
        # claim the bill and set its own order_id, which must not be overwritten.
        await self.bills.update_many(
            {"_id": {"$in": order["bill_ids"]}, "order_id": order["_id"],
             "status": BillStatus.UNPAID.value},
            {"$set": {"order_id": ""}})
        await self.fees.locks.release(order["bill_ids"], order["_id"])

    async def order(self, order_id: str) -> dict[str, Any]:
        doc = await self.orders.find_one({"_id": order_id})
        if doc is None:
            raise NotFound("订单不存在", code="order_not_found")
        return doc

    async def order_for_user(self, user: MpUser, order_id: str) -> dict[str, Any]:
        doc = await self.orders.find_one({"_id": order_id, "user_id": user.user_id})
        if doc is None:
            raise NotFound("订单不存在", code="order_not_found")
        return doc

    async def confirm(self, user: MpUser, order_id: str) -> dict[str, Any]:
        """The mini-program says it paid; that is not authoritative, so ask WeChat Pay."""
        self.client()
        order = await self.order_for_user(user, order_id)
        if order["status"] == OrderStatus.PENDING:
            await self.reconcile_order(order)
            order = await self.order(order_id)
        return order_to_json(order)

    # -- the one path to "paid" ------------------------------------------------------------------
    def _mismatch(self, order: dict[str, Any], txn: Transaction) -> tuple[str, str] | None:
        config = self.client().config
        if txn.trade_state not in (TradeState.SUCCESS, TradeState.REFUND):
            return "trade_state", f"交易状态为 {txn.trade_state}"
        if txn.amount_total_fen != order["total_fen"]:
            return "amount_mismatch", "支付金额与订单金额不一致"
        if txn.mchid != config.mchid:
            return "mchid_mismatch", "商户号不一致"
        if txn.appid != config.appid:
            return "appid_mismatch", "AppID 不一致"
        return None

    async def mark_paid(self, order: dict[str, Any], txn: Transaction, via: str) -> dict[str, Any]:
        """pending → paid once; bills paid and receipt issued idempotently (safe to repeat)."""
        now = self.clock.now()
        outcome, won = await self._decide(order["_id"], OrderStatus.PAID.value)
        if outcome != OrderStatus.PAID:
            await self.record_orphan(await self.order(order["_id"]), txn, via)
            return await self.order(order["_id"])
        paid = {"status": OrderStatus.PAID.value, "paid_at": txn.success_time or now,
                "transaction_id": txn.transaction_id or "", "payer_openid": txn.payer_openid or "",
                "paid_via": via}
        doc = await self.orders.find_one_and_update(
            {"_id": order["_id"], "status": {"$ne": OrderStatus.PAID.value}}, {"$set": paid},
            return_document=ReturnDocument.AFTER) or await self.order(order["_id"])
        if won:
            await self.audit.record(None, "pay_order.paid", community_id=doc["community_id"],
                                    target=doc["_id"], detail={"via": via,
                                                               "transaction_id": txn.transaction_id})
        await self._finish(doc)
        return doc

    async def _finish(self, order: dict[str, Any]) -> None:
        await self.bills.update_many(
            {"_id": {"$in": order["bill_ids"]}, "order_id": order["_id"],
             "status": BillStatus.UNPAID.value},
            {"$set": {"status": BillStatus.PAID.value, "paid_at": order["paid_at"],
                      "paid_order_id": order["_id"]}})
        await self._issue_receipt(order)

    async def _issue_receipt(self, order: dict[str, Any]) -> None:
        bills = await self.bills.find({"_id": {"$in": order["bill_ids"]}}).to_list(None)
        community = await self.db["communities"].find_one({"_id": order["community_id"]}) or {}
        paid_at = as_utc(order["paid_at"])
        lines = [{"bill_id": b["_id"], "unit_label": b["unit_label"], "item_name": b["item_name"],
                  "period": b["period"], "period_end": b["period_end"],
                  "amount_fen": b["amount_due_fen"]}
                 for b in sorted(bills, key=lambda b: (b["unit_label"], b["period"], b["item_name"]))]
        try:
            # Unique on order_id: ten concurrent notifications still issue one receipt.
            await self.db["receipts"].insert_one({
                "_id": "rc_" + secrets.token_hex(8),
                "number": f"WY{paid_at.astimezone(BEIJING):%Y%m%d}{order['out_trade_no'][-10:]}",
                "order_id": order["_id"], "community_id": order["community_id"],
                "community_name": community.get("name", ""), "user_id": order["user_id"],
                "lines": lines, "total_fen": order["total_fen"], "paid_at": paid_at,
                "transaction_id": order.get("transaction_id", ""), "issued_at": self.clock.now()})
        except DuplicateKeyError:
            pass

    async def receipt(self, order_id: str) -> dict[str, Any]:
        doc = await self.db["receipts"].find_one({"order_id": order_id})
        if doc is None:
            raise NotFound("收据尚未开具（订单未支付）", code="receipt_not_found")
        return receipt_to_json(doc)

    async def record_orphan(self, order: dict[str, Any] | None, txn: Transaction, via: str) -> None:
        """Money arrived for an order we closed (or do not know): keep it, route it onward.

        If any of its bills has since been paid or taken by another order, the money must go
        back (route "refund"); otherwise a person decides (route "review").
        """
        route = "review"
        if order is not None:
            await self.orders.update_one(
                {"_id": order["_id"]},
                {"$set": {"status": OrderStatus.PAID_AFTER_CLOSE.value,
                          "transaction_id": txn.transaction_id or "",
                          "paid_at": txn.success_time or self.clock.now(), "paid_via": via}})
            bills = await self.bills.find({"_id": {"$in": order["bill_ids"]}}).to_list(None)
            holders = [await self.fees.locks.holder(b["_id"]) for b in bills]
            if any(b["status"] != BillStatus.UNPAID for b in bills) or any(
                    h not in (None, order["_id"]) for h in holders):
                route = "refund"  # paid since, or in another order: the money goes back
        try:
            await self.db["orphan_payments"].insert_one({
                "_id": txn.out_trade_no, "order_id": order["_id"] if order else "",
                "community_id": order["community_id"] if order else "",
                "amount_fen": txn.amount_total_fen or 0, "transaction_id": txn.transaction_id or "",
                "route": route, "status": "open", "found_via": via, "at": self.clock.now()})
        except DuplicateKeyError:
            return
        log.warning("orphan payment", extra={"out_trade_no": txn.out_trade_no, "route": route})
        await self.audit.record(None, "pay_order.orphan_payment",
                                community_id=order["community_id"] if order else "",
                                target=txn.out_trade_no, detail={"route": route, "via": via})

    # -- notifications ----------------------------------------------------------------------------
    async def handle_notification(self, headers: Mapping[str, str], raw_body: bytes) -> NotificationReply:
        """TRANSACTION.SUCCESS: verify, match against our order, then change state once."""
        client = self.client()
        try:
            notification = client.parse_notification(headers, raw_body, self.clock.now())
        except NotificationError as exc:
            await self.reject("payment", exc.code, exc.message, headers, raw_body)
            return failure_reply(exc.message, exc.http_status)
        try:
            if notification.event_type != "TRANSACTION.SUCCESS":
                raise _Rejected("unexpected_event", f"事件类型 {notification.event_type}")
            try:
                txn = Transaction.from_json(notification.resource)
            except (KeyError, TypeError, ValueError):
                raise _Rejected("malformed", "通知内容缺少字段") from None
            order = await self.orders.find_one({"out_trade_no": txn.out_trade_no})
            if order is not None:
                problem = self._mismatch(order, txn)
                if problem:
                    raise _Rejected(*problem)
        except _Rejected as exc:
            await self.reject("payment", exc.code, exc.message, headers, raw_body,
                              notification.id)
            return failure_reply(exc.message, 400)
        if not await self.first_sighting(notification.id, "payment", txn.out_trade_no):
            return success_reply()
        if order is None:
            await self.record_orphan(None, txn, "notification")
        else:
            await self.mark_paid(order, txn, "notification")
        await self.db["pay_notifications"].update_one({"_id": notification.id},
                                                      {"$set": {"done": True}})
        return success_reply()

    async def first_sighting(self, notification_id: str, kind: str, key: str) -> bool:
        """Record the id; False when an earlier delivery of it was already fully processed.

        A delivery that was seen but not finished (crash, concurrent retry) is processed again:
        the state changes are idempotent, so this only ever completes the work.
        """
        try:
            await self.db["pay_notifications"].insert_one(
                {"_id": notification_id, "kind": kind, "key": key, "done": False,
                 "at": self.clock.now()})
            return True
        except DuplicateKeyError:
            seen = await self.db["pay_notifications"].find_one({"_id": notification_id})
            return not (seen or {}).get("done")

    async def reject(self, kind: str, code: str, message: str, headers: Mapping[str, str],
                     raw_body: bytes, notification_id: str = "") -> None:
        """Keep a refused notification for review; nothing else changes."""
        await self.db["pay_rejections"].insert_one({
            "_id": "pr_" + secrets.token_hex(8), "at": self.clock.now(), "kind": kind,
            "code": code, "message": message[:300], "notification_id": notification_id,
            "headers": headers_for_log(headers), "body_sha256": hashlib.sha256(raw_body).hexdigest(),
            "body_bytes": len(raw_body)})
        log.warning("wechatpay notification rejected", extra={"code": code, "kind": kind})

    # -- reconciliation by query -----------------------------------------------------------------
    async def reconcile_order(self, order: dict[str, Any], now: datetime | None = None) -> str:
        """Ask WeChat Pay about a pending order; settle, close or leave it. Returns the outcome."""
        client = self.client()
        now = now or self.clock.now()
        expired = as_utc(order["expires_at"]) <= now
        try:
            txn = Transaction.from_json(await client.query_order(order["out_trade_no"]))
        except WeChatPayError as exc:
            if exc.code == "ORDER_NOT_EXIST" and expired:
                await self._close_local(order, "never_placed")
                return "closed"
            if isinstance(exc, WeChatPayUnavailable):
                raise UpstreamUnavailable(code="wechatpay_unavailable") from None
            return "unknown"
        if txn.trade_state in (TradeState.SUCCESS, TradeState.REFUND):
            problem = self._mismatch(order, txn)
            if problem:
                await self.reject("query", problem[0], problem[1], {}, b"", "")
                return "mismatch"
            await self.mark_paid(order, txn, "query")
            return "paid"
        if txn.trade_state in (TradeState.CLOSED, TradeState.REVOKED):
            await self._close_local(order, "closed_at_wechatpay")
            return "closed"
        if expired and txn.trade_state in (TradeState.NOTPAY, TradeState.PAYERROR):
            try:
                await client.close_order(order["out_trade_no"])
            except WeChatPayError as exc:
                if exc.code == "ORDERPAID":  # paid at the last moment: settle instead
                    txn = Transaction.from_json(await client.query_order(order["out_trade_no"]))
                    if self._mismatch(order, txn) is None:
                        await self.mark_paid(order, txn, "query")
                        return "paid"
                return "unknown"
            await self._close_local(order, "expired")
            return "closed"
        return "pending"

    async def _close_local(self, order: dict[str, Any], reason: str) -> None:
        outcome, won = await self._decide(order["_id"], OrderStatus.CLOSED.value)
        if won:
            await self.orders.update_one(
                {"_id": order["_id"]},
                {"$set": {"status": OrderStatus.CLOSED.value, "close_reason": reason,
                          "closed_at": self.clock.now()}})
            await self._release(order)

    async def sweep(self, limit: int = 500) -> dict[str, int]:
        """Query every pending order until it is final; close expired ones (run periodically)."""
        counts: dict[str, int] = {}
        docs = await self.orders.find({"status": OrderStatus.PENDING.value}).sort(
            "created_at", 1).limit(limit).to_list(None)
        await self.fees.locks.clear_stale_adjustments()
        for order in docs:
            try:
                outcome = await self.reconcile_order(order)
            except UpstreamUnavailable:
                outcome = "unavailable"
            counts[outcome] = counts.get(outcome, 0) + 1
        return counts
