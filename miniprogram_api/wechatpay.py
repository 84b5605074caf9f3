"""Async WeChat Pay API v3 client (JSAPI / mini-program) with strict signature checks."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import httpx

from miniprogram_api import paycrypto
from miniprogram_api.paycrypto import PublicKeyRing

Clock = Callable[[], datetime]
JsonDict = dict[str, Any]

# WeChat Pay expresses times in RFC 3339, normally in Beijing time.
BEIJING = timezone(timedelta(hours=8))
# Spec: reject notifications (and responses) whose timestamp is more than 5 minutes off.
MAX_CLOCK_SKEW = timedelta(minutes=5)
OUT_TRADE_NO_RE = re.compile(r"[A-Za-z0-9_\-|*]{6,32}")
OUT_REFUND_NO_RE = re.compile(r"[A-Za-z0-9_\-|*@]{1,64}")
USER_AGENT = "smart-property-wechatpay/1.0 (httpx)"


def utc_now() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(UTC)


class TradeState(StrEnum):
    """`trade_state` of a transaction as WeChat Pay reports it."""

    SUCCESS = "SUCCESS"
    REFUND = "REFUND"
    NOTPAY = "NOTPAY"
    CLOSED = "CLOSED"
    REVOKED = "REVOKED"
    USERPAYING = "USERPAYING"
    PAYERROR = "PAYERROR"


class RefundStatus(StrEnum):
    """`status` / `refund_status` of a refund."""

    SUCCESS = "SUCCESS"
    CLOSED = "CLOSED"
    PROCESSING = "PROCESSING"
    ABNORMAL = "ABNORMAL"


# --------------------------------------------------------------------------- errors


class WeChatPayError(Exception):
    """A WeChat Pay call failed; `code`/`message` come from WeChat or from our checks."""

    default_code = "wechatpay_error"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        self.code = code or self.default_code
        self.message = message
        self.status = status
        super().__init__(f"{self.code}: {message}" + (f" (HTTP {status})" if status else ""))


class WeChatPayUnavailable(WeChatPayError):
    """WeChat Pay could not be reached or answered 5xx/timed out; the outcome is unknown."""

    default_code = "unavailable"


class WeChatPayArgumentError(WeChatPayError, ValueError):
    """We refused to send a request because an argument breaks WeChat Pay's rules."""

    default_code = "invalid_argument"


class SignatureInvalid(WeChatPayError):
    """A response (or notification) is not signed by a WeChat Pay key we trust."""

    default_code = "signature_invalid"


class BillHashMismatch(WeChatPayError):
    """A downloaded bill does not match the hash announced by the bill API."""

    default_code = "bill_hash_mismatch"


class NotificationError(WeChatPayError):
    """A payment/refund notification was rejected; reply with `failure_reply()`."""

    default_code = "notification_rejected"
    http_status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message, status=self.http_status)


class NotificationHeadersMissing(NotificationError):
    """A required Wechatpay-* header is absent."""

    default_code = "headers_missing"


class NotificationMalformed(NotificationError):
    """The body or a header is not in the documented shape."""

    default_code = "malformed"


class NotificationProbe(NotificationError, SignatureInvalid):
    """A `WECHATPAY/SIGNTEST/` probe: WeChat checks that we do verify signatures."""

    default_code = "probe_signature"
    http_status = 401


class NotificationUnknownSerial(NotificationError, SignatureInvalid):
    """Wechatpay-Serial names neither our public key id nor a known platform certificate."""

    default_code = "unknown_serial"
    http_status = 401


class NotificationSignatureInvalid(NotificationError, SignatureInvalid):
    """The signature does not verify over `ts\\nnonce\\nRAW_BODY\\n`."""

    default_code = "signature_invalid"
    http_status = 401


class NotificationStale(NotificationError):
    """Wechatpay-Timestamp is more than 5 minutes away from now (replayed or delayed)."""

    default_code = "timestamp_stale"


class NotificationDecryptFailed(NotificationError):
    """`resource` does not decrypt with our APIv3 key (wrong key or tampered)."""

    default_code = "decrypt_failed"
    http_status = 500


class NotificationMchidMismatch(NotificationError):
    """The decrypted resource is for another merchant."""

    default_code = "mchid_mismatch"


class NotificationAppidMismatch(NotificationError):
    """The decrypted transaction is for another appid."""

    default_code = "appid_mismatch"


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class WeChatPayConfig:
    """Everything the client needs; key material is PEM bytes, never read from disk here."""

    api_base: str
    mchid: str
    appid: str
    merchant_serial_no: str
    merchant_private_key_pem: bytes = field(repr=False)
    api_v3_key: bytes = field(repr=False)
    wechatpay_public_key_pem: bytes = field(repr=False)
    wechatpay_public_key_id: str
    # During the switch from platform certificates to the public key, WeChat may sign with
    # either; map each certificate serial to its PEM (certificate or public key).
    platform_certificates: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    timeout_seconds: float = 10.0

    def __post_init__(self) -> None:
        if len(self.api_v3_key) != 32:
            raise ValueError("APIv3 key must be exactly 32 bytes")
        if not self.wechatpay_public_key_id.startswith("PUB_KEY_ID_"):
            raise ValueError("wechatpay_public_key_id must look like PUB_KEY_ID_…")

    def key_ring(self) -> PublicKeyRing:
        """Verification keys by Wechatpay-Serial value."""
        pems = dict(self.platform_certificates)
        pems[self.wechatpay_public_key_id] = self.wechatpay_public_key_pem
        return PublicKeyRing.from_pems(pems)


# --------------------------------------------------------------------------- notifications


@dataclass(frozen=True)
class Notification:
    """A verified, decrypted notification; `id` is the replay key the caller must record."""

    id: str
    event_type: str
    resource_type: str
    summary: str
    create_time: datetime
    original_type: str
    resource: JsonDict


@dataclass(frozen=True)
class NotificationReply:
    """What to answer WeChat Pay: 204 empty on success, 4xx/5xx `{"code":"FAIL"}` otherwise."""

    status: int
    body: bytes
    headers: Mapping[str, str]


def success_reply() -> NotificationReply:
    """Acknowledge a notification (processed, or already processed before)."""
    return NotificationReply(204, b"", {})


def failure_reply(message: str = "失败", status: int = 500) -> NotificationReply:
    """Refuse a notification so WeChat Pay retries it later."""
    if not 400 <= status <= 599:
        raise ValueError("failure replies must be 4xx or 5xx")
    body = json.dumps({"code": "FAIL", "message": message}, ensure_ascii=False).encode()
    return NotificationReply(status, body, {"Content-Type": "application/json; charset=utf-8"})


def reply_for(error: NotificationError) -> NotificationReply:
    """The failure reply matching a rejected notification."""
    return failure_reply(error.message, error.http_status)


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _signed_headers(headers: Mapping[str, str]) -> tuple[str, str, str, str] | None:
    lowered = _lower_headers(headers)
    names = ("wechatpay-timestamp", "wechatpay-nonce", "wechatpay-signature", "wechatpay-serial")
    values = tuple(lowered.get(name, "").strip() for name in names)
    if not all(values):
        return None
    return values  # type: ignore[return-value]


def _parse_rfc3339(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("timestamp without offset")
    return parsed.astimezone(UTC)


def _timestamp_is_fresh(timestamp: str, now: datetime) -> bool:
    if not timestamp.isdigit():
        raise ValueError("timestamp is not an integer")
    sent_at = datetime.fromtimestamp(int(timestamp), UTC)
    return abs(now - sent_at) <= MAX_CLOCK_SKEW


class NotificationParser:
    """Verifies and decrypts notifications; needs only keys, no HTTP client."""

    def __init__(self, config: WeChatPayConfig, keys: PublicKeyRing | None = None) -> None:
        self._mchid = config.mchid
        self._appid = config.appid
        self._api_v3_key = config.api_v3_key
        self._keys = keys or config.key_ring()

    def parse(self, headers: Mapping[str, str], raw_body: bytes, now: datetime) -> Notification:
        """Verify signature and freshness, decrypt, check merchant; raise a NotificationError.

        Replay detection is the caller's job: record `Notification.id` (and process the
        resource idempotently by out_trade_no / out_refund_no) in the database. Amount,
        trade_state and the order's existence must also be checked against our own records.
        """
        signed = _signed_headers(headers)
        if signed is None:
            raise NotificationHeadersMissing("Wechatpay-Timestamp/Nonce/Signature/Serial required")
        timestamp, nonce, signature, serial = signed
        self._verify(timestamp, nonce, signature, serial, raw_body)
        try:
            fresh = _timestamp_is_fresh(timestamp, now)
        except ValueError as exc:
            raise NotificationMalformed("Wechatpay-Timestamp is not a number") from exc
        if not fresh:
            raise NotificationStale(f"Wechatpay-Timestamp {timestamp} is outside ±5 minutes")
        envelope = self._envelope(raw_body)
        resource = self._decrypt(envelope["resource"])
        self._check_merchant(resource)
        return self._notification(envelope, resource)

    def _verify(self, timestamp: str, nonce: str, signature: str, serial: str, body: bytes) -> None:
        if signature.startswith(paycrypto.PROBE_SIGNATURE_PREFIX):
            raise NotificationProbe("signature probe rejected")
        key = self._keys.get(serial)
        if key is None:
            raise NotificationUnknownSerial(f"unknown Wechatpay-Serial {serial}")
        message = paycrypto.response_message(timestamp, nonce, body)
        if not paycrypto.rsa_verify(key, message, signature):
            raise NotificationSignatureInvalid("Wechatpay-Signature does not verify")

    @staticmethod
    def _envelope(raw_body: bytes) -> JsonDict:
        try:
            envelope = json.loads(raw_body)
        except ValueError as exc:
            raise NotificationMalformed("body is not JSON") from exc
        required = ("id", "create_time", "event_type", "resource_type", "resource")
        if not isinstance(envelope, dict) or not all(k in envelope for k in required):
            raise NotificationMalformed("body lacks id/create_time/event_type/resource")
        if not isinstance(envelope["resource"], dict):
            raise NotificationMalformed("resource is not an object")
        return envelope

    def _decrypt(self, resource: JsonDict) -> JsonDict:
        if resource.get("algorithm") != "AEAD_AES_256_GCM":
            raise NotificationMalformed("resource.algorithm must be AEAD_AES_256_GCM")
        try:
            plaintext = paycrypto.aead_decrypt(
                self._api_v3_key,
                str(resource["nonce"]),
                str(resource.get("associated_data") or ""),
                str(resource["ciphertext"]),
            )
            decrypted = json.loads(plaintext)
        except (KeyError, ValueError) as exc:
            raise NotificationDecryptFailed("resource does not decrypt with the APIv3 key") from exc
        if not isinstance(decrypted, dict):
            raise NotificationDecryptFailed("decrypted resource is not an object")
        return decrypted

    def _check_merchant(self, resource: JsonDict) -> None:
        if resource.get("mchid") != self._mchid:
            raise NotificationMchidMismatch("notification is for another merchant")
        # Refund resources carry no appid; transactions always do.
        if "appid" in resource and resource["appid"] != self._appid:
            raise NotificationAppidMismatch("notification is for another appid")

    @staticmethod
    def _notification(envelope: JsonDict, resource: JsonDict) -> Notification:
        try:
            create_time = _parse_rfc3339(str(envelope["create_time"]))
        except ValueError as exc:
            raise NotificationMalformed("create_time is not RFC 3339") from exc
        return Notification(
            id=str(envelope["id"]),
            event_type=str(envelope["event_type"]),
            resource_type=str(envelope["resource_type"]),
            summary=str(envelope.get("summary", "")),
            create_time=create_time,
            original_type=str(envelope["resource"].get("original_type", "")),
            resource=resource,
        )


# --------------------------------------------------------------------------- typed views


@dataclass(frozen=True)
class Transaction:
    """The fields we act on from a query_order result or a TRANSACTION.* resource."""

    out_trade_no: str
    trade_state: str
    transaction_id: str | None
    amount_total_fen: int | None
    payer_total_fen: int | None
    success_time: datetime | None
    payer_openid: str | None
    mchid: str
    appid: str
    attach: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Transaction:
        """Build from WeChat's JSON (query result or decrypted notification resource)."""
        amount = data.get("amount") or {}
        success_time = data.get("success_time")
        return cls(
            out_trade_no=str(data["out_trade_no"]),
            trade_state=str(data["trade_state"]),
            transaction_id=data.get("transaction_id"),
            amount_total_fen=amount.get("total"),
            payer_total_fen=amount.get("payer_total"),
            success_time=_parse_rfc3339(success_time) if success_time else None,
            payer_openid=(data.get("payer") or {}).get("openid"),
            mchid=str(data.get("mchid", "")),
            appid=str(data.get("appid", "")),
            attach=data.get("attach"),
        )


@dataclass(frozen=True)
class TradeBillRow:
    """One detail line of a trade bill (ALL type); amounts converted from yuan to fen."""

    trade_time: str
    transaction_id: str
    out_trade_no: str
    openid: str
    trade_state: str
    settlement_total_fen: int
    refund_id: str
    out_refund_no: str
    refund_fen: int
    refund_status: str
    attach: str
    raw: Mapping[str, str]


def yuan_to_fen(text: str) -> int:
    """'12.34' -> 1234; bills state money in yuan with two decimals."""
    try:
        value = Decimal(text.strip() or "0") * 100
    except InvalidOperation as exc:
        raise ValueError(f"not an amount: {text!r}") from exc
    if value != value.to_integral_value():
        raise ValueError(f"amount has more than two decimals: {text!r}")
    return int(value)


def _bill_fields(line: str) -> list[str]:
    # Every detail/summary field starts with a backtick (so Excel keeps long numbers); splitting
    # on ",`" keeps commas that appear inside a field such as the goods description.
    if not line.startswith("`"):
        raise ValueError("bill data line does not start with a backtick")
    return line[1:].split(",`")


def parse_trade_bill(content: bytes) -> list[TradeBillRow]:
    """Parse a trade bill: header, backtick-prefixed rows, summary header, summary row."""
    text = content.decode("utf-8-sig")
    lines = [line for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    if len(lines) < 3:
        raise ValueError("bill is too short")
    header = lines[0].split(",")
    details, summary = lines[1:-2], _bill_fields(lines[-1])
    rows = [_bill_row(dict(zip(header, _bill_fields(line), strict=True))) for line in details]
    if summary and summary[0].isdigit() and int(summary[0]) != len(rows):
        raise ValueError(f"bill summary counts {summary[0]} rows, found {len(rows)}")
    return rows


def _bill_row(raw: dict[str, str]) -> TradeBillRow:
    get = raw.get
    return TradeBillRow(
        trade_time=get("交易时间", ""),
        transaction_id=get("微信订单号", ""),
        out_trade_no=get("商户订单号", ""),
        openid=get("用户标识", ""),
        trade_state=get("交易状态", ""),
        settlement_total_fen=yuan_to_fen(get("应结订单金额", "0")),
        refund_id=get("微信退款单号", "0"),
        out_refund_no=get("商户退款单号", "0"),
        refund_fen=yuan_to_fen(get("退款金额", "0")),
        refund_status=get("退款状态", ""),
        attach=get("商户数据包", ""),
        raw=raw,
    )


# --------------------------------------------------------------------------- validation


def _check_out_trade_no(out_trade_no: str) -> None:
    if not OUT_TRADE_NO_RE.fullmatch(out_trade_no):
        raise WeChatPayArgumentError("out_trade_no must be 6-32 chars of A-Za-z0-9_-|*")


def _check_notify_url(notify_url: str) -> None:
    parts = urlsplit(notify_url)
    if parts.scheme != "https" or not parts.netloc or parts.query or parts.fragment:
        raise WeChatPayArgumentError("notify_url must be https without query or fragment")
    if len(notify_url) > 255:
        raise WeChatPayArgumentError("notify_url is longer than 255 characters")


def _check_amount(name: str, amount_fen: int) -> None:
    # bool is an int subclass; a True amount is a bug, not one fen.
    if not isinstance(amount_fen, int) or isinstance(amount_fen, bool) or amount_fen <= 0:
        raise WeChatPayArgumentError(f"{name} must be a positive integer number of fen")


def _rfc3339_beijing(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise WeChatPayArgumentError("time_expire must be timezone-aware")
    return moment.astimezone(BEIJING).isoformat(timespec="seconds")


def _dumps(body: JsonDict) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- client


class WeChatPayClient:
    """One per app: keeps an httpx.AsyncClient open; call `aclose()` at shutdown."""

    def __init__(
        self,
        config: WeChatPayConfig,
        *,
        clock: Clock = utc_now,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._private_key = paycrypto.load_private_key(config.merchant_private_key_pem)
        self._keys = config.key_ring()
        self._notifications = NotificationParser(config, self._keys)
        self._http = httpx.AsyncClient(
            base_url=config.api_base.rstrip("/"),
            timeout=config.timeout_seconds,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
        )

    async def aclose(self) -> None:
        """Close the pooled HTTP connections."""
        await self._http.aclose()

    # ----------------------------------------------------------------- orders

    async def create_jsapi_order(
        self,
        out_trade_no: str,
        description: str,
        amount_total_fen: int,
        payer_openid: str,
        notify_url: str,
        time_expire: datetime,
        attach: str | None = None,
    ) -> str:
        """Place a JSAPI (mini-program) order and return its prepay_id (valid 2 hours)."""
        _check_out_trade_no(out_trade_no)
        _check_amount("amount_total_fen", amount_total_fen)
        _check_notify_url(notify_url)
        if not 1 <= len(description) <= 127:
            raise WeChatPayArgumentError("description must be 1-127 characters")
        if not payer_openid:
            raise WeChatPayArgumentError("payer_openid is required")
        if attach is not None and len(attach) > 128:
            raise WeChatPayArgumentError("attach must be at most 128 characters")
        body: JsonDict = {
            "appid": self.config.appid,
            "mchid": self.config.mchid,
            "description": description,
            "out_trade_no": out_trade_no,
            "time_expire": _rfc3339_beijing(time_expire),
            "notify_url": notify_url,
            "amount": {"total": amount_total_fen, "currency": "CNY"},
            "payer": {"openid": payer_openid},
        }
        if attach is not None:
            body["attach"] = attach
        result = await self._call("POST", "/v3/pay/transactions/jsapi", json_body=body)
        prepay_id = result.get("prepay_id")
        if not isinstance(prepay_id, str) or not prepay_id:
            raise WeChatPayError("response has no prepay_id", code="bad_response")
        return prepay_id

    def jsapi_pay_params(self, prepay_id: str, *, now: datetime | None = None) -> dict[str, str]:
        """Arguments for `wx.requestPayment`, paySign made with the merchant private key."""
        timestamp = str(int((now or self._clock()).timestamp()))
        nonce = paycrypto.new_nonce()
        package = f"prepay_id={prepay_id}"
        message = paycrypto.pay_sign_message(self.config.appid, timestamp, nonce, package)
        return {
            "appId": self.config.appid,
            "timeStamp": timestamp,
            "nonceStr": nonce,
            "package": package,
            "signType": "RSA",
            "paySign": paycrypto.rsa_sign(self._private_key, message),
        }

    async def query_order(self, out_trade_no: str) -> JsonDict:
        """The order as WeChat Pay sees it (authoritative, unlike the mini-program's callback)."""
        _check_out_trade_no(out_trade_no)
        return await self._call(
            "GET",
            f"/v3/pay/transactions/out-trade-no/{out_trade_no}",
            params={"mchid": self.config.mchid},
        )

    async def close_order(self, out_trade_no: str) -> None:
        """Close an unpaid order (204); a paid one raises WeChatPayError code ORDERPAID."""
        _check_out_trade_no(out_trade_no)
        await self._call(
            "POST",
            f"/v3/pay/transactions/out-trade-no/{out_trade_no}/close",
            json_body={"mchid": self.config.mchid},
        )

    # ----------------------------------------------------------------- refunds

    async def refund(
        self,
        out_trade_no: str,
        out_refund_no: str,
        refund_fen: int,
        total_fen: int,
        reason: str | None = None,
        notify_url: str | None = None,
    ) -> JsonDict:
        """Request a refund; the same out_refund_no refunds at most once (safe to retry)."""
        _check_out_trade_no(out_trade_no)
        if not OUT_REFUND_NO_RE.fullmatch(out_refund_no):
            raise WeChatPayArgumentError("out_refund_no must be 1-64 chars of A-Za-z0-9_-|*@")
        _check_amount("refund_fen", refund_fen)
        _check_amount("total_fen", total_fen)
        if refund_fen > total_fen:
            raise WeChatPayArgumentError("refund_fen exceeds total_fen")
        body: JsonDict = {
            "out_trade_no": out_trade_no,
            "out_refund_no": out_refund_no,
            "amount": {"refund": refund_fen, "total": total_fen, "currency": "CNY"},
        }
        if reason:
            if len(reason) > 80:
                raise WeChatPayArgumentError("reason must be at most 80 characters")
            body["reason"] = reason
        if notify_url is not None:
            _check_notify_url(notify_url)
            body["notify_url"] = notify_url
        return await self._call("POST", "/v3/refund/domestic/refunds", json_body=body)

    async def query_refund(self, out_refund_no: str) -> JsonDict:
        """The refund as WeChat Pay sees it."""
        if not OUT_REFUND_NO_RE.fullmatch(out_refund_no):
            raise WeChatPayArgumentError("out_refund_no must be 1-64 chars of A-Za-z0-9_-|*@")
        return await self._call("GET", f"/v3/refund/domestic/refunds/{out_refund_no}")

    # ----------------------------------------------------------------- bills

    async def trade_bill(self, bill_date: date, bill_type: str = "ALL") -> list[TradeBillRow]:
        """Fetch, hash-check and parse the day's trade bill (ready after 10:00 next day)."""
        info = await self._call(
            "GET",
            "/v3/bill/tradebill",
            params={"bill_date": bill_date.isoformat(), "bill_type": bill_type},
        )
        download_url = str(info.get("download_url", ""))
        self._check_download_url(download_url)
        content = await self._download(download_url)
        if str(info.get("hash_type", "")).upper() != "SHA1":
            raise WeChatPayError("unsupported bill hash_type", code="bad_response")
        if hashlib.sha1(content).hexdigest() != str(info.get("hash_value", "")).lower():
            raise BillHashMismatch("bill content does not match hash_value")
        try:
            return parse_trade_bill(content)
        except ValueError as exc:
            raise WeChatPayError(f"bill does not parse: {exc}", code="bad_response") from exc

    def _check_download_url(self, download_url: str) -> None:
        # Only follow (and sign requests to) URLs on the API host we were configured with.
        base = urlsplit(str(self._http.base_url))
        url = urlsplit(download_url)
        if (url.scheme, url.netloc) != (base.scheme, base.netloc):
            raise WeChatPayError("download_url is not on the API host", code="bad_response")

    async def _download(self, url: str) -> bytes:
        # The bill download answer carries no Wechatpay-Signature; the SHA1 hash from the
        # signed bill API response stands in for it (pay.weixin.qq.com "下载账单").
        response = await self._send("GET", url, b"", None)
        if response.status_code != 200:
            raise self._error_from(response)
        return response.content

    # ----------------------------------------------------------------- notifications

    def parse_notification(
        self, headers: Mapping[str, str], raw_body: bytes, now: datetime
    ) -> Notification:
        """Verify and decrypt a notification; see `NotificationParser.parse`."""
        return self._notifications.parse(headers, raw_body, now)

    # ----------------------------------------------------------------- transport

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: JsonDict | None = None,
    ) -> JsonDict:
        body = _dumps(json_body) if json_body is not None else b""
        response = await self._send(method, path, body, params)
        if response.status_code >= 300:
            raise self._error_from(response)
        self._verify_response(response)
        if not response.content:
            return {}
        try:
            result = json.loads(response.content)
        except ValueError as exc:
            raise WeChatPayError("response is not JSON", code="bad_response") from exc
        if not isinstance(result, dict):
            raise WeChatPayError("response is not a JSON object", code="bad_response")
        return result

    async def _send(
        self, method: str, url: str, body: bytes, params: Mapping[str, str] | None
    ) -> httpx.Response:
        request = self._http.build_request(method, url, params=params, content=body or None)
        if body:
            request.headers["Content-Type"] = "application/json"
        request.headers["Authorization"] = self._authorization(method, request.url, body)
        request.headers["Wechatpay-Serial"] = self.config.wechatpay_public_key_id
        try:
            response = await self._http.send(request)
        except httpx.TimeoutException as exc:
            raise WeChatPayUnavailable(f"timed out: {method} {request.url.path}") from exc
        except httpx.TransportError as exc:
            raise WeChatPayUnavailable(f"connection failed: {exc!r}") from exc
        return response

    def _authorization(self, method: str, url: httpx.URL, body: bytes) -> str:
        # Sign exactly the bytes that go on the wire: raw_path is the encoded path + query.
        timestamp = str(int(self._clock().timestamp()))
        nonce = paycrypto.new_nonce()
        message = paycrypto.request_message(method, url.raw_path.decode(), timestamp, nonce, body)
        return paycrypto.authorization_header(
            mchid=self.config.mchid,
            serial_no=self.config.merchant_serial_no,
            nonce=nonce,
            timestamp=timestamp,
            signature=paycrypto.rsa_sign(self._private_key, message),
        )

    def _verify_response(self, response: httpx.Response) -> None:
        signed = _signed_headers(response.headers)
        if signed is None:
            raise SignatureInvalid("response lacks Wechatpay-* signature headers")
        timestamp, nonce, signature, serial = signed
        if signature.startswith(paycrypto.PROBE_SIGNATURE_PREFIX):
            raise SignatureInvalid("response carries a probe signature")
        key = self._keys.get(serial)
        if key is None:
            raise SignatureInvalid(f"response signed with unknown key {serial}")
        message = paycrypto.response_message(timestamp, nonce, response.content)
        if not paycrypto.rsa_verify(key, message, signature):
            raise SignatureInvalid("response signature does not verify")
        try:
            fresh = _timestamp_is_fresh(timestamp, self._clock())
        except ValueError as exc:
            raise SignatureInvalid("response timestamp is not a number") from exc
        if not fresh:
            raise SignatureInvalid("response timestamp is outside ±5 minutes")

    @staticmethod
    def _error_from(response: httpx.Response) -> WeChatPayError:
        # Error answers are not signature-checked: we only ever treat them as failure.
        code, message = f"HTTP_{response.status_code}", response.reason_phrase
        try:
            data = json.loads(response.content)
            code, message = str(data["code"]), str(data.get("message", ""))
        except (ValueError, KeyError, TypeError):
            pass
        if response.status_code >= 500:
            return WeChatPayUnavailable(message, code=code, status=response.status_code)
        return WeChatPayError(message, code=code, status=response.status_code)
