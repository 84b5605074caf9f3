"""Test session: one real FerretDB over the wire, a fresh database per test, the real app."""

from __future__ import annotations

import base64
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import tornado.httpserver
import tornado.netutil

from miniprogram_api.fake_wechat import FakeWeChat, make_fake_wechat_app
from miniprogram_api.wechat import WeChatClient
from server.app import make_app
from server.clock import ManualClock
from server.db import Store, connect, ensure_indexes
from server.embedded import EmbeddedStore, ferretdb_binary
from server.keys import write_new_keyring
from server.services import Services, build_services
from server.wechat_tokens import StoreTokenCache
from settings import Settings
from tests.apiclient import Api

APPID = "wxtest00000000001"
SECRET = "test-secret-" + secrets.token_hex(8)
KEYS_FILE = Path(tempfile.mkdtemp(prefix="keys-")) / "keys.json"
write_new_keyring(KEYS_FILE)  # generated per test run; no key material is committed


def make_env(**overrides: str) -> dict[str, str]:
    """Settings for a test app: generated keys, nothing from the developer's environment."""
    env = {
        "WECHAT_APPID": APPID, "WECHAT_SECRET": SECRET,
        "ID_HASH_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "FIELD_ENC_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "SIGNING_KEYS_FILE": str(KEYS_FILE), "MAX_BODY_BYTES": "65536",
        # Ballots run for weeks of test-clock time; sessions must outlive them.
        "SESSION_TTL_SECONDS": str(60 * 86400), "ADMIN_SESSION_TTL_SECONDS": str(60 * 86400), "WECHAT_TIMEOUT_SECONDS": "2", "LOGIN_MAX_FAILURES": "3",
    }
    env.update(overrides)
    return env


@pytest.fixture(scope="session")
def store_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStore | str]:
    """TEST_MONGODB_URI if given (a real MongoDB); otherwise an embedded FerretDB."""
    uri = os.environ.get("TEST_MONGODB_URI")
    if uri:
        yield uri
        return
    store = EmbeddedStore(ferretdb_binary(os.environ.get("FERRETDB_BIN", "")),
                          tmp_path_factory.mktemp("ferretdb"))
    store.start()
    yield store
    store.stop()


@pytest.fixture(scope="session")
def store_uri(store_server: EmbeddedStore | str) -> str:
    return store_server if isinstance(store_server, str) else store_server.uri


@pytest.fixture
async def store(store_uri: str) -> AsyncIterator[Store]:
    name = "t_" + secrets.token_hex(6)
    s = connect(store_uri, name)
    await ensure_indexes(s.db)
    yield s
    try:
        await s.client.drop_database(name)
    finally:
        await s.close()


@pytest.fixture
def clock() -> ManualClock:
    now = datetime.now(UTC)
    return ManualClock(now.replace(microsecond=now.microsecond // 1000 * 1000))


async def serve_app(app: Any) -> tuple[tornado.httpserver.HTTPServer, str]:
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(app, xheaders=True, max_body_size=64 * 1024 * 1024)
    server.add_sockets(sockets)
    return server, f"http://127.0.0.1:{sockets[0].getsockname()[1]}"


@pytest.fixture
async def fake_wechat(clock: ManualClock) -> AsyncIterator[tuple[FakeWeChat, str]]:
    fake = FakeWeChat(appid=APPID, secret=SECRET, clock=clock.now)
    server, base = await serve_app(make_fake_wechat_app(fake))
    yield fake, base
    server.stop()
    await server.close_all_connections()


@pytest.fixture
async def services(store: Store, clock: ManualClock,
                   fake_wechat: tuple[FakeWeChat, str]) -> AsyncIterator[Services]:
    settings = Settings.from_env(make_env(WECHAT_API_BASE=fake_wechat[1]))
    wechat = WeChatClient(appid=APPID, secret=SECRET, token_cache=StoreTokenCache(store.db),
                          api_base=fake_wechat[1], timeout_s=2, clock=clock.now)
    yield build_services(settings, store, clock, wechat)
    await wechat.aclose()


@pytest.fixture
async def api(services: Services, fake_wechat: tuple[FakeWeChat, str]) -> AsyncIterator[Api]:
    server, base = await serve_app(make_app(services))
    client = Api(base, services, fake_wechat[0])
    yield client
    await client.aclose()
    server.stop()
    await server.close_all_connections()


@pytest.fixture
def data_dir() -> Path:
    return Path(__file__).parent / "data"
