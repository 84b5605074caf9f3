"""WeChatClient against the fake WeChat server over real loopback HTTP."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import tornado.httpserver
import tornado.netutil
from PIL import Image

from miniprogram_api.fake_wechat import FakeError, FakeMode, FakeWeChat, make_fake_wechat_app
from miniprogram_api.wechat import (
    AccessTokenInvalid,
    CodeAlreadyUsed,
    InvalidCode,
    InvalidPage,
    InvalidScene,
    InvalidTemplate,
    InvalidTemplateData,
    MemoryTokenCache,
    PhoneInfo,
    RateLimited,
    SecSuggest,
    Session,
    SubscribeQuotaExhausted,
    UserNotRecent,
    WeChatBusy,
    WeChatClient,
    WeChatError,
    WeChatMisconfigured,
    WeChatUnavailable,
    validate_subscribe_data,
)

APPID = "wx0123456789abcdef"
SECRET = "s3cr3t-app-secret-value"
TEMPLATE = "tmpl-repair-done"


class FakeClock:
    """A settable aware-UTC clock shared by the fake and the client."""

    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Env:
    fake: FakeWeChat
    clock: FakeClock
    base_url: str
    cache: MemoryTokenCache

    def client(self, timeout_s: float = 2.0, secret: str = SECRET) -> WeChatClient:
        return WeChatClient(
            appid=APPID,
            secret=secret,
            token_cache=self.cache,
            api_base=self.base_url,
            timeout_s=timeout_s,
            clock=self.clock,
        )


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    clock = FakeClock()
    fake = FakeWeChat(appid=APPID, secret=SECRET, clock=clock)
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(make_fake_wechat_app(fake))
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    yield Env(fake, clock, f"http://127.0.0.1:{port}", MemoryTokenCache())
    server.stop()
    await server.close_all_connections()


@pytest.fixture
async def wx(env: Env) -> AsyncIterator[WeChatClient]:
    client = env.client()
    yield client
    await client.aclose()


async def login(env: Env, wx: WeChatClient, openid: str = "o-owner-1") -> Session:
    return await wx.code2session(env.fake.issue_login_code(openid))


# --------------------------------------------------------------------------- login


async def test_login_returns_openid_unionid_and_the_issued_session_key(env: Env, wx: WeChatClient):
    code = env.fake.issue_login_code("o-owner-1", unionid="u-owner-1")

    session = await wx.code2session(code)

    assert session.openid == "o-owner-1"
    assert session.unionid == "u-owner-1"
    assert session.session_key == env.fake.session_key_of("o-owner-1")


async def test_login_without_unionid_gives_none(env: Env, wx: WeChatClient):
    assert (await login(env, wx)).unionid is None


async def test_each_login_gets_a_fresh_session_key(env: Env, wx: WeChatClient):
    first, second = await login(env, wx), await login(env, wx)
    assert first.session_key != second.session_key


async def test_reused_login_code_raises_code_already_used(env: Env, wx: WeChatClient):
    code = env.fake.issue_login_code("o-owner-1")
    await wx.code2session(code)

    with pytest.raises(CodeAlreadyUsed) as caught:
        await wx.code2session(code)

    assert caught.value.errcode == 40163
    assert caught.value.code == "wechat_code_used"


async def test_unknown_login_code_raises_invalid_code(wx: WeChatClient):
    with pytest.raises(InvalidCode) as caught:
        await wx.code2session("no-such-code")
    assert caught.value.errcode == 40029


async def test_login_code_expires_after_five_minutes(env: Env, wx: WeChatClient):
    code = env.fake.issue_login_code("o-owner-1")
    env.clock.advance(minutes=5, seconds=1)

    with pytest.raises(InvalidCode):
        await wx.code2session(code)


async def test_wrong_secret_is_misconfiguration_and_the_secret_is_not_echoed(env: Env):
    async with env.client(secret="wrong-secret-value") as client:
        with pytest.raises(WeChatMisconfigured) as caught:
            await client.code2session(env.fake.issue_login_code("o-owner-1"))

    assert caught.value.errcode == 40125
    assert "wrong-secret-value" not in str(caught.value)


@pytest.mark.parametrize(
    ("errcode", "error_type", "code"),
    [(45011, RateLimited, "wechat_rate_limited"), (-1, WeChatBusy, "wechat_busy")],
)
async def test_login_rate_limit_and_busy_map_to_stable_codes(
    env: Env, wx: WeChatClient, errcode: int, error_type: type[WeChatError], code: str
):
    env.fake.fail_next("/sns/jscode2session", errcode)

    with pytest.raises(error_type) as caught:
        await login(env, wx)

    assert caught.value.code == code


def test_busy_is_a_kind_of_unavailable():
    assert issubclass(WeChatBusy, WeChatUnavailable)


# --------------------------------------------------------------------------- access token


async def test_token_is_cached_and_shared_by_clients_using_one_cache(env: Env):
    async with env.client() as first, env.client() as second:
        first_tokens = await asyncio.gather(*(first.get_access_token() for _ in range(5)))
        second_tokens = [await second.get_access_token() for _ in range(5)]

    assert len(set(first_tokens + second_tokens)) == 1
    assert env.fake.stable_token_calls == 1


async def test_clients_racing_on_an_empty_cache_converge_on_one_token(env: Env):
    async with env.client() as first, env.client() as second:
        tokens = await asyncio.gather(
            *(client.get_access_token() for client in (first, second) for _ in range(5))
        )

    assert len(set(tokens)) == 1
    assert env.fake.stable_token_calls <= 2  # one in-flight refresh per process


async def test_token_is_refreshed_five_minutes_before_it_expires(env: Env, wx: WeChatClient):
    first = await wx.get_access_token()
    env.clock.advance(seconds=7200 - 301)
    assert await wx.get_access_token() == first

    env.clock.advance(seconds=2)
    second = await wx.get_access_token()

    assert second != first
    assert env.fake.stable_token_calls == 2


async def test_force_refresh_gets_a_new_token_and_the_old_one_stops_working(
    env: Env, wx: WeChatClient
):
    old = await wx.get_access_token()

    new = await wx.get_access_token(force_refresh=True)

    assert new != old
    cached = await env.cache.get(APPID)
    assert cached is not None and cached.token == new
    with pytest.raises(FakeError) as rejected:
        env.fake.check_token(old)
    assert rejected.value.errcode == 40001


async def test_rejected_token_is_invalidated_and_the_call_retried_once(
    env: Env, wx: WeChatClient
):
    old = await wx.get_access_token()
    env.fake.revoke_access_token(old)

    phone = await wx.get_phone_number(env.fake.register_phone_code("13800138000"))

    assert phone.pure_phone_number == "13800138000"
    assert env.fake.stable_token_calls == 2
    cached = await env.cache.get(APPID)
    assert cached is not None and cached.token == env.fake.current_access_token


async def test_rejected_token_still_handed_out_escalates_to_a_forced_refresh(
    env: Env, wx: WeChatClient
):
    old = await wx.get_access_token()
    env.fake.revoke_access_token(old, still_issued=True)

    await wx.get_phone_number(env.fake.register_phone_code("13800138000"))

    assert env.fake.stable_token_calls == 3  # first, normal (same token), forced
    assert env.fake.current_access_token != old


async def test_token_rejected_twice_raises_access_token_invalid(env: Env, wx: WeChatClient):
    await wx.get_access_token()
    env.fake.fail_next("/wxa/business/getuserphonenumber", 40001)
    env.fake.fail_next("/wxa/business/getuserphonenumber", 40001)

    with pytest.raises(AccessTokenInvalid) as caught:
        await wx.get_phone_number(env.fake.register_phone_code("13800138000"))

    assert caught.value.code == "wechat_access_token_invalid"


def test_fake_stable_token_follows_normal_and_force_refresh_rules():
    clock = FakeClock()
    fake = FakeWeChat(appid=APPID, secret=SECRET, clock=clock)
    body = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}

    first = fake.stable_token(body)
    clock.advance(seconds=100)
    again = fake.stable_token(body)
    forced = fake.stable_token({**body, "force_refresh": True})
    clock.advance(seconds=10)
    forced_too_soon = fake.stable_token({**body, "force_refresh": True})

    assert first["expires_in"] == 7200
    assert again == {"access_token": first["access_token"], "expires_in": 7100}
    assert forced["access_token"] != first["access_token"]
    assert forced_too_soon["access_token"] == forced["access_token"]
    assert fake.stable_token_calls == 4


# --------------------------------------------------------------------------- phone number


async def test_phone_number_is_returned_for_a_phone_code(env: Env, wx: WeChatClient):
    code = env.fake.register_phone_code("13800138000", openid="o-owner-1")

    phone = await wx.get_phone_number(code, openid="o-owner-1")

    assert phone == PhoneInfo("13800138000", "13800138000", "86")


async def test_phone_code_is_single_use(env: Env, wx: WeChatClient):
    code = env.fake.register_phone_code("13800138000")
    await wx.get_phone_number(code)

    with pytest.raises(InvalidCode):
        await wx.get_phone_number(code)


# --------------------------------------------------------------------------- subscribe


async def test_subscribe_message_uses_one_acceptance_then_hits_43101(env: Env, wx: WeChatClient):
    env.fake.grant_subscribe("o-owner-1", TEMPLATE)
    data = {"thing1": "3号楼电梯维修已完成", "time2": "2025-03-01 10:30", "phrase3": "已完成"}

    await wx.send_subscribe_message("o-owner-1", TEMPLATE, data, page="pages/index/index")
    with pytest.raises(SubscribeQuotaExhausted) as caught:
        await wx.send_subscribe_message("o-owner-1", TEMPLATE, data)

    assert caught.value.errcode == 43101
    assert caught.value.code == "wechat_subscribe_quota_exhausted"
    [sent] = env.fake.sent_messages
    assert (sent.openid, sent.data, sent.page) == ("o-owner-1", data, "pages/index/index")


async def test_unknown_template_raises_invalid_template(env: Env, wx: WeChatClient):
    env.fake.grant_subscribe("o-owner-1", TEMPLATE)
    with pytest.raises(InvalidTemplate):
        await wx.send_subscribe_message("o-owner-1", "other-template", {"thing1": "x"})


async def test_overlong_field_is_refused_before_sending(env: Env, wx: WeChatClient):
    env.fake.grant_subscribe("o-owner-1", TEMPLATE)

    with pytest.raises(InvalidTemplateData) as caught:
        await wx.send_subscribe_message("o-owner-1", TEMPLATE, {"thing1": "长" * 21})

    assert caught.value.errcode is None
    assert "thing1" in str(caught.value)
    assert env.fake.sent_messages == []
    assert env.fake.quota("o-owner-1", TEMPLATE) == 1


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("thing1", "长" * 20),
        ("number2", "3.14"),
        ("letter3", "A" * 32),
        ("symbol4", "%%"),
        ("character_string5", "ORDER-2025-0001"),
        ("time6", "15:01"),
        ("time7", "2019年10月1日 15:01"),
        ("date8", "2019-10-01"),
        ("date9", "2019年10月1日 ~ 2019年10月3日"),
        ("amount10", "¥12.50"),
        ("amount11", "100元"),
        ("phone_number12", "+86-0766-66888866"),
        ("car_number13", "粤A8Z888挂"),
        ("name14", "张" * 10),
        ("name15", "A" * 20),
        ("phrase16", "配送中"),
        ("enum17", "anything"),
    ],
)
def test_subscribe_values_within_their_type_limits_pass(key: str, value: str):
    validate_subscribe_data({key: value})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("thing1", "长" * 21),
        ("thing1", "two\nlines"),
        ("thing1", ""),
        ("number2", "12a"),
        ("number2", "1" * 33),
        ("letter3", "abc1"),
        ("symbol4", "%%%%%%"),
        ("character_string5", "北京"),
        ("character_string5", "x" * 33),
        ("time6", "明天"),
        ("date8", "soon"),
        ("amount10", "¥12345678901"),
        ("phone_number12", "1" * 18),
        ("car_number13", "粤A8Z8888挂"),
        ("name14", "张" * 11),
        ("name15", "A" * 21),
        ("phrase16", "正在配送中啊"),
        ("phrase16", "ok"),
        ("nonsense", "x"),
    ],
)
def test_subscribe_values_breaking_their_type_limits_fail(key: str, value: str):
    with pytest.raises(InvalidTemplateData):
        validate_subscribe_data({key: value})


# --------------------------------------------------------------------------- wxacode


async def test_wxacode_returns_a_png_of_the_requested_width(env: Env, wx: WeChatClient):
    image_bytes = await wx.get_wxacode_unlimit("b=42&c=7", "pages/ballot/detail", width=280)

    image = Image.open(io.BytesIO(image_bytes))
    assert image.format == "PNG"
    assert image.size == (280, 280)


async def test_wxacode_for_unpublished_page_with_check_path_raises_invalid_page(
    wx: WeChatClient,
):
    with pytest.raises(InvalidPage) as caught:
        await wx.get_wxacode_unlimit("b=42", "pages/not/there", check_path=True)
    assert caught.value.errcode == 41030


@pytest.mark.parametrize("scene", ["", "x" * 33, "id=中文", "a%20b"])
async def test_wxacode_bad_scene_is_refused_locally(env: Env, wx: WeChatClient, scene: str):
    with pytest.raises(InvalidScene):
        await wx.get_wxacode_unlimit(scene, "pages/index/index")
    assert env.fake.stable_token_calls == 0


async def test_fake_wxacode_answers_json_errors_for_bad_scenes(env: Env, wx: WeChatClient):
    token = await wx.get_access_token()
    url = f"{env.base_url}/wxa/getwxacodeunlimit"
    async with httpx.AsyncClient() as raw:
        too_long = await raw.post(url, params={"access_token": token}, json={"scene": "x" * 33})
        bad_char = await raw.post(url, params={"access_token": token}, json={"scene": "a%b"})

    assert too_long.json()["errcode"] == 40169
    assert bad_char.json()["errcode"] == 40129
    assert too_long.headers["content-type"].startswith("application/json")


# --------------------------------------------------------------------------- msg_sec_check


@pytest.mark.parametrize(
    ("content", "suggest", "label"),
    [
        ("楼道灯坏了，请尽快维修", SecSuggest.PASS, 100),
        ("这里有推广链接", SecSuggest.REVIEW, 10001),
        ("违禁词出现了", SecSuggest.RISKY, 20006),
    ],
)
async def test_msg_sec_check_suggests_pass_review_or_risky(
    env: Env, wx: WeChatClient, content: str, suggest: SecSuggest, label: int
):
    env.fake.flag_word_for_review("推广", label=10001)
    env.fake.ban_word("违禁词")
    session = await login(env, wx)

    result = await wx.msg_sec_check(session.openid, content, scene=2)

    assert (result.suggest, result.label) == (suggest, label)
    assert result.trace_id


async def test_msg_sec_check_for_user_never_seen_raises_61010(wx: WeChatClient):
    with pytest.raises(UserNotRecent) as caught:
        await wx.msg_sec_check("o-stranger", "你好")
    assert caught.value.errcode == 61010


async def test_msg_sec_check_two_hours_after_last_visit_raises_61010(env: Env, wx: WeChatClient):
    session = await login(env, wx)
    env.clock.advance(hours=2, seconds=1)

    with pytest.raises(UserNotRecent):
        await wx.msg_sec_check(session.openid, "你好")


# --------------------------------------------------------------------------- faults


async def test_slow_wechat_raises_unavailable_within_the_timeout(env: Env):
    env.fake.delay_s = 0.6
    async with env.client(timeout_s=0.2) as client:
        started = time.monotonic()
        with pytest.raises(WeChatUnavailable) as caught:
            await client.code2session(env.fake.issue_login_code("o-owner-1"))
        elapsed = time.monotonic() - started

    assert elapsed < 0.5
    assert caught.value.errcode is None
    assert SECRET not in str(caught.value)
    env.fake.delay_s = 0
    await asyncio.sleep(0.6)  # let the delayed handler finish before the server stops


@pytest.mark.parametrize("mode", [FakeMode.UNAVAILABLE, FakeMode.DROP])
async def test_wechat_down_raises_unavailable(env: Env, wx: WeChatClient, mode: FakeMode):
    env.fake.mode = mode
    with pytest.raises(WeChatUnavailable) as caught:
        await wx.get_access_token()
    assert caught.value.code == "wechat_unavailable"


# --------------------------------------------------------------------------- secrecy


async def test_session_key_secret_and_token_never_appear_in_reprs_errors_or_logs(
    env: Env, wx: WeChatClient, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    code = env.fake.issue_login_code("o-owner-1", unionid="u-1")
    session = await wx.code2session(code)
    token = await wx.get_access_token()
    phone = await wx.get_phone_number(env.fake.register_phone_code("13800138000"))
    errors: list[Exception] = []
    for bad_call in (
        wx.code2session(code),
        wx.code2session("unknown"),
        wx.send_subscribe_message(session.openid, TEMPLATE, {"thing1": "x"}),
        wx.msg_sec_check("o-stranger", "hi"),
    ):
        with pytest.raises(WeChatError) as caught:
            await bad_call
        errors.append(caught.value)
    cached = await env.cache.get(APPID)

    texts = [repr(session), str(session), repr(phone), repr(cached), repr(wx), caplog.text]
    texts += [text for error in errors for text in (repr(error), str(error))]
    for text in texts:
        for secret in (session.session_key, SECRET, token, code):
            assert secret not in text
    assert "access_token=***" in caplog.text
