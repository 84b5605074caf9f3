"""Demo data for fees and the in-process fake WeChat Pay of `python -m server --demo`."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miniprogram_api import paycrypto
from miniprogram_api.wechatpay import BEIJING, WeChatPayClient, WeChatPayConfig
from server.clock import Clock
from server.errors import Conflict

if TYPE_CHECKING:
    from miniprogram_api.fake_wechatpay import FakeWeChatPay
    from server.services import Services
    from settings import Settings

DEMO_MCHID = "1900000109"
DEMO_MERCHANT_SERIAL = "DEMO0000000000000000000000000000000000001"


async def start_demo_wechatpay(demo_dir: Path, appid: str,
                               clock: Clock) -> tuple[WeChatPayClient, FakeWeChatPay]:
    """Merchant keys generated once into var/demo (never committed); the fake runs in-process."""
    from miniprogram_api.fake_wechatpay import FakeWeChatPay

    demo_dir.mkdir(parents=True, exist_ok=True)
    key_path, conf_path = demo_dir / "wechatpay_merchant_key.pem", demo_dir / "wechatpay.json"
    if not key_path.exists():
        key_path.write_bytes(paycrypto.private_key_pem(paycrypto.generate_rsa_key()))
        key_path.chmod(0o600)
    if not conf_path.exists():
        conf_path.write_text(json.dumps({"api_v3_key": secrets.token_hex(16)}))
        conf_path.chmod(0o600)
    merchant_pem = key_path.read_bytes()
    api_v3_key = json.loads(conf_path.read_text())["api_v3_key"].encode()
    fake = FakeWeChatPay(
        mchid=DEMO_MCHID, appid=appid, merchant_serial_no=DEMO_MERCHANT_SERIAL,
        merchant_public_key_pem=paycrypto.public_key_pem(paycrypto.load_private_key(merchant_pem)),
        api_v3_key=api_v3_key, clock=clock.now)
    base = await fake.start()
    client = WeChatPayClient(WeChatPayConfig(
        api_base=base, mchid=DEMO_MCHID, appid=appid, merchant_serial_no=DEMO_MERCHANT_SERIAL,
        merchant_private_key_pem=merchant_pem, api_v3_key=api_v3_key,
        wechatpay_public_key_pem=fake.public_key_pem(),
        wechatpay_public_key_id=fake.platform_key_id), clock=clock.now)
    return client, fake


def wechatpay_from_settings(settings: Settings, clock: Clock) -> WeChatPayClient | None:
    """The production client, or None when WECHATPAY_MCHID is empty (payment switched off)."""
    if not settings.wechatpay_mchid:
        return None
    return WeChatPayClient(WeChatPayConfig(
        api_base=settings.wechatpay_api_base, mchid=settings.wechatpay_mchid,
        appid=settings.wechat_appid, merchant_serial_no=settings.wechatpay_merchant_serial_no,
        merchant_private_key_pem=Path(settings.wechatpay_merchant_key_file).read_bytes(),
        api_v3_key=settings.wechatpay_api_v3_key.reveal().encode(),
        wechatpay_public_key_pem=Path(settings.wechatpay_public_key_file).read_bytes(),
        wechatpay_public_key_id=settings.wechatpay_public_key_id), clock=clock.now)


async def seed_fees(services: Services, community_ids: list[str]) -> dict[str, Any]:
    """A property fee and a parking fee per demo community, billed for this month (idempotent)."""
    period = services.clock.now().astimezone(BEIJING).strftime("%Y-%m")
    created = 0
    for community_id in community_ids:
        community = await services.registry.community(community_id)
        existing = {i["name"]: i["id"] for i in await services.fees.list_items(community_id)}
        for body in ({"name": "物业费", "kind": "property", "cycle_months": 1,
                      "price_fen_per_m2_month": 135},
                     {"name": "车位管理费", "kind": "parking", "cycle_months": 1,
                      "amount_fen_per_month": 6000}):
            if body["name"] not in existing:
                try:
                    item = await services.fees.create_item(None, community, body)
                    existing[item["name"]] = item["id"]
                except Conflict:
                    pass
        result = await services.fees.generate(None, community, period, sorted(existing.values()))
        created += result["created"]
    return {"period": period, "bills_created": created}
