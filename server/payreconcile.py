"""Daily reconciliation against the WeChat Pay trade bill, and the periodic payment sweep."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import date, datetime, time, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from miniprogram_api.wechatpay import BEIJING, WeChatPayError, WeChatPayUnavailable
from server.clock import Clock, iso
from server.errors import UpstreamRejected, UpstreamUnavailable
from server.payments import OrderStatus, Payments
from server.payrefunds import Refunds

log = logging.getLogger("server.payments")
_PAID = [OrderStatus.PAID.value, OrderStatus.PAID_AFTER_CLOSE.value]
# WeChat Pay publishes the previous day's bill after 10:00 Beijing time.
BILL_READY = time(10, 30)


def beijing_day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), BEIJING)
    return start, start + timedelta(days=1)


class Reconciliation:
    """Compares one day's trade bill with our orders and refunds; stores the differences."""

    def __init__(self, db: AsyncDatabase, clock: Clock, payments: Payments) -> None:
        self.db = db
        self.clock = clock
        self.payments = payments
        self.results = db["pay_reconciliations"]

    async def run(self, day: date) -> dict[str, Any]:
        client = self.payments.client()
        try:
            rows = await client.trade_bill(day)
        except WeChatPayUnavailable:
            raise UpstreamUnavailable(code="wechatpay_unavailable") from None
        except WeChatPayError as exc:
            raise UpstreamRejected("微信支付账单下载失败", code=f"wechatpay_bill_{exc.code}".lower()) from None
        differences: list[dict[str, Any]] = []
        seen: set[str] = set()
        for row in rows:
            if row.trade_state == "SUCCESS":
                seen.add(row.out_trade_no)
                order = await self.db["pay_orders"].find_one({"out_trade_no": row.out_trade_no})
                if order is None:
                    differences.append({"kind": "unknown_order", "out_trade_no": row.out_trade_no,
                                        "amount_fen": row.settlement_total_fen})
                elif order["status"] not in _PAID:
                    differences.append({"kind": "not_paid_here", "out_trade_no": row.out_trade_no,
                                        "order_id": order["_id"], "status": order["status"],
                                        "amount_fen": row.settlement_total_fen})
                elif order["total_fen"] != row.settlement_total_fen:
                    differences.append({"kind": "amount_mismatch", "out_trade_no": row.out_trade_no,
                                        "order_id": order["_id"], "ours_fen": order["total_fen"],
                                        "bill_fen": row.settlement_total_fen})
            elif row.trade_state == "REFUND":
                refund = await self.db["pay_refunds"].find_one({"_id": row.out_refund_no})
                if refund is None:
                    differences.append({"kind": "unknown_refund", "out_refund_no": row.out_refund_no,
                                        "amount_fen": row.refund_fen})
                elif refund["amount_fen"] != row.refund_fen:
                    differences.append({"kind": "refund_amount_mismatch",
                                        "out_refund_no": row.out_refund_no,
                                        "ours_fen": refund["amount_fen"], "bill_fen": row.refund_fen})
        start, end = beijing_day_bounds(day)
        async for order in self.db["pay_orders"].find(
                {"status": {"$in": _PAID}, "paid_at": {"$gte": start, "$lt": end}}):
            if order["out_trade_no"] not in seen:
                differences.append({"kind": "missing_in_bill", "out_trade_no": order["out_trade_no"],
                                    "order_id": order["_id"], "amount_fen": order["total_fen"]})
        result = {"_id": day.isoformat(), "ran_at": self.clock.now(), "rows": len(rows),
                  "differences": differences}
        await self.results.replace_one({"_id": day.isoformat()}, result, upsert=True)
        if differences:
            log.warning("trade bill differences", extra={"day": day.isoformat(),
                                                          "count": len(differences)})
        return result_to_json(result)

    async def due_day(self) -> date | None:
        """Yesterday (Beijing), once its bill is ready and if not reconciled yet."""
        now = self.clock.now().astimezone(BEIJING)
        if now.time() < BILL_READY:
            return None
        day = now.date() - timedelta(days=1)
        if await self.results.find_one({"_id": day.isoformat()}, {"_id": 1}):
            return None
        return day

    async def list(self, limit: int = 30) -> list[dict[str, Any]]:
        docs = await self.results.find().sort("_id", -1).limit(limit).to_list(None)
        return [result_to_json(d) for d in docs]


def result_to_json(doc: dict[str, Any]) -> dict[str, Any]:
    return {"date": doc["_id"], "ran_at": iso(doc["ran_at"]), "rows": doc["rows"],
            "differences": doc["differences"]}


async def run_pay_background(payments: Payments, refunds: Refunds, reconciliation: Reconciliation,
                             every_seconds: float) -> None:
    """The periodic job of `python -m server`: sweep orders and refunds, reconcile daily."""
    while True:
        if payments.configured:
            with contextlib.suppress(Exception):
                counts = await payments.sweep()
                counts.update({f"refund_{k}": v for k, v in (await refunds.sweep()).items()})
                if counts:
                    log.info("payment sweep", extra={"counts": counts})
            with contextlib.suppress(Exception):
                day = await reconciliation.due_day()
                if day is not None:
                    await reconciliation.run(day)
        await asyncio.sleep(every_seconds)
