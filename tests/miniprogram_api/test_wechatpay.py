"""WeChat Pay v3 client against the local fake over loopback HTTP, and notification checks."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from miniprogram_api import paycrypto
from miniprogram_api.fake_wechatpay import FakeWeChatPay, Forgery
from miniprogram_api.wechatpay import (
    BEIJING,
    BillHashMismatch,
    NotificationError,
    SignatureInvalid,
    Transaction,
    WeChatPayArgumentError,
    WeChatPayClient,
    WeChatPayConfig,
    WeChatPayError,
    WeChatPayUnavailable,
    failure_reply,
    parse_trade_bill,
    reply_for,
    success_reply,
)

MCHID = "1900000109"
APPID = "wxd678efh567hg6787"
MERCHANT_SERIAL = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
API_V3_KEY = b"0123456789abcdefghijABCDEFGHIJkl"  # test-only, 32 bytes
NOTIFY_URL = "https://pay.example.cn/api/wechatpay/notify"
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture(scope="module")
def merchant_key() -> rsa.RSAPrivateKey:
    return paycrypto.generate_rsa_key()


@pytest.fixture
async def fake(merchant_key: rsa.RSAPrivateKey) -> AsyncIterator[FakeWeChatPay]:
    state = FakeWeChatPay(
        mchid=MCHID,
        appid=APPID,
        merchant_public_key_pem=paycrypto.public_key_pem(merchant_key),
        merchant_serial_no=MERCHANT_SERIAL,
        api_v3_key=API_V3_KEY,
    )
    await state.start()
    yield state
    await state.stop()


def config_for(
    fake: FakeWeChatPay, merchant_key: rsa.RSAPrivateKey, **changes: Any
) -> WeChatPayConfig:
    assert fake.base_url is not None
    config = WeChatPayConfig(
        api_base=fake.base_url,
        mchid=MCHID,
        appid=APPID,
        merchant_serial_no=MERCHANT_SERIAL,
        merchant_private_key_pem=paycrypto.private_key_pem(merchant_key),
        api_v3_key=API_V3_KEY,
        wechatpay_public_key_pem=fake.public_key_pem(),
        wechatpay_public_key_id=fake.platform_key_id,
        timeout_seconds=2.0,
    )
    return replace(config, **changes)


@pytest.fixture
async def client(
    fake: FakeWeChatPay, merchant_key: rsa.RSAPrivateKey
) -> AsyncIterator[WeChatPayClient]:
    wechatpay = WeChatPayClient(config_for(fake, merchant_key))
    yield wechatpay
    await wechatpay.aclose()


_counter = iter(range(10**6))


def new_trade_no() -> str:
    return f"FEE{datetime.now(UTC):%Y%m%d%H%M%S}{next(_counter):06d}"


async def place_order(client: WeChatPayClient, amount_fen: int = 12_345, **extra: Any) -> str:
    out_trade_no = extra.pop("out_trade_no", None) or new_trade_no()
    await client.create_jsapi_order(
        out_trade_no=out_trade_no,
        description="2024年物业费 3栋1201",
        amount_total_fen=amount_fen,
        payer_openid=OPENID,
        notify_url=NOTIFY_URL,
        time_expire=now() + timedelta(hours=2),
        **extra,
    )
    return out_trade_no


# --------------------------------------------------------------------------- orders


async def test_create_order_returns_prepay_id_and_signs_the_request(
    client: WeChatPayClient, fake: FakeWeChatPay
) -> None:
    out_trade_no = await place_order(client, attach="bill:42")

    order = fake.orders[out_trade_no]
    assert order.prepay_id.startswith("wx")
    assert order.total_fen == 12_345 and order.attach == "bill:42"
    assert fake.requests == [("POST", "/v3/pay/transactions/jsapi")]


async def test_pay_sign_verifies_with_the_merchant_public_key(
    client: WeChatPayClient, merchant_key: rsa.RSAPrivateKey
) -> None:
    params = client.jsapi_pay_params("wx201410272009395522657a690389285100")

    assert params["package"] == "prepay_id=wx201410272009395522657a690389285100"
    assert params["signType"] == "RSA" and params["appId"] == APPID
    message = (
        f"{APPID}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n".encode()
    )
    merchant_key.public_key().verify(
        base64.b64decode(params["paySign"]), message, padding.PKCS1v15(), hashes.SHA256()
    )


async def test_same_order_twice_returns_the_same_prepay_id(
    client: WeChatPayClient, fake: FakeWeChatPay
) -> None:
    out_trade_no = new_trade_no()
    expire = now() + timedelta(hours=1)
    args = dict(
        out_trade_no=out_trade_no,
        description="物业费",
        amount_total_fen=100,
        payer_openid=OPENID,
        notify_url=NOTIFY_URL,
        time_expire=expire,
    )
    first = await client.create_jsapi_order(**args)  # type: ignore[arg-type]
    second = await client.create_jsapi_order(**args)  # type: ignore[arg-type]
    assert first == second

    with pytest.raises(WeChatPayError) as caught:
        await client.create_jsapi_order(**{**args, "amount_total_fen": 200})  # type: ignore
    assert (caught.value.status, caught.value.code) == (400, "INVALID_REQUEST")


@pytest.mark.parametrize(
    "change",
    [
        {"out_trade_no": "abc12"},  # too short
        {"out_trade_no": "x" * 33},
        {"out_trade_no": "has space 123"},
        {"amount_total_fen": 0},
        {"amount_total_fen": 1.5},
        {"amount_total_fen": True},
        {"notify_url": "http://pay.example.cn/notify"},
        {"notify_url": "https://pay.example.cn/notify?community=7"},
        {"time_expire": datetime(2030, 1, 1)},  # naive
        {"description": ""},
    ],
)
async def test_client_refuses_arguments_wechat_pay_would_reject(
    client: WeChatPayClient, fake: FakeWeChatPay, change: dict[str, Any]
) -> None:
    args: dict[str, Any] = dict(
        out_trade_no=new_trade_no(),
        description="物业费",
        amount_total_fen=100,
        payer_openid=OPENID,
        notify_url=NOTIFY_URL,
        time_expire=now() + timedelta(hours=1),
    )
    with pytest.raises(WeChatPayArgumentError):
        await client.create_jsapi_order(**{**args, **change})
    assert fake.requests == []


async def test_query_order_reports_notpay_then_success(
    client: WeChatPayClient, fake: FakeWeChatPay
) -> None:
    out_trade_no = await place_order(client, amount_fen=8_800)
    assert (await client.query_order(out_trade_no))["trade_state"] == "NOTPAY"

    fake.pay(out_trade_no)
    paid = Transaction.from_json(await client.query_order(out_trade_no))

    assert paid.trade_state == "SUCCESS"
    assert paid.amount_total_fen == paid.payer_total_fen == 8_800
    assert paid.transaction_id and paid.success_time is not None
    assert paid.success_time.tzinfo is not None and paid.payer_openid == OPENID


async def test_query_unknown_order_is_order_not_exist(client: WeChatPayClient) -> None:
    with pytest.raises(WeChatPayError) as caught:
        await client.query_order("NOSUCHORDER001")
    assert (caught.value.status, caught.value.code) == (404, "ORDER_NOT_EXIST")


async def test_close_unpaid_order_then_closing_a_paid_order_is_orderpaid(
    client: WeChatPayClient, fake: FakeWeChatPay
) -> None:
    unpaid = await place_order(client)
    await client.close_order(unpaid)
    assert (await client.query_order(unpaid))["trade_state"] == "CLOSED"

    paid = await place_order(client)
    fake.pay(paid)
    with pytest.raises(WeChatPayError) as caught:
        await client.close_order(paid)
    assert (caught.value.status, caught.value.code) == (400, "ORDERPAID")


# --------------------------------------------------------------------------- refunds


async def test_refund_is_idempotent_on_out_refund_no(
    client: WeChatPayClient, fake: FakeWeChatPay
) -> None:
    out_trade_no = await place_order(client, amount_fen=10_000)
    fake.pay(out_trade_no)

    first = await client.refund(out_trade_no, "RF" + out_trade_no, 4_000, 10_000, "多缴退回")
    again = await client.refund(out_trade_no, "RF" + out_trade_no, 4_000, 10_000, "多缴退回")

    assert first["refund_id"] == again["refund_id"]
    assert first["status"] == "PROCESSING"
    assert fake.orders[out_trade_no].refunded_fen == 4_000
    fake.complete_refund("RF" + out_trade_no)
    assert (await client.query_refund("RF" + out_trade_no))["status"] == "SUCCESS"


async def test_refund_beyond_the_refundable_amount_is_rejected(
    client: WeChatPayClient, fake: FakeWeChatPay
) -> None:
    out_trade_no = await place_order(client, amount_fen=10_000)
    fake.pay(out_trade_no)
    await client.refund(out_trade_no, "RFA" + out_trade_no, 7_000, 10_000)

    with pytest.raises(WeChatPayError) as caught:
        await client.refund(out_trade_no, "RFB" + out_trade_no, 3_001, 10_000)
    assert (caught.value.status, caught.value.code) == (400, "INVALID_REQUEST")
    with pytest.raises(WeChatPayArgumentError):
        await client.refund(out_trade_no, "RFC" + out_trade_no, 10_001, 10_000)


async def test_same_out_refund_no_with_another_amount_is_rejected(
    client: WeChatPayClient, fake: FakeWeChatPay
) -> None:
    out_trade_no = await place_order(client, amount_fen=10_000)
    fake.pay(out_trade_no)
    await client.refund(out_trade_no, "RF" + out_trade_no, 1_000, 10_000)
    with pytest.raises(WeChatPayError) as caught:
        await client.refund(out_trade_no, "RF" + out_trade_no, 2_000, 10_000)
    assert caught.value.code == "INVALID_REQUEST"


# --------------------------------------------------------------------------- bills


async def test_trade_bill_is_downloaded_hash_checked_and_parsed(
    client: WeChatPayClient, fake: FakeWeChatPay
) -> None:
    paid = await place_order(client, amount_fen=12_345, attach="bill:1")
    unpaid = await place_order(client, amount_fen=500)
    fake.pay(paid)
    await client.refund(paid, "RF" + paid, 345, 12_345)
    success_time = fake.orders[paid].success_time
    assert success_time is not None
    bill_day = success_time.astimezone(BEIJING).date()  # bills cut at Beijing midnight

    rows = await client.trade_bill(bill_day)

    by_state = {row.trade_state: row for row in rows if row.out_trade_no == paid}
    assert by_state["SUCCESS"].settlement_total_fen == 12_345
    assert by_state["SUCCESS"].attach == "bill:1"
    assert by_state["SUCCESS"].transaction_id == fake.orders[paid].transaction_id
    assert by_state["REFUND"].refund_fen == 345
    assert by_state["REFUND"].out_refund_no == "RF" + paid
    assert all(row.out_trade_no != unpaid for row in rows)


async def test_trade_bill_with_wrong_hash_is_rejected(
    client: WeChatPayClient, fake: FakeWeChatPay
) -> None:
    fake.corrupt_bills = True
    with pytest.raises(BillHashMismatch):
        await client.trade_bill(now().date())


def test_parse_trade_bill_keeps_commas_inside_fields_and_strips_the_bom() -> None:
    content = (
        "\ufeff交易时间,商户订单号,交易状态,应结订单金额,退款金额,商品名称\r\n"
        "`2024-05-01 10:00:00,`FEE0001,`SUCCESS,`123.45,`0.00,`物业费,3栋\r\n"
        "总交易单数,应结订单总金额\r\n"
        "`1,`123.45\r\n"
    ).encode()

    [row] = parse_trade_bill(content)

    assert row.out_trade_no == "FEE0001" and row.settlement_total_fen == 12_345
    assert row.raw["商品名称"] == "物业费,3栋"


# --------------------------------------------------------------------------- transport trust


async def test_request_signed_with_another_key_is_sign_error(
    fake: FakeWeChatPay, merchant_key: rsa.RSAPrivateKey
) -> None:
    impostor = paycrypto.private_key_pem(paycrypto.generate_rsa_key())
    wechatpay = WeChatPayClient(config_for(fake, merchant_key, merchant_private_key_pem=impostor))
    try:
        with pytest.raises(WeChatPayError) as caught:
            await place_order(wechatpay)
    finally:
        await wechatpay.aclose()
    assert (caught.value.status, caught.value.code) == (401, "SIGN_ERROR")
    assert fake.orders == {}


async def test_tampered_response_is_signature_invalid(
    client: WeChatPayClient, fake: FakeWeChatPay
) -> None:
    fake.tamper_responses = True
    with pytest.raises(SignatureInvalid):
        await place_order(client)


async def test_response_signed_by_an_unknown_key_is_signature_invalid(
    client: WeChatPayClient, fake: FakeWeChatPay
) -> None:
    fake.rotate_key()
    with pytest.raises(SignatureInvalid):
        await place_order(client)


async def test_rotated_key_is_accepted_when_configured_by_its_id(
    fake: FakeWeChatPay, merchant_key: rsa.RSAPrivateKey
) -> None:
    old_id = fake.platform_key_id
    new_id = fake.rotate_key()
    config = config_for(
        fake,
        merchant_key,
        wechatpay_public_key_pem=fake.public_key_pem(old_id),
        wechatpay_public_key_id=old_id,
        platform_certificates={new_id: fake.public_key_pem(new_id)},
    )
    wechatpay = WeChatPayClient(config)
    try:
        assert await place_order(wechatpay)
    finally:
        await wechatpay.aclose()


async def test_slow_answer_is_unavailable(
    fake: FakeWeChatPay, merchant_key: rsa.RSAPrivateKey
) -> None:
    wechatpay = WeChatPayClient(config_for(fake, merchant_key, timeout_seconds=0.1))
    fake.response_delay_seconds = 0.4
    try:
        with pytest.raises(WeChatPayUnavailable):
            await wechatpay.query_order("FEE000000001")
    finally:
        await wechatpay.aclose()
        await asyncio.sleep(0.5)  # let the fake's delayed handler finish before teardown


async def test_server_error_is_unavailable_with_its_code(
    client: WeChatPayClient, fake: FakeWeChatPay
) -> None:
    fake.inject_error(500, "SYSTEM_ERROR", "系统繁忙")
    with pytest.raises(WeChatPayUnavailable) as caught:
        await client.query_order("FEE000000001")
    assert (caught.value.status, caught.value.code) == (500, "SYSTEM_ERROR")


async def test_connection_refused_is_unavailable(
    fake: FakeWeChatPay, merchant_key: rsa.RSAPrivateKey
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    wechatpay = WeChatPayClient(
        config_for(fake, merchant_key, api_base=f"http://127.0.0.1:{closed_port}")
    )
    try:
        with pytest.raises(WeChatPayUnavailable):
            await wechatpay.query_order("FEE000000001")
    finally:
        await wechatpay.aclose()


# --------------------------------------------------------------------------- notifications


async def test_genuine_payment_notification_is_verified_and_decrypted(
    client: WeChatPayClient, fake: FakeWeChatPay
) -> None:
    out_trade_no = await place_order(client, amount_fen=9_900, attach="bill:7")
    fake.pay(out_trade_no)
    headers, body = fake.notification_for(out_trade_no)

    notification = client.parse_notification(headers, body, now())

    assert notification.event_type == "TRANSACTION.SUCCESS"
    assert notification.resource_type == "encrypt-resource"
    assert notification.original_type == "transaction"
    assert notification.create_time.tzinfo is not None
    paid = Transaction.from_json(notification.resource)
    assert (paid.out_trade_no, paid.trade_state, paid.amount_total_fen) == (
        out_trade_no,
        "SUCCESS",
        9_900,
    )
    assert paid.attach == "bill:7"


async def test_notification_retries_keep_the_same_id(
    client: WeChatPayClient, fake: FakeWeChatPay
) -> None:
    out_trade_no = await place_order(client)
    fake.pay(out_trade_no)
    first = client.parse_notification(*fake.notification_for(out_trade_no), now())
    retry = client.parse_notification(*fake.notification_for(out_trade_no), now())
    assert first.id == retry.id


@pytest.mark.parametrize(
    ("forgery", "code"),
    [
        (Forgery.BAD_SIGNATURE, "signature_invalid"),
        (Forgery.TAMPERED_BODY, "signature_invalid"),
        (Forgery.STALE_TIMESTAMP, "timestamp_stale"),
        (Forgery.PROBE_SIGNATURE, "probe_signature"),
        (Forgery.UNKNOWN_SERIAL, "unknown_serial"),
        (Forgery.MISSING_HEADERS, "headers_missing"),
        (Forgery.BAD_CIPHERTEXT, "decrypt_failed"),
        (Forgery.WRONG_MCHID, "mchid_mismatch"),
        (Forgery.WRONG_APPID, "appid_mismatch"),
    ],
)
async def test_forged_notification_is_rejected_with_its_code(
    client: WeChatPayClient, fake: FakeWeChatPay, forgery: Forgery, code: str
) -> None:
    out_trade_no = await place_order(client)
    fake.pay(out_trade_no)
    headers, body = fake.forge(out_trade_no, forgery)

    with pytest.raises(NotificationError) as caught:
        client.parse_notification(headers, body, now())

    assert caught.value.code == code
    reply = reply_for(caught.value)
    assert reply.status >= 400
    assert json.loads(reply.body)["code"] == "FAIL"


async def test_wrong_amount_is_genuine_but_differs_from_the_order(
    client: WeChatPayClient, fake: FakeWeChatPay
) -> None:
    # The parser cannot know our order's amount: the caller must compare it with its records.
    out_trade_no = await place_order(client, amount_fen=10_000)
    fake.pay(out_trade_no)
    notification = client.parse_notification(
        *fake.forge(out_trade_no, Forgery.WRONG_AMOUNT), now()
    )
    assert Transaction.from_json(notification.resource).amount_total_fen != 10_000


async def test_probe_signature_is_a_signature_failure(
    client: WeChatPayClient, fake: FakeWeChatPay
) -> None:
    out_trade_no = await place_order(client)
    fake.pay(out_trade_no)
    with pytest.raises(SignatureInvalid):
        client.parse_notification(*fake.forge(out_trade_no, Forgery.PROBE_SIGNATURE), now())


async def test_notification_from_the_future_is_stale_too(
    client: WeChatPayClient, fake: FakeWeChatPay
) -> None:
    out_trade_no = await place_order(client)
    fake.pay(out_trade_no)
    headers, body = fake.notification_for(out_trade_no)
    with pytest.raises(NotificationError) as caught:
        client.parse_notification(headers, body, now() - timedelta(minutes=6))
    assert caught.value.code == "timestamp_stale"
    assert client.parse_notification(headers, body, now() - timedelta(minutes=4)).id


async def test_refund_notification_is_verified_without_appid(
    client: WeChatPayClient, fake: FakeWeChatPay
) -> None:
    out_trade_no = await place_order(client, amount_fen=5_000)
    fake.pay(out_trade_no)
    await client.refund(out_trade_no, "RF" + out_trade_no, 5_000, 5_000)

    notification = client.parse_notification(
        *fake.refund_notification_for("RF" + out_trade_no), now()
    )

    assert notification.event_type == "REFUND.SUCCESS"
    assert notification.resource["refund_status"] == "SUCCESS"
    assert notification.resource["amount"]["refund"] == 5_000


def test_reply_helpers_have_the_documented_shape() -> None:
    assert success_reply().status == 204 and success_reply().body == b""
    reply = failure_reply("签名错误", 401)
    assert reply.status == 401
    assert json.loads(reply.body) == {"code": "FAIL", "message": "签名错误"}
    with pytest.raises(ValueError):
        failure_reply("x", 200)


# --------------------------------------------------------------------------- delivery


class _Receiver(tornado.web.RequestHandler):
    """A merchant notify endpoint: verify, detect replays by id, answer per the spec."""

    def initialize(self, client: WeChatPayClient, log: list[str], seen: set[str]) -> None:
        self.client, self.log, self.seen = client, log, seen

    def post(self) -> None:
        try:
            notification = self.client.parse_notification(
                self.request.headers, self.request.body, now()
            )
        except NotificationError as exc:
            self.log.append(exc.code)
            reply = reply_for(exc)
        else:
            replay = notification.id in self.seen
            self.seen.add(notification.id)
            self.log.append(("replay:" if replay else "") + notification.event_type)
            reply = success_reply()
        self.set_status(reply.status)
        for name, value in reply.headers.items():
            self.set_header(name, value)
        self.finish(reply.body or None)


@pytest.fixture
async def receiver(
    client: WeChatPayClient, fake: FakeWeChatPay
) -> AsyncIterator[list[str]]:
    log: list[str] = []
    app = tornado.web.Application(
        [(r"/api/wechatpay/notify", _Receiver, {"client": client, "log": log, "seen": set()})]
    )
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    fake.notify_target_override = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    yield log
    server.stop()
    await server.close_all_connections()


async def test_delivered_twice_is_acknowledged_twice_and_seen_as_a_replay(
    client: WeChatPayClient, fake: FakeWeChatPay, receiver: list[str]
) -> None:
    out_trade_no = await place_order(client)
    fake.pay(out_trade_no)

    deliveries = await fake.deliver(out_trade_no, times=2)

    assert [d.status for d in deliveries] == [204, 204]
    assert receiver == ["TRANSACTION.SUCCESS", "replay:TRANSACTION.SUCCESS"]
    assert fake.paid_unnotified() == []


async def test_concurrent_and_late_deliveries_reach_the_receiver(
    client: WeChatPayClient, fake: FakeWeChatPay, receiver: list[str]
) -> None:
    out_trade_no = await place_order(client)
    fake.pay(out_trade_no)

    deliveries = await fake.deliver(out_trade_no, times=3, concurrently=True, delay_seconds=0.05)

    assert all(d.acknowledged for d in deliveries)
    assert sorted(receiver) == ["TRANSACTION.SUCCESS"] + ["replay:TRANSACTION.SUCCESS"] * 2


async def test_refund_notification_may_arrive_before_the_payment_notification(
    client: WeChatPayClient, fake: FakeWeChatPay, receiver: list[str]
) -> None:
    out_trade_no = await place_order(client, amount_fen=3_000)
    fake.pay(out_trade_no)
    await client.refund(out_trade_no, "RF" + out_trade_no, 3_000, 3_000, notify_url=NOTIFY_URL)

    await fake.deliver_refund("RF" + out_trade_no)
    await fake.deliver(out_trade_no)

    assert receiver == ["REFUND.SUCCESS", "TRANSACTION.SUCCESS"]


async def test_forged_delivery_is_refused_and_the_order_stays_unnotified(
    client: WeChatPayClient, fake: FakeWeChatPay, receiver: list[str]
) -> None:
    out_trade_no = await place_order(client)
    fake.pay(out_trade_no)

    [delivery] = await fake.deliver(
        out_trade_no, notification=fake.forge(out_trade_no, Forgery.BAD_SIGNATURE)
    )

    assert delivery.status == 401
    assert json.loads(delivery.body)["code"] == "FAIL"
    assert receiver == ["signature_invalid"]
    assert fake.paid_unnotified() == [out_trade_no]


async def test_paid_but_never_notified_is_listed_for_reconciliation(
    client: WeChatPayClient, fake: FakeWeChatPay
) -> None:
    notified, silent = await place_order(client), await place_order(client)
    fake.pay(notified)
    fake.pay(silent)
    fake.orders[notified].notified = True  # as if delivered and acknowledged

    assert fake.paid_unnotified() == [silent]
    assert (await client.query_order(silent))["trade_state"] == "SUCCESS"


async def test_unreachable_receiver_is_a_failed_delivery(
    client: WeChatPayClient, fake: FakeWeChatPay
) -> None:
    out_trade_no = await place_order(client)
    fake.pay(out_trade_no)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    fake.notify_target_override = f"http://127.0.0.1:{closed_port}"

    [delivery] = await fake.deliver(out_trade_no)

    assert delivery.status == 0 and not delivery.acknowledged
    assert fake.paid_unnotified() == [out_trade_no]
