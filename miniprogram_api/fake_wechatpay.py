"""A local fake of WeChat Pay API v3 (JSAPI) for tests and demos: verifies, signs, notifies."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

import httpx
import tornado.httpserver
import tornado.netutil
import tornado.web
from cryptography.hazmat.primitives.asymmetric import rsa

from miniprogram_api import paycrypto

Clock = Callable[[], datetime]
JsonDict = dict[str, Any]

BEIJING = timezone(timedelta(hours=8))
MAX_REQUEST_SKEW = timedelta(minutes=5)
NOTIFY_REPLY_TIMEOUT_SECONDS = 5.0  # WeChat Pay waits 5 s for the merchant's answer.
BILL_HEADER = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,"
    "交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,"
    "商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,"
    "手续费,费率,订单金额,申请退款金额,费率备注"
)
BILL_SUMMARY_HEADER = (
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
)


def utc_now() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(UTC)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(BEIJING).isoformat(timespec="seconds")


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


class FakeApiError(tornado.web.HTTPError):
    """An error answer in WeChat Pay's shape: HTTP status + {"code", "message"}."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, f"{code}: {message}")
        self.code = code
        self.message = message


class Forgery(StrEnum):
    """Kinds of bad notification `FakeWeChatPay.forge` can produce."""

    BAD_SIGNATURE = "bad_signature"  # signed by a key WeChat Pay does not hold
    TAMPERED_BODY = "tampered_body"  # genuine signature, body changed afterwards
    STALE_TIMESTAMP = "stale_timestamp"  # genuine, but 10 minutes old
    PROBE_SIGNATURE = "probe_signature"  # WECHATPAY/SIGNTEST/ probe
    UNKNOWN_SERIAL = "unknown_serial"  # Wechatpay-Serial names no key we know
    MISSING_HEADERS = "missing_headers"  # no Wechatpay-Signature header
    BAD_CIPHERTEXT = "bad_ciphertext"  # encrypted with a key other than the APIv3 key
    WRONG_AMOUNT = "wrong_amount"  # genuine and decryptable, amount differs from the order
    WRONG_MCHID = "wrong_mchid"  # genuine and decryptable, another merchant
    WRONG_APPID = "wrong_appid"  # genuine and decryptable, another appid


class SignedNotification(NamedTuple):
    """Headers and raw body of a notification, as WeChat Pay POSTs it."""

    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Delivery:
    """One POST of a notification to the merchant and what the merchant answered."""

    url: str
    notification_id: str
    status: int  # 0 when the merchant could not be reached or did not answer within 5 s
    body: bytes

    @property
    def acknowledged(self) -> bool:
        """WeChat Pay treats any 2xx as received; everything else is retried later."""
        return 200 <= self.status < 300


@dataclass
class FakeOrder:
    """An order as the fake WeChat Pay stores it."""

    out_trade_no: str
    appid: str
    mchid: str
    description: str
    notify_url: str
    total_fen: int
    payer_openid: str
    time_expire: datetime | None
    attach: str | None
    prepay_id: str
    fingerprint: str
    trade_state: str = "NOTPAY"
    transaction_id: str | None = None
    success_time: datetime | None = None
    notification_id: str | None = None
    notified: bool = False
    refunded_fen: int = 0


@dataclass
class FakeRefund:
    """A refund as the fake WeChat Pay stores it."""

    out_refund_no: str
    out_trade_no: str
    refund_id: str
    refund_fen: int
    total_fen: int
    reason: str
    notify_url: str | None
    create_time: datetime
    fingerprint: str
    status: str = "PROCESSING"
    success_time: datetime | None = None
    notification_id: str = field(default_factory=lambda: secrets.token_hex(16))
    notified: bool = False


class FakeWeChatPay:
    """State and controller of the fake: orders, refunds, keys, fault injection, delivery."""

    def __init__(
        self,
        *,
        mchid: str,
        appid: str,
        merchant_public_key_pem: bytes,
        merchant_serial_no: str,
        api_v3_key: bytes,
        clock: Clock = utc_now,
        notify_target_override: str | None = None,
    ) -> None:
        self.mchid = mchid
        self.appid = appid
        self.merchant_serial_no = merchant_serial_no
        self._merchant_key = paycrypto.load_public_key(merchant_public_key_pem)
        self._api_v3_key = api_v3_key
        self.clock = clock
        # e.g. "http://127.0.0.1:8888": notifications go there, keeping notify_url's path.
        self.notify_target_override = notify_target_override
        self._keys: dict[str, rsa.RSAPrivateKey] = {}
        self.platform_key_id = self._new_key()
        self.orders: dict[str, FakeOrder] = {}
        self.refunds: dict[str, FakeRefund] = {}
        self.deliveries: list[Delivery] = []
        self.requests: list[tuple[str, str]] = []  # (method, uri) of each authenticated call
        # Fault injection for tests.
        self.response_delay_seconds = 0.0
        self.tamper_responses = False
        self.corrupt_bills = False
        self._injected: list[FakeApiError] = []
        self._bills: dict[str, bytes] = {}
        self._server: tornado.httpserver.HTTPServer | None = None
        self.base_url: str | None = None

    # ----------------------------------------------------------------- keys

    def _new_key(self) -> str:
        key_id = "PUB_KEY_ID_0114" + "".join(secrets.choice("0123456789") for _ in range(20))
        self._keys[key_id] = paycrypto.generate_rsa_key()
        return key_id

    def public_key_pem(self, key_id: str | None = None) -> bytes:
        """PEM of the (current, by default) WeChat Pay public key, for the client's config."""
        return paycrypto.public_key_pem(self._keys[key_id or self.platform_key_id])

    def rotate_key(self) -> str:
        """Start signing with a new key pair; the old one stays known. Returns the new id."""
        self.platform_key_id = self._new_key()
        return self.platform_key_id

    def _sign(self, message: bytes, key_id: str | None = None) -> str:
        return paycrypto.rsa_sign(self._keys[key_id or self.platform_key_id], message)

    # ----------------------------------------------------------------- protocol

    def inject_error(
        self, status: int = 500, code: str = "SYSTEM_ERROR", message: str = "系统错误"
    ) -> None:
        """Make the next API call fail with this answer."""
        self._injected.append(FakeApiError(status, code, message))

    def pop_injected_error(self) -> FakeApiError | None:
        """The next injected error, if any."""
        return self._injected.pop(0) if self._injected else None

    def check_request(self, method: str, uri: str, headers: Mapping[str, str], body: bytes) -> None:
        """Verify the merchant's Authorization header like WeChat Pay does (401 SIGN_ERROR)."""
        fields = paycrypto.parse_authorization(headers.get("Authorization", ""))
        if fields is None:
            raise FakeApiError(401, "SIGN_ERROR", "Authorization 头缺失或格式不正确")
        if fields.get("mchid") != self.mchid:
            raise FakeApiError(401, "SIGN_ERROR", "商户号与 Authorization 中的 mchid 不一致")
        if fields.get("serial_no") != self.merchant_serial_no:
            raise FakeApiError(401, "SIGN_ERROR", "商户 API 证书序列号不正确")
        timestamp, nonce = fields.get("timestamp", ""), fields.get("nonce_str", "")
        if not timestamp.isdigit() or not nonce:
            raise FakeApiError(401, "SIGN_ERROR", "timestamp 或 nonce_str 不正确")
        sent_at = datetime.fromtimestamp(int(timestamp), UTC)
        if abs(self.clock() - sent_at) > MAX_REQUEST_SKEW:
            raise FakeApiError(401, "SIGN_ERROR", "请求时间戳已过期")
        message = paycrypto.request_message(method, uri, timestamp, nonce, body)
        if not paycrypto.rsa_verify(self._merchant_key, message, fields.get("signature", "")):
            raise FakeApiError(401, "SIGN_ERROR", "签名错误，请检查后再试")
        self.requests.append((method, uri))

    def sign_response(self, body: bytes) -> dict[str, str]:
        """Wechatpay-* headers over `ts\\nnonce\\nbody\\n` with the current key."""
        return self._signature_headers(body, str(int(self.clock().timestamp())))

    def _signature_headers(
        self, body: bytes, timestamp: str, key_id: str | None = None
    ) -> dict[str, str]:
        nonce = paycrypto.new_nonce()
        signature = self._sign(paycrypto.response_message(timestamp, nonce, body), key_id)
        return {
            "Wechatpay-Timestamp": timestamp,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": signature,
            "Wechatpay-Serial": key_id or self.platform_key_id,
            "Wechatpay-Signature-Type": paycrypto.AUTH_SCHEMA,
        }

    # ----------------------------------------------------------------- orders API

    def create_order(self, body: JsonDict) -> JsonDict:
        """POST /v3/pay/transactions/jsapi."""
        order = self._order_from_request(body)
        existing = self.orders.get(order.out_trade_no)
        if existing is not None:
            return self._repeat_order(existing, order)
        self.orders[order.out_trade_no] = order
        return {"prepay_id": order.prepay_id}

    def _repeat_order(self, existing: FakeOrder, order: FakeOrder) -> JsonDict:
        if existing.trade_state in ("SUCCESS", "REFUND"):
            raise FakeApiError(400, "ORDERPAID", "该订单已支付")
        if existing.trade_state == "CLOSED":
            raise FakeApiError(400, "ORDER_CLOSED", "该订单已关闭")
        if existing.fingerprint != order.fingerprint:
            raise FakeApiError(400, "INVALID_REQUEST", "201 商户订单号重复")
        return {"prepay_id": existing.prepay_id}

    def _order_from_request(self, body: JsonDict) -> FakeOrder:
        if body.get("mchid") != self.mchid:
            raise FakeApiError(400, "PARAM_ERROR", "mchid 与请求签名中的商户号不一致")
        if body.get("appid") != self.appid:
            raise FakeApiError(400, "APPID_MCHID_NOT_MATCH", "appid 和 mchid 不匹配")
        description = _string(body, "description", 1, 127)
        out_trade_no = _string(body, "out_trade_no", 6, 32)
        if not all(c.isascii() and (c.isalnum() or c in "_-|*") for c in out_trade_no):
            raise FakeApiError(400, "PARAM_ERROR", "out_trade_no 只能是数字、大小写字母_-|*")
        notify_url = _notify_url(body)
        total = _positive_int((body.get("amount") or {}).get("total"), "amount.total")
        if (body.get("amount") or {}).get("currency", "CNY") != "CNY":
            raise FakeApiError(400, "PARAM_ERROR", "amount.currency 只支持 CNY")
        openid = _string(body.get("payer") or {}, "openid", 1, 128)
        attach = body.get("attach")
        if attach is not None and (not isinstance(attach, str) or len(attach) > 128):
            raise FakeApiError(400, "PARAM_ERROR", "attach 长度不能超过 128")
        return FakeOrder(
            out_trade_no=out_trade_no,
            appid=self.appid,
            mchid=self.mchid,
            description=description,
            notify_url=notify_url,
            total_fen=total,
            payer_openid=openid,
            time_expire=_time_expire(body.get("time_expire")),
            attach=attach,
            prepay_id="wx" + self.clock().astimezone(BEIJING).strftime("%Y%m%d%H%M%S")
            + secrets.token_hex(10),
            fingerprint=hashlib.sha256(_dumps(body)).hexdigest(),
        )

    def query_order(self, out_trade_no: str, mchid: str | None) -> JsonDict:
        """GET /v3/pay/transactions/out-trade-no/{no}?mchid=."""
        if not mchid:
            raise FakeApiError(400, "PARAM_ERROR", "缺少参数 mchid")
        if mchid != self.mchid:
            raise FakeApiError(400, "PARAM_ERROR", "mchid 与请求签名中的商户号不一致")
        return self._transaction_json(self._order(out_trade_no))

    def close_order(self, out_trade_no: str, body: JsonDict) -> None:
        """POST /v3/pay/transactions/out-trade-no/{no}/close."""
        if body.get("mchid") != self.mchid:
            raise FakeApiError(400, "PARAM_ERROR", "mchid 与请求签名中的商户号不一致")
        order = self._order(out_trade_no)
        if order.trade_state in ("SUCCESS", "REFUND"):
            raise FakeApiError(400, "ORDERPAID", "订单已支付")
        order.trade_state = "CLOSED"

    def _order(self, out_trade_no: str) -> FakeOrder:
        order = self.orders.get(out_trade_no)
        if order is None:
            raise FakeApiError(404, "ORDER_NOT_EXIST", "订单不存在")
        return order

    def _transaction_json(self, order: FakeOrder, trade_state: str | None = None) -> JsonDict:
        state = trade_state or order.trade_state
        result: JsonDict = {
            "appid": order.appid,
            "mchid": order.mchid,
            "out_trade_no": order.out_trade_no,
            "trade_type": "JSAPI",
            "trade_state": state,
            "trade_state_desc": _STATE_DESC.get(state, state),
            "amount": {"total": order.total_fen, "currency": "CNY", "payer_currency": "CNY"},
        }
        if order.attach is not None:
            result["attach"] = order.attach
        if state in ("SUCCESS", "REFUND"):
            result["transaction_id"] = order.transaction_id or _transaction_id()
            result["bank_type"] = "OTHERS"
            result["success_time"] = _rfc3339(order.success_time or self.clock())
            result["payer"] = {"openid": order.payer_openid}
            result["amount"]["payer_total"] = order.total_fen
        return result

    # ----------------------------------------------------------------- refunds API

    def create_refund(self, body: JsonDict) -> JsonDict:
        """POST /v3/refund/domestic/refunds (idempotent on out_refund_no)."""
        out_refund_no = _string(body, "out_refund_no", 1, 64)
        out_trade_no = _string(body, "out_trade_no", 6, 32)
        amount = body.get("amount") or {}
        refund_fen = _positive_int(amount.get("refund"), "amount.refund")
        total_fen = _positive_int(amount.get("total"), "amount.total")
        fingerprint = hashlib.sha256(_dumps([out_trade_no, refund_fen, total_fen])).hexdigest()
        existing = self.refunds.get(out_refund_no)
        if existing is not None:
            if existing.fingerprint != fingerprint:
                raise FakeApiError(
                    400, "INVALID_REQUEST", "订单金额或退款金额与之前请求不一致，请核实后再试"
                )
            return self._refund_json(existing)
        order = self.orders.get(out_trade_no)
        if order is None:
            raise FakeApiError(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        if order.trade_state not in ("SUCCESS", "REFUND"):
            raise FakeApiError(400, "INVALID_REQUEST", "订单未支付，不能退款")
        if total_fen != order.total_fen:
            raise FakeApiError(400, "INVALID_REQUEST", "订单金额与原订单不一致")
        if order.refunded_fen + refund_fen > order.total_fen:
            raise FakeApiError(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
        refund = FakeRefund(
            out_refund_no=out_refund_no,
            out_trade_no=out_trade_no,
            refund_id="50" + "".join(secrets.choice("0123456789") for _ in range(27)),
            refund_fen=refund_fen,
            total_fen=total_fen,
            reason=str(body.get("reason", "")),
            notify_url=_notify_url(body) if "notify_url" in body else None,
            create_time=self.clock(),
            fingerprint=fingerprint,
        )
        order.refunded_fen += refund_fen
        order.trade_state = "REFUND"
        self.refunds[out_refund_no] = refund
        return self._refund_json(refund)

    def query_refund(self, out_refund_no: str) -> JsonDict:
        """GET /v3/refund/domestic/refunds/{out_refund_no}."""
        return self._refund_json(self._refund(out_refund_no))

    def _refund(self, out_refund_no: str) -> FakeRefund:
        refund = self.refunds.get(out_refund_no)
        if refund is None:
            raise FakeApiError(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        return refund

    def _refund_json(self, refund: FakeRefund) -> JsonDict:
        order = self.orders[refund.out_trade_no]
        result: JsonDict = {
            "refund_id": refund.refund_id,
            "out_refund_no": refund.out_refund_no,
            "transaction_id": order.transaction_id,
            "out_trade_no": refund.out_trade_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": _rfc3339(refund.create_time),
            "status": refund.status,
            "funds_account": "AVAILABLE",
            "amount": {
                "total": refund.total_fen,
                "refund": refund.refund_fen,
                "payer_total": refund.total_fen,
                "payer_refund": refund.refund_fen,
                "settlement_refund": refund.refund_fen,
                "settlement_total": refund.total_fen,
                "discount_refund": 0,
                "currency": "CNY",
            },
        }
        if refund.success_time is not None:
            result["success_time"] = _rfc3339(refund.success_time)
        return result

    # ----------------------------------------------------------------- bills API

    def trade_bill(self, bill_date: str | None, bill_type: str, base_url: str) -> JsonDict:
        """GET /v3/bill/tradebill: announce a download URL and the SHA1 of the file."""
        try:
            day = date.fromisoformat(bill_date or "")
        except ValueError as exc:
            raise FakeApiError(400, "PARAM_ERROR", "bill_date 格式应为 yyyy-MM-DD") from exc
        if bill_type not in ("ALL", "SUCCESS", "REFUND"):
            raise FakeApiError(400, "PARAM_ERROR", "bill_type 不正确")
        content = self.bill_content(day, bill_type)
        token = secrets.token_urlsafe(16)
        self._bills[token] = content
        return {
            "hash_type": "SHA1",
            "hash_value": hashlib.sha1(content).hexdigest(),
            "download_url": f"{base_url}/v3/billdownload/file?token={token}",
        }

    def download_bill(self, token: str | None) -> bytes:
        """GET /v3/billdownload/file?token=: the bill bytes (unsigned, like the real one)."""
        content = self._bills.get(token or "")
        if content is None:
            raise FakeApiError(400, "INVALID_REQUEST", "账单下载地址已失效，请重新申请")
        return content + b"`tampered\r\n" if self.corrupt_bills else content

    def bill_content(self, day: date, bill_type: str = "ALL") -> bytes:
        """The trade bill file for a Beijing-time day: BOM, CRLF, backtick-prefixed fields."""
        rows: list[list[str]] = []
        if bill_type in ("ALL", "SUCCESS"):
            rows += [self._payment_row(o) for o in self.orders.values() if _paid_on(o, day)]
        if bill_type in ("ALL", "REFUND"):
            rows += [
                self._refund_row(r)
                for r in self.refunds.values()
                if r.create_time.astimezone(BEIJING).date() == day
            ]
        summary = self._bill_summary(rows)
        lines = [BILL_HEADER] + [_bill_line(row) for row in rows]
        lines += [BILL_SUMMARY_HEADER, _bill_line(summary)]
        return ("\ufeff" + "\r\n".join(lines) + "\r\n").encode()

    def _payment_row(self, order: FakeOrder) -> list[str]:
        return self._bill_row(order, order.success_time or self.clock(), "SUCCESS", None)

    def _refund_row(self, refund: FakeRefund) -> list[str]:
        order = self.orders[refund.out_trade_no]
        return self._bill_row(order, refund.create_time, "REFUND", refund)

    def _bill_row(
        self, order: FakeOrder, when: datetime, state: str, refund: FakeRefund | None
    ) -> list[str]:
        fee_fen = (order.total_fen * 6 + 500) // 1000  # 0.6% rate, rounded half up
        refund_fen = refund.refund_fen if refund else 0
        return [
            when.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
            order.appid, order.mchid, "0", "",
            order.transaction_id or "", order.out_trade_no, order.payer_openid, "JSAPI",
            state, "OTHERS", "CNY",
            _yuan(order.total_fen if refund is None else 0), "0.00",
            refund.refund_id if refund else "0", refund.out_refund_no if refund else "0",
            _yuan(refund_fen), "0.00",
            "ORIGINAL" if refund else "", refund.status if refund else "",
            order.description, order.attach or "",
            _yuan(fee_fen if refund is None else 0), "0.60%",
            _yuan(order.total_fen if refund is None else 0), _yuan(refund_fen), "",
        ]

    @staticmethod
    def _bill_summary(rows: list[list[str]]) -> list[str]:
        def total(column: int) -> str:
            fen = sum(int(row[column].replace(".", "")) for row in rows)
            return _yuan(fen)

        return [str(len(rows)), total(12), total(16), "0.00", total(22), total(24), total(25)]

    # ----------------------------------------------------------------- controller

    def pay(self, out_trade_no: str, openid: str | None = None) -> FakeOrder:
        """The payer pays: SUCCESS with success_time and transaction_id. Nothing is sent."""
        order = self.orders.get(out_trade_no)
        if order is None or order.trade_state != "NOTPAY":
            raise ValueError(f"order {out_trade_no} is not awaiting payment")
        if order.time_expire is not None and self.clock() > order.time_expire:
            raise ValueError(f"order {out_trade_no} expired at {order.time_expire}")
        order.trade_state = "SUCCESS"
        order.transaction_id = _transaction_id()
        order.success_time = self.clock()
        order.notification_id = secrets.token_hex(16)
        if openid is not None:
            order.payer_openid = openid
        return order

    def paid_unnotified(self) -> list[str]:
        """out_trade_no of paid orders whose notification was never acknowledged."""
        return [
            order.out_trade_no
            for order in self.orders.values()
            if order.trade_state in ("SUCCESS", "REFUND") and not order.notified
        ]

    def complete_refund(self, out_refund_no: str, status: str = "SUCCESS") -> FakeRefund:
        """The bank finishes a refund (SUCCESS, CLOSED or ABNORMAL)."""
        refund = self._refund_or_value_error(out_refund_no)
        refund.status = status
        if status == "SUCCESS":
            refund.success_time = self.clock()
        return refund

    def notification_for(self, out_trade_no: str) -> SignedNotification:
        """A genuine TRANSACTION.SUCCESS notification; retries keep the same id."""
        order = self.orders.get(out_trade_no)
        if order is None or order.trade_state not in ("SUCCESS", "REFUND"):
            raise ValueError(f"order {out_trade_no} is not paid")
        assert order.notification_id is not None
        resource = self._transaction_json(order, "SUCCESS")
        return self._notification(
            order.notification_id, "TRANSACTION.SUCCESS", "支付成功", "transaction", resource
        )

    def refund_notification_for(self, out_refund_no: str) -> SignedNotification:
        """A genuine REFUND.SUCCESS notification (completing the refund if still processing)."""
        refund = self._refund_or_value_error(out_refund_no)
        if refund.status == "PROCESSING":
            self.complete_refund(out_refund_no)
        order = self.orders[refund.out_trade_no]
        resource: JsonDict = {
            "mchid": self.mchid,
            "out_trade_no": refund.out_trade_no,
            "transaction_id": order.transaction_id,
            "out_refund_no": refund.out_refund_no,
            "refund_id": refund.refund_id,
            "refund_status": refund.status,
            "success_time": _rfc3339(refund.success_time or self.clock()),
            "user_received_account": "支付用户零钱",
            "amount": {
                "total": refund.total_fen,
                "refund": refund.refund_fen,
                "payer_total": refund.total_fen,
                "payer_refund": refund.refund_fen,
            },
        }
        event = f"REFUND.{refund.status}"
        return self._notification(refund.notification_id, event, "退款成功", "refund", resource)

    def _refund_or_value_error(self, out_refund_no: str) -> FakeRefund:
        refund = self.refunds.get(out_refund_no)
        if refund is None:
            raise ValueError(f"no refund {out_refund_no}")
        return refund

    def _notification(
        self,
        notification_id: str,
        event_type: str,
        summary: str,
        original_type: str,
        resource: JsonDict,
        *,
        api_v3_key: bytes | None = None,
        timestamp: datetime | None = None,
        key_id: str | None = None,
    ) -> SignedNotification:
        nonce = secrets.token_urlsafe(9)[:12]
        ciphertext = paycrypto.aead_encrypt(
            api_v3_key or self._api_v3_key, nonce, original_type, _dumps(resource)
        )
        envelope = {
            "id": notification_id,
            "create_time": _rfc3339(self.clock()),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary,
            "resource": {
                "original_type": original_type,
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": ciphertext,
                "associated_data": original_type,
                "nonce": nonce,
            },
        }
        body = _dumps(envelope)
        sent_at = str(int((timestamp or self.clock()).timestamp()))
        headers = {"Content-Type": "application/json"}
        headers.update(self._signature_headers(body, sent_at, key_id))
        return SignedNotification(headers, body)

    def forge(self, out_trade_no: str, forgery: Forgery) -> SignedNotification:
        """A TRANSACTION.SUCCESS notification for the order, broken in the given way."""
        order = self._order_or_value_error(out_trade_no)
        resource = self._transaction_json(order, "SUCCESS")
        nid = order.notification_id or secrets.token_hex(16)
        kwargs: dict[str, Any] = {}
        if forgery is Forgery.WRONG_AMOUNT:
            resource["amount"]["total"] = resource["amount"]["payer_total"] = 1
        elif forgery is Forgery.WRONG_MCHID:
            resource["mchid"] = "1900000109" if self.mchid != "1900000109" else "1900000110"
        elif forgery is Forgery.WRONG_APPID:
            resource["appid"] = "wx0000000000000000"
        elif forgery is Forgery.BAD_CIPHERTEXT:
            kwargs["api_v3_key"] = secrets.token_bytes(32)
        elif forgery is Forgery.STALE_TIMESTAMP:
            kwargs["timestamp"] = self.clock() - timedelta(minutes=10)
        genuine = self._notification(
            nid, "TRANSACTION.SUCCESS", "支付成功", "transaction", resource, **kwargs
        )
        return self._break_envelope(genuine, forgery)

    def _break_envelope(self, genuine: SignedNotification, forgery: Forgery) -> SignedNotification:
        headers, body = dict(genuine.headers), genuine.body
        if forgery is Forgery.BAD_SIGNATURE:
            message = paycrypto.response_message(
                headers["Wechatpay-Timestamp"], headers["Wechatpay-Nonce"], body
            )
            stranger = paycrypto.generate_rsa_key()
            headers["Wechatpay-Signature"] = paycrypto.rsa_sign(stranger, message)
        elif forgery is Forgery.TAMPERED_BODY:
            body = body.replace(b'"summary":"', b'"summary":"!', 1)
        elif forgery is Forgery.PROBE_SIGNATURE:
            headers["Wechatpay-Signature"] = (
                paycrypto.PROBE_SIGNATURE_PREFIX + secrets.token_urlsafe(32)
            )
        elif forgery is Forgery.UNKNOWN_SERIAL:
            headers["Wechatpay-Serial"] = "PUB_KEY_ID_0114" + "9" * 20
        elif forgery is Forgery.MISSING_HEADERS:
            del headers["Wechatpay-Signature"]
        return SignedNotification(headers, body)

    def _order_or_value_error(self, out_trade_no: str) -> FakeOrder:
        order = self.orders.get(out_trade_no)
        if order is None:
            raise ValueError(f"no order {out_trade_no}")
        return order

    # ----------------------------------------------------------------- delivery

    def notify_target(self, notify_url: str) -> str:
        """notify_url, with scheme and host replaced by `notify_target_override` if set."""
        if not self.notify_target_override:
            return notify_url
        target = urlsplit(self.notify_target_override)
        parts = urlsplit(notify_url)
        return urlunsplit((target.scheme, target.netloc, parts.path, parts.query, ""))

    async def deliver(
        self,
        out_trade_no: str,
        *,
        times: int = 1,
        delay_seconds: float = 0.0,
        concurrently: bool = False,
        notification: SignedNotification | None = None,
    ) -> list[Delivery]:
        """POST the order's notification (or the given forged one) to its notify_url."""
        order = self._order_or_value_error(out_trade_no)

        def make() -> SignedNotification:
            return notification or self.notification_for(out_trade_no)

        results = await self.deliver_to(
            self.notify_target(order.notify_url),
            make,
            times=times,
            delay_seconds=delay_seconds,
            concurrently=concurrently,
        )
        if notification is None and any(d.acknowledged for d in results):
            order.notified = True
        return results

    async def deliver_refund(
        self,
        out_refund_no: str,
        *,
        times: int = 1,
        delay_seconds: float = 0.0,
        concurrently: bool = False,
    ) -> list[Delivery]:
        """POST the REFUND.* notification to the refund's notify_url (or the order's)."""
        refund = self._refund_or_value_error(out_refund_no)
        url = refund.notify_url or self.orders[refund.out_trade_no].notify_url
        results = await self.deliver_to(
            self.notify_target(url),
            lambda: self.refund_notification_for(out_refund_no),
            times=times,
            delay_seconds=delay_seconds,
            concurrently=concurrently,
        )
        refund.notified = refund.notified or any(d.acknowledged for d in results)
        return results

    async def deliver_to(
        self,
        url: str,
        make: Callable[[], SignedNotification],
        *,
        times: int = 1,
        delay_seconds: float = 0.0,
        concurrently: bool = False,
    ) -> list[Delivery]:
        """POST `times` notifications (each freshly signed by `make`) to `url`."""
        async with httpx.AsyncClient(timeout=NOTIFY_REPLY_TIMEOUT_SECONDS) as http:

            async def attempt() -> Delivery:
                if delay_seconds:
                    await asyncio.sleep(delay_seconds)
                return await self._post(http, url, make())

            if concurrently:
                results = list(await asyncio.gather(*(attempt() for _ in range(times))))
            else:
                results = [await attempt() for _ in range(times)]
        self.deliveries.extend(results)
        return results

    @staticmethod
    async def _post(
        http: httpx.AsyncClient, url: str, notification: SignedNotification
    ) -> Delivery:
        try:
            nid = str(json.loads(notification.body).get("id", ""))
        except ValueError:
            nid = ""
        try:
            response = await http.post(url, content=notification.body, headers=notification.headers)
        except httpx.HTTPError as exc:
            return Delivery(url, nid, 0, repr(exc).encode())
        return Delivery(url, nid, response.status_code, response.content)

    # ----------------------------------------------------------------- serving

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on a loopback port in the running event loop; returns the base URL."""
        sockets = tornado.netutil.bind_sockets(port, host, family=socket.AF_INET)
        self._server = tornado.httpserver.HTTPServer(make_fake_wechatpay_app(self))
        self._server.add_sockets(sockets)
        bound_port = sockets[0].getsockname()[1]
        self.base_url = f"http://{host}:{bound_port}"
        return self.base_url

    async def stop(self) -> None:
        """Stop listening and drop open connections."""
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()
            self._server = None


_STATE_DESC = {
    "SUCCESS": "支付成功",
    "REFUND": "转入退款",
    "NOTPAY": "未支付",
    "CLOSED": "已关闭",
}


def _transaction_id() -> str:
    return "4200" + "".join(secrets.choice("0123456789") for _ in range(24))


def _paid_on(order: FakeOrder, day: date) -> bool:
    return order.success_time is not None and order.success_time.astimezone(BEIJING).date() == day


def _bill_line(fields: list[str]) -> str:
    return ",".join("`" + value for value in fields)


def _string(body: Mapping[str, Any], name: str, min_len: int, max_len: int) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not min_len <= len(value) <= max_len:
        raise FakeApiError(400, "PARAM_ERROR", f"{name} 长度应为 {min_len}-{max_len}")
    return value


def _positive_int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise FakeApiError(400, "PARAM_ERROR", f"{name} 应为正整数（单位：分）")
    return value


def _notify_url(body: Mapping[str, Any]) -> str:
    url = _string(body, "notify_url", 1, 255)
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc or parts.query:
        raise FakeApiError(400, "PARAM_ERROR", "notify_url 必须为 https 且不能携带参数")
    return url


def _time_expire(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise FakeApiError(400, "PARAM_ERROR", "time_expire 格式不正确（RFC 3339）") from exc
    if moment.tzinfo is None:
        raise FakeApiError(400, "PARAM_ERROR", "time_expire 缺少时区")
    return moment.astimezone(UTC)


# --------------------------------------------------------------------------- HTTP surface


class _FakeHandler(tornado.web.RequestHandler):
    """Base: injected delay/errors, request signature check, signed JSON answers."""

    authenticated = True
    signed_responses = True

    def initialize(self, state: FakeWeChatPay) -> None:
        self.state = state

    async def prepare(self) -> None:
        if self.state.response_delay_seconds:
            await asyncio.sleep(self.state.response_delay_seconds)
        injected = self.state.pop_injected_error()
        if injected is not None:
            raise injected
        if self.authenticated:
            request = self.request
            method, uri = request.method or "", request.uri or ""
            self.state.check_request(method, uri, request.headers, request.body)

    def json_body(self) -> JsonDict:
        try:
            body = json.loads(self.request.body or b"null")
        except ValueError as exc:
            raise FakeApiError(400, "PARAM_ERROR", "请求体不是合法的 JSON") from exc
        if not isinstance(body, dict):
            raise FakeApiError(400, "PARAM_ERROR", "请求体应为 JSON 对象")
        return body

    def send_json(self, status: int, payload: JsonDict | None) -> None:
        body = _dumps(payload) if payload is not None else b""
        self.set_status(status)
        if payload is not None:
            self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Request-ID", secrets.token_hex(16))
        if self.signed_responses:
            for name, value in self.state.sign_response(body).items():
                self.set_header(name, value)
        if self.state.tamper_responses and body:
            body = body + b" "  # still valid JSON, but no longer what was signed
        # A 204 must not carry even an empty chunk (tornado asserts an empty write buffer).
        self.finish(body or None)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, FakeApiError):
            self.send_json(exc.status_code, {"code": exc.code, "message": exc.message})
        elif status_code == 404:
            self.send_json(404, {"code": "NOT_FOUND", "message": "请求的资源不存在"})
        else:
            self.send_json(500, {"code": "SYSTEM_ERROR", "message": "系统错误"})


class _NotFoundHandler(_FakeHandler):
    authenticated = False

    def prepare(self) -> None:  # type: ignore[override]
        raise FakeApiError(404, "NOT_FOUND", "请求的资源不存在")


class _JsapiHandler(_FakeHandler):
    def post(self) -> None:
        self.send_json(200, self.state.create_order(self.json_body()))


class _OrderHandler(_FakeHandler):
    def get(self, out_trade_no: str) -> None:
        mchid = self.get_query_argument("mchid", None)
        self.send_json(200, self.state.query_order(out_trade_no, mchid))


class _CloseHandler(_FakeHandler):
    def post(self, out_trade_no: str) -> None:
        self.state.close_order(out_trade_no, self.json_body())
        self.send_json(204, None)


class _RefundsHandler(_FakeHandler):
    def post(self) -> None:
        self.send_json(200, self.state.create_refund(self.json_body()))


class _RefundHandler(_FakeHandler):
    def get(self, out_refund_no: str) -> None:
        self.send_json(200, self.state.query_refund(out_refund_no))


class _TradeBillHandler(_FakeHandler):
    def get(self) -> None:
        base = f"{self.request.protocol}://{self.request.host}"
        bill_date = self.get_query_argument("bill_date", None)
        bill_type = self.get_query_argument("bill_type", "ALL")
        self.send_json(200, self.state.trade_bill(bill_date, bill_type, base))


class _BillDownloadHandler(_FakeHandler):
    signed_responses = False  # the real download answer carries no Wechatpay-Signature

    def get(self) -> None:
        content = self.state.download_bill(self.get_query_argument("token", None))
        self.set_header("Content-Type", "application/octet-stream")
        self.finish(content)


class _DemoPayHandler(_FakeHandler):
    """POST /_fake/orders/{no}/pay: demo-only shortcut, pay and deliver the notification."""

    authenticated = False
    signed_responses = False

    async def post(self, out_trade_no: str) -> None:
        try:
            self.state.pay(out_trade_no)
        except ValueError as exc:
            raise FakeApiError(400, "INVALID_REQUEST", str(exc)) from exc
        deliveries = await self.state.deliver(out_trade_no)
        summary = [{"url": d.url, "status": d.status} for d in deliveries]
        self.send_json(200, {"deliveries": summary})


class _DemoPublicKeyHandler(_FakeHandler):
    """GET /_fake/public-key: the current WeChat Pay public key and its id (demo only)."""

    authenticated = False
    signed_responses = False

    def get(self) -> None:
        key_id = self.state.platform_key_id
        self.send_json(200, {"id": key_id, "pem": self.state.public_key_pem(key_id).decode()})


def make_fake_wechatpay_app(state: FakeWeChatPay) -> tornado.web.Application:
    """The fake's routes; every handler shares `state`."""
    args = {"state": state}
    order = r"/v3/pay/transactions/out-trade-no/([^/]+)"
    return tornado.web.Application(
        [
            (r"/v3/pay/transactions/jsapi", _JsapiHandler, args),
            (order, _OrderHandler, args),
            (order + r"/close", _CloseHandler, args),
            (r"/v3/refund/domestic/refunds", _RefundsHandler, args),
            (r"/v3/refund/domestic/refunds/([^/]+)", _RefundHandler, args),
            (r"/v3/bill/tradebill", _TradeBillHandler, args),
            (r"/v3/billdownload/file", _BillDownloadHandler, args),
            (r"/_fake/orders/([^/]+)/pay", _DemoPayHandler, args),
            (r"/_fake/public-key", _DemoPublicKeyHandler, args),
        ],
        default_handler_class=_NotFoundHandler,
        default_handler_args=args,
    )


# --------------------------------------------------------------------------- demo entry point


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run a fake WeChat Pay API v3 on loopback.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--mchid", default="1900000109")
    parser.add_argument("--appid", default="wxd678efh567hg6787")
    parser.add_argument("--merchant-serial", required=True)
    parser.add_argument("--merchant-public-key", required=True, help="PEM file")
    parser.add_argument("--api-v3-key", required=True, help="the 32-character APIv3 key")
    parser.add_argument("--notify-target-override", default=None)
    parser.add_argument("--write-public-key", default=None, help="write the public key PEM here")
    return parser.parse_args()


async def _serve(args: argparse.Namespace) -> None:
    with open(args.merchant_public_key, "rb") as pem:
        merchant_pem = pem.read()
    state = FakeWeChatPay(
        mchid=args.mchid,
        appid=args.appid,
        merchant_public_key_pem=merchant_pem,
        merchant_serial_no=args.merchant_serial,
        api_v3_key=args.api_v3_key.encode(),
        notify_target_override=args.notify_target_override,
    )
    base = await state.start(args.host, args.port)
    if args.write_public_key:
        with open(args.write_public_key, "wb") as out:
            out.write(state.public_key_pem())
    print(f"fake WeChat Pay at {base}; public key id {state.platform_key_id}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_serve(_arguments()))
