"""bills: owners list their bills and create WeChat Pay orders, 64 connections at once.

    ./dev bench bills [--owners 1000] [--periods 2] [--concurrency 64]

The server process is `python -m server` configured with WECHATPAY_* settings that point at
the project's fake WeChat Pay v3 (miniprogram_api/fake_wechatpay.py), run by this benchmark on
a loopback port with merchant keys generated for the run. Each owner lists its unpaid bills,
then orders the oldest one. Target (issue 7): p99 <= 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from bench.common import (
    APPID,
    RssSampler,
    bench_store,
    local_services,
    machine,
    owner_tokens,
    percentile,
    run_load,
    seed_community,
    start_server,
    store_pid,
    summary_line,
    verdict,
)
from miniprogram_api import paycrypto
from miniprogram_api.fake_wechatpay import FakeWeChatPay
from server.clock import ManualClock
from server.db import ensure_indexes

MCHID = "1900000109"
SERIAL = "BENCH000000000000000000000000000000000001"


async def main_async(args: argparse.Namespace) -> int:
    with bench_store("bills") as env:
        print(machine(env.store_label))
        merchant = paycrypto.generate_rsa_key()
        api_v3_key = secrets.token_hex(16)
        fake = FakeWeChatPay(mchid=MCHID, appid=APPID, merchant_serial_no=SERIAL,
                             merchant_public_key_pem=paycrypto.public_key_pem(merchant),
                             api_v3_key=api_v3_key.encode())
        pay_base = await fake.start()
        (env.tmp / "merchant.pem").write_bytes(paycrypto.private_key_pem(merchant))
        (env.tmp / "wechatpay_pub.pem").write_bytes(fake.public_key_pem())
        pay_env = {"WECHATPAY_API_BASE": pay_base, "WECHATPAY_MCHID": MCHID,
                   "WECHATPAY_MERCHANT_SERIAL_NO": SERIAL,
                   "WECHATPAY_MERCHANT_KEY_FILE": str(env.tmp / "merchant.pem"),
                   "WECHATPAY_API_V3_KEY": api_v3_key,
                   "WECHATPAY_PUBLIC_KEY_FILE": str(env.tmp / "wechatpay_pub.pem"),
                   "WECHATPAY_PUBLIC_KEY_ID": fake.platform_key_id,
                   "WECHATPAY_NOTIFY_BASE": "https://wy.example.cn"}
        store = env.connect()
        await ensure_indexes(store.db)
        clock = ManualClock(datetime.now(UTC))
        services = local_services(env, store, clock)
        started = time.perf_counter()
        await seed_community(services, args.owners)
        tokens = await owner_tokens(services)
        community = await services.registry.community("cm_bench")
        item = await services.fees.create_item(None, community, {
            "name": "物业费", "kind": "property", "cycle_months": 1,
            "price_fen_per_m2_month": 135})
        for month in range(1, args.periods + 1):
            await services.fees.generate(None, community, f"2026-{month:02d}", [item["id"]])
        bills = await store.db["bills"].count_documents({})
        print(f"seeding: {args.owners} owners, {bills} bills in {time.perf_counter() - started:.1f} s")

        server = start_server(env, **pay_env)
        try:
            async with httpx.AsyncClient() as http:
                await http.get(server.base + "/readyz")
            pids = {"server": server.pid}
            if (pid := store_pid(env)) is not None:
                pids["store (ferretdb)"] = pid
            with RssSampler(pids) as sampler:
                lists = await run_load(list_jobs(server.base, tokens), args.concurrency,
                                       keep=_oldest_bill)
                orders = await run_load(order_jobs(server.base, lists.bodies), args.concurrency,
                                        keep=lambda r: None if r.status_code == 201 else r.text[:300])
        finally:
            server.stop()
        pending = await store.db["pay_orders"].count_documents({"status": "pending"})
        await store.close()
        await fake.stop()
    print(f"\nbills: {args.owners} owners, {bills} bills, {args.concurrency} connections")
    print("  list bills (GET /api/mp/v1/bills): " + summary_line(lists))
    print("  create order (POST /api/mp/v1/orders, calls the fake WeChat Pay): " + summary_line(orders))
    failures = [b for s, b in orders.bodies if s >= 400][:3]
    if failures:
        print(f"  first order failures: {failures}")
    print(f"  orders pending in the store: {pending}; orders known to the fake: {len(fake.orders)}")
    print("  memory and CPU under load:")
    print("\n".join(sampler.lines()))
    print("targets:")
    for name, result in (("list", lists), ("order", orders)):
        p99 = percentile(result.latencies, 99) * 1000
        print(verdict(f"{name} p99 <= 50 ms", p99 <= 50, f"{p99:.1f} ms"))
        errors = len(result.latencies) - result.ok
        print(verdict(f"{name}: zero errors", errors == 0, f"{errors} errors"))
    return 0


def list_jobs(base: str, tokens: list[str]) -> list[Any]:
    def job(token: str) -> Any:
        return lambda http: http.get(f"{base}/api/mp/v1/bills?status=unpaid",
                                     headers={"Authorization": f"Bearer {token}"})
    return [job(t) for t in tokens]


def _oldest_bill(response: httpx.Response) -> Any:
    """(token, id of the oldest unpaid bill) of one listing."""
    if response.status_code != 200:
        return response.text[:300]
    bills = sorted(response.json()["bills"], key=lambda b: b["period"])
    return (response.request.headers["Authorization"], bills[0]["id"] if bills else None)


def order_jobs(base: str, listed: list[tuple[int, Any]]) -> list[Any]:
    def job(auth: str, bill_id: str) -> Any:
        return lambda http: http.post(f"{base}/api/mp/v1/orders", json={"bill_ids": [bill_id]},
                                      headers={"Authorization": auth})
    return [job(*body) for status, body in listed if status == 200 and body[1]]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bills", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--owners", type=int, default=1000)
    parser.add_argument("--periods", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
