"""WeChat Pay notifications: the signature is checked by the service over the raw body."""

from __future__ import annotations

from typing import Any

from handlers.base import Auth, Endpoint, Reply, Request
from miniprogram_api.wechatpay import NotificationReply
from server.validation import obj, string


def _reply(reply: NotificationReply) -> Reply:
    """204 empty on success; 4xx/5xx {"code":"FAIL","message":…} makes WeChat Pay retry."""
    return Reply(body=reply.body or None, status=reply.status, headers=dict(reply.headers),
                 content_type=reply.headers.get("Content-Type", "application/json; charset=utf-8"))


async def payment_notify(req: Request) -> Any:
    return _reply(await req.services.payments.handle_notification(req.headers, req.raw_body))


async def refund_notify(req: Request) -> Any:
    return _reply(await req.services.refunds.handle_notification(req.headers, req.raw_body))


# Documentation only: a CALLBACK body is read raw (signatures cover exactly those bytes).
ENVELOPE = {"type": "object", "required": ["id", "create_time", "event_type", "resource"],
            "properties": {"id": string(), "create_time": string(), "event_type": string(),
                           "resource_type": string(), "summary": string(0),
                           "resource": obj({"algorithm": string(), "ciphertext": string(1, 100_000),
                                            "nonce": string(), "original_type": string()},
                                           {"associated_data": string(0)})}}

endpoints = [
    Endpoint("POST", "/api/pay/v1/wechatpay/notify", payment_notify, Auth.CALLBACK,
             "微信支付支付成功通知（验签、解密、核对订单后记账；成功 204）", body=ENVELOPE,
             status=204, tag="pay"),
    Endpoint("POST", "/api/pay/v1/wechatpay/refund-notify", refund_notify, Auth.CALLBACK,
             "微信支付退款结果通知（验签、解密、核对退款单；成功 204）", body=ENVELOPE,
             status=204, tag="pay"),
]
