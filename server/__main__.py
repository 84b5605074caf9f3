"""python -m server [--demo]: settings → store → make_app → listen; SIGTERM stops gracefully."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.netutil

from miniprogram_api.wechat import WeChatClient
from server import logs
from server.app import make_app
from server.clock import SystemClock
from server.db import Store, connect, ensure_indexes
from server.payreconcile import run_pay_background
from server.embedded import EmbeddedStore, EmbeddedStoreError, ferretdb_binary
from server.services import Services, build_services
from server.wechat_tokens import StoreTokenCache
from settings import Settings, SettingsError

log = logging.getLogger("server")
DEMO_DIR = Path("var/demo")


def demo_environment(env: MutableMapping[str, str]) -> None:
    """Demo secrets are generated once into var/demo and reused, so data survives restarts."""
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    path = DEMO_DIR / "secrets.json"
    if not path.exists():
        path.write_text(json.dumps({
            "ID_HASH_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "FIELD_ENC_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "WECHAT_APPID": "wxdemo0000000001",
            "WECHAT_SECRET": secrets.token_hex(16),
        }))
        path.chmod(0o600)
    keys = DEMO_DIR / "keys.json"
    if not keys.exists():
        from server.keys import write_new_keyring

        write_new_keyring(keys)
    env.setdefault("SIGNING_KEYS_FILE", str(keys))
    env.setdefault("VOTE_TEMPLATE_ID", "demo-vote-template")
    for key, value in json.loads(path.read_text()).items():
        env.setdefault(key, value)


@contextlib.asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[Store]:
    """MONGODB_URI if set; otherwise the embedded FerretDB, stopped cleanly on exit."""
    embedded: EmbeddedStore | None = None
    uri = settings.mongodb_uri
    if not uri:
        loop = asyncio.get_running_loop()
        binary = await loop.run_in_executor(None, ferretdb_binary, settings.ferretdb_bin)
        embedded = EmbeddedStore(binary, settings.store_dir)
        await loop.run_in_executor(None, embedded.start)
        uri = embedded.uri
        log.info("embedded store started", extra={"port": embedded.port,
                                                   "data_dir": str(embedded.data_dir)})
    store = connect(uri, settings.mongodb_db)
    try:
        yield store
    finally:
        await store.close()
        if embedded is not None:
            embedded.stop()


async def serve(env: dict[str, str], demo: bool, ready: asyncio.Event | None = None) -> None:
    settings = Settings.from_env(env)
    fake_wechat_base = ""
    if demo:
        fake_wechat_base = await _start_demo_wechat(settings)
        settings = Settings.from_env({**env, "WECHAT_API_BASE": fake_wechat_base})
    async with open_store(settings) as store:
        await ensure_indexes(store.db)
        clock = SystemClock()
        wechat = WeChatClient(appid=settings.wechat_appid, secret=settings.wechat_secret.reveal(),
                              token_cache=StoreTokenCache(store.db),
                              api_base=settings.wechat_api_base,
                              timeout_s=settings.wechat_timeout_seconds)
        pay, fake_pay = await _wechatpay(settings, demo, clock)  # issue 4: fees, WeChat Pay
        services = build_services(settings, store, clock, wechat, pay)
        app = make_app(services)
        if demo:
            from server.demo import seed

            await seed(services)
        largest = max([settings.max_body_bytes] + [e.max_body_bytes or 0 for e in
                                                    services.extra["endpoints"]])
        server = tornado.httpserver.HTTPServer(app, xheaders=True, max_body_size=largest + 1)
        sockets = tornado.netutil.bind_sockets(settings.port, settings.host)
        server.add_sockets(sockets)
        port = sockets[0].getsockname()[1]
        if fake_pay is not None:  # the demo's fake WeChat Pay notifies this process
            fake_pay.notify_target_override = f"http://127.0.0.1:{port}"
        log.info("listening", extra={"host": settings.host, "port": port,
                                     "settings": settings.redacted()})
        if demo:
            _print_demo_help(settings.host, port, fake_wechat_base)
        else:
            print(f"listening on http://{settings.host}:{port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        background = _start_background(services)
        background.append(asyncio.create_task(run_pay_background(
            services.payments, services.refunds, services.reconciliation,
            settings.wechatpay_sweep_seconds)))
        if ready is not None:
            ready.set()
        await stop.wait()
        await _shutdown(server, services, background)
        await wechat.aclose()
        if pay is not None:
            await pay.aclose()


async def _shutdown(server: tornado.httpserver.HTTPServer, services: Services,
                    background: list[asyncio.Task[None]]) -> None:
    """Stop accepting, let in-flight requests finish (up to the grace period), then close."""
    log.info("shutting down", extra={"inflight": services.inflight.count})
    server.stop()
    for task in background:
        task.cancel()
    finished = await services.inflight.wait_idle(services.settings.shutdown_grace_seconds)
    if not finished:
        log.warning("grace period over with requests in flight",
                    extra={"inflight": services.inflight.count})
    await server.close_all_connections()


def _start_background(services: Services) -> list[asyncio.Task[None]]:
    async def sweep_sessions() -> None:
        while True:
            with contextlib.suppress(Exception):
                await services.sessions.sweep_expired()
            await asyncio.sleep(3600)

    return [asyncio.create_task(sweep_sessions()),
            asyncio.create_task(services.duties.sweep_forever()),
            asyncio.create_task(services.voting_jobs.run_forever()),
            # issue 6: webhook fan-out and delivery, under its own lease
            asyncio.create_task(services.webhooks.run_forever(
                services.settings.webhook_interval_seconds))]


async def _wechatpay(settings: Settings, demo: bool, clock: SystemClock) -> tuple[Any, Any]:
    """WeChat Pay client (and, in the demo, the in-process fake it talks to); None if off."""
    from server.fees_demo import start_demo_wechatpay, wechatpay_from_settings

    if demo and not settings.wechatpay_mchid:
        pay, fake = await start_demo_wechatpay(DEMO_DIR, settings.wechat_appid, clock)
        print(f"fake WeChat Pay at {fake.base_url}; after POST /api/mp/v1/orders pay with:\n"
              f"    curl -X POST {fake.base_url}/_fake/orders/OUT_TRADE_NO/pay", flush=True)
        return pay, fake
    return wechatpay_from_settings(settings, clock), None


async def _start_demo_wechat(settings: Settings) -> str:
    """The demo talks to the project's fake WeChat, in this process, on a loopback port."""
    from miniprogram_api.fake_wechat import FakeWeChat, make_fake_wechat_app

    fake = FakeWeChat(appid=settings.wechat_appid, secret=settings.wechat_secret.reveal())
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    tornado.httpserver.HTTPServer(make_fake_wechat_app(fake)).add_sockets(sockets)
    return f"http://127.0.0.1:{sockets[0].getsockname()[1]}"


def _print_demo_help(host: str, port: int, wechat: str) -> None:
    from server.demo import STAFF

    base = f"http://{host}:{port}"
    staff = "\n".join(f"    {u:<14} {p:<22} {n}" for u, p, n, _ in STAFF)
    print(f"""
智慧物业 demo is running at {base}   (Ctrl-C stops it; data stays in var/store)

  Health:   curl {base}/readyz
  API docs: curl {base}/openapi.json

  Staff sign-in (POST {base}/api/admin/v1/session):
    username       password               who
{staff}
    curl -s -X POST {base}/api/admin/v1/session -d '{{"username":"sg_committee","password":"Demo-committee-2026"}}'

  An owner in the mini-program (the fake WeChat is at {wechat}):
    code=$(curl -s -X POST {wechat}/_fake/login_code -d '{{"openid":"demo-owner-1"}}' | python3 -c 'import json,sys;print(json.load(sys.stdin)["code"])')
    curl -s -X POST {base}/api/mp/v1/session -d "{{\\"code\\":\\"$code\\"}}"
    # then verify the phone of roster owner 业主80-001 (13800000001) to bind the units:
    pcode=$(curl -s -X POST {wechat}/_fake/phone_code -d '{{"phone":"13800000001"}}' | python3 -c 'import json,sys;print(json.load(sys.stdin)["code"])')
    curl -s -X POST {base}/api/mp/v1/me/phone -H "Authorization: Bearer TOKEN" -d "{{\\"code\\":\\"$pcode\\"}}"
""", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__)
    parser.add_argument("--demo", action="store_true",
                        help="seed demo data and use the project's fake WeChat")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.demo:
        demo_environment(env)
    try:
        settings = Settings.from_env(env)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    try:
        asyncio.run(serve(env, args.demo))
    except EmbeddedStoreError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
