"""A fake WeChat API server speaking the real mini-program endpoints, for tests and demos."""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import logging
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import qrcode
import tornado.web
from tornado.log import access_log

from miniprogram_api.wechat import (
    MAX_SEC_CHECK_CHARS,
    Clock,
    WeChatError,
    redact_query_secrets,
    utc_now,
    validate_subscribe_data,
)

LOGIN_CODE_TTL = timedelta(minutes=5)
PHONE_CODE_TTL = timedelta(minutes=5)
TOKEN_TTL = timedelta(seconds=7200)
# stable_token normal mode issues a new token in the old one's last 5 minutes.
TOKEN_ROLLOVER = timedelta(minutes=5)
FORCE_REFRESH_SPACING = timedelta(seconds=30)
FORCE_REFRESH_PER_DAY = 20
SEC_CHECK_RECENT = timedelta(hours=2)
SCENE_CHARS = frozenset(string.digits + string.ascii_letters + "!#$&'()*+,/:;=?@-._~")


class FakeMode(StrEnum):
    """How the fake answers every request."""

    UP = "up"
    UNAVAILABLE = "unavailable"  # HTTP 503
    DROP = "drop"  # close the connection without a reply


class FakeError(Exception):
    """A WeChat errcode reply the fake sends back."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(errmsg)
        self.errcode = errcode
        self.errmsg = errmsg


@dataclass
class _Code:
    openid: str | None
    value: str  # unionid for login codes, phone for phone codes
    issued_at: datetime
    used: bool = False
    country_code: str = "86"


@dataclass
class _Token:
    value: str
    expires_at: datetime
    revoked: bool = False
    still_issued: bool = False


@dataclass(frozen=True)
class SentMessage:
    """One subscribe message the fake accepted."""

    openid: str
    template_id: str
    data: dict[str, str]
    page: str | None
    state: str
    sent_at: datetime


@dataclass
class FakeWeChat:
    """State and controls of the fake WeChat API; tests drive it directly."""

    appid: str = "wxfakeappid0000001"
    secret: str = "fake-secret"
    clock: Clock = utc_now
    mode: FakeMode = FakeMode.UP
    delay_s: float = 0.0
    published_pages: set[str] = field(default_factory=lambda: {"pages/index/index"})
    stable_token_calls: int = 0
    sent_messages: list[SentMessage] = field(default_factory=list)
    _login_codes: dict[str, _Code] = field(default_factory=dict)
    _phone_codes: dict[str, _Code] = field(default_factory=dict)
    _tokens: dict[str, _Token] = field(default_factory=dict)
    _current_token: str | None = None
    _force_refreshes: list[datetime] = field(default_factory=list)
    _last_seen: dict[str, datetime] = field(default_factory=dict)
    _session_keys: dict[str, str] = field(default_factory=dict)
    _quota: dict[tuple[str, str], int] = field(default_factory=dict)
    _templates: set[str] = field(default_factory=set)
    _risky_words: dict[str, int] = field(default_factory=dict)
    _review_words: dict[str, int] = field(default_factory=dict)
    _next_failures: dict[str, list[int]] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"FakeWeChat(appid={self.appid!r}, mode={self.mode.value!r})"

    # ---- controls

    def issue_login_code(self, openid: str, unionid: str | None = None) -> str:
        """Mint a wx.login code for `openid` (single use, valid 5 minutes)."""
        code = secrets.token_hex(16)
        self._login_codes[code] = _Code(openid, unionid or "", self.clock())
        return code

    def register_phone_code(
        self, phone: str, openid: str | None = None, country_code: str = "86"
    ) -> str:
        """Mint a getPhoneNumber code that reveals `phone` (single use, valid 5 minutes)."""
        code = secrets.token_hex(16)
        self._phone_codes[code] = _Code(openid, phone, self.clock(), country_code=country_code)
        return code

    def grant_subscribe(self, openid: str, template_id: str, times: int = 1) -> None:
        """Record that the user accepted `template_id` `times` more times."""
        self._templates.add(template_id)
        key = (openid, template_id)
        self._quota[key] = self._quota.get(key, 0) + times

    def quota(self, openid: str, template_id: str) -> int:
        """Remaining accepted sends for (openid, template)."""
        return self._quota.get((openid, template_id), 0)

    def touch_user(self, openid: str) -> None:
        """Mark the user as having opened the mini-program now (login does this too)."""
        self._last_seen[openid] = self.clock()

    def session_key_of(self, openid: str) -> str | None:
        """The session_key of the user's latest login."""
        return self._session_keys.get(openid)

    def ban_word(self, word: str, label: int = 20006) -> None:
        """Make msg_sec_check answer risky for text containing `word`."""
        self._risky_words[word] = label

    def flag_word_for_review(self, word: str, label: int = 21000) -> None:
        """Make msg_sec_check answer review for text containing `word`."""
        self._review_words[word] = label

    def fail_next(self, path: str, errcode: int) -> None:
        """Answer the next request to `path` with `errcode` (e.g. -1 busy, 45011)."""
        self._next_failures.setdefault(path, []).append(errcode)

    @property
    def current_access_token(self) -> str | None:
        """The token stable_token normal mode would hand out now."""
        return self._current_token

    def revoke_access_token(self, token: str | None = None, *, still_issued: bool = False) -> None:
        """Make APIs answer 40001 for `token` (default: the current one).

        still_issued=True keeps stable_token's normal mode returning it (only a force
        refresh replaces it), to exercise the client's escalation path.
        """
        value = token or self._current_token
        if value is None or value not in self._tokens:
            return
        self._tokens[value].revoked = True
        self._tokens[value].still_issued = still_issued

    # ---- stable_token

    def stable_token(self, body: dict[str, Any]) -> dict[str, Any]:
        self.stable_token_calls += 1
        if body.get("grant_type") != "client_credential":
            raise FakeError(40002, "invalid grant_type")
        self._check_app(str(body.get("appid", "")), str(body.get("secret", "")))
        now = self.clock()
        if body.get("force_refresh") is True:
            token = self._force_refresh(now)
        else:
            token = self._normal_token(now)
        expires_in = int((token.expires_at - now).total_seconds())
        return {"access_token": token.value, "expires_in": expires_in}

    def _normal_token(self, now: datetime) -> _Token:
        current = self._tokens.get(self._current_token or "")
        if current is not None and current.revoked and current.still_issued:
            return current
        if current is None or current.revoked or current.expires_at - TOKEN_ROLLOVER <= now:
            current = self._mint_token(now)  # the old one stays valid until it expires
        return current

    def _force_refresh(self, now: datetime) -> _Token:
        today = [t for t in self._force_refreshes if now - t < timedelta(days=1)]
        if len(today) >= FORCE_REFRESH_PER_DAY:
            raise FakeError(45009, "reach max api daily quota limit")
        current = self._tokens.get(self._current_token or "")
        if current is not None and today and now - today[-1] < FORCE_REFRESH_SPACING:
            return current  # docs: force mode calls closer than 30 s apart do not refresh
        self._force_refreshes = [*today, now]
        if current is not None:
            current.revoked = True  # force mode invalidates the previous token
        return self._mint_token(now)

    def _mint_token(self, now: datetime) -> _Token:
        token = _Token(secrets.token_urlsafe(48), now + TOKEN_TTL)
        self._tokens[token.value] = token
        self._current_token = token.value
        return token

    def check_token(self, value: str | None) -> None:
        if not value:
            raise FakeError(41001, "access_token missing")
        token = self._tokens.get(value)
        if token is None or token.revoked:
            raise FakeError(40001, "invalid credential, access_token is invalid or not latest")
        if token.expires_at <= self.clock():
            raise FakeError(42001, "access_token expired")

    def _check_app(self, appid: str, secret: str) -> None:
        if appid != self.appid:
            raise FakeError(40013, "invalid appid")
        if secret != self.secret:
            raise FakeError(40125, "invalid appsecret")

    def pop_failure(self, path: str) -> int | None:
        queued = self._next_failures.get(path)
        return queued.pop(0) if queued else None

    # ---- mini-program endpoints

    def jscode2session(self, args: dict[str, str]) -> dict[str, Any]:
        self._check_app(args.get("appid", ""), args.get("secret", ""))
        if args.get("grant_type") != "authorization_code":
            raise FakeError(40002, "invalid grant_type")
        code = self._login_codes.get(args.get("js_code", ""))
        if code is None or self.clock() - code.issued_at > LOGIN_CODE_TTL:
            raise FakeError(40029, "invalid code")
        if code.used:
            raise FakeError(40163, "code been used")
        code.used = True
        assert code.openid is not None
        session_key = base64.b64encode(secrets.token_bytes(16)).decode()
        self._session_keys[code.openid] = session_key
        self.touch_user(code.openid)
        reply = {"openid": code.openid, "session_key": session_key}
        if code.value:
            reply["unionid"] = code.value
        return reply

    def get_phone_number(self, body: dict[str, Any]) -> dict[str, Any]:
        code = self._phone_codes.get(str(body.get("code", "")))
        if code is None or code.used or self.clock() - code.issued_at > PHONE_CODE_TTL:
            raise FakeError(40029, "invalid code")
        openid = body.get("openid")
        if openid is not None and code.openid is not None and openid != code.openid:
            raise FakeError(40003, "invalid openid")
        code.used = True
        return {
            "phone_info": {
                "phoneNumber": code.value,
                "purePhoneNumber": code.value,
                "countryCode": code.country_code,
                "watermark": {"timestamp": int(self.clock().timestamp()), "appid": self.appid},
            }
        }

    def send_subscribe(self, body: dict[str, Any]) -> dict[str, Any]:
        openid, template_id = str(body.get("touser", "")), str(body.get("template_id", ""))
        if not openid or (openid not in self._last_seen and not self._has_grant(openid)):
            raise FakeError(40003, "invalid openid")
        if template_id not in self._templates:
            raise FakeError(40037, "invalid template_id")
        data = {k: str(v.get("value", "")) for k, v in dict(body.get("data") or {}).items()}
        try:
            validate_subscribe_data(data)
        except WeChatError as exc:
            raise FakeError(47003, f"argument invalid! {exc.errmsg}") from None
        if self.quota(openid, template_id) <= 0:
            raise FakeError(43101, "user refuse to accept the msg")
        self._quota[(openid, template_id)] -= 1
        state = str(body.get("miniprogram_state", "formal"))
        message = SentMessage(openid, template_id, data, body.get("page"), state, self.clock())
        self.sent_messages.append(message)
        return {}

    def _has_grant(self, openid: str) -> bool:
        return any(o == openid for o, _ in self._quota)

    def check_wxacode(self, body: dict[str, Any]) -> tuple[str, int]:
        scene = body.get("scene")
        if not isinstance(scene, str) or not 1 <= len(scene) <= 32:
            raise FakeError(40169, "invalid length for scene, or the data is not json string")
        if not set(scene) <= SCENE_CHARS:
            raise FakeError(40129, "invalid scene")
        page = str(body.get("page", "pages/index/index"))
        if page.startswith("/") or "?" in page:
            raise FakeError(41030, "invalid page")
        if body.get("check_path", True) and page not in self.published_pages:
            raise FakeError(41030, "invalid page")
        width = body.get("width", 430)
        if not isinstance(width, int) or not 280 <= width <= 1280:
            raise FakeError(40097, "invalid args")
        if body.get("env_version", "release") not in ("release", "trial", "develop"):
            raise FakeError(40097, "invalid args")
        return scene, width

    def msg_sec_check(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("version") not in (2, "2") or body.get("scene") not in (1, 2, 3, 4):
            raise FakeError(40097, "invalid args")
        content = str(body.get("content", ""))
        if not content or len(content) > MAX_SEC_CHECK_CHARS:
            raise FakeError(40097, "invalid args")
        seen = self._last_seen.get(str(body.get("openid", "")))
        if seen is None or self.clock() - seen > SEC_CHECK_RECENT:
            raise FakeError(61010, "user in invalid status: not visited in the last 2 hours")
        suggest, label, keyword = "pass", 100, None
        for word, word_label in self._review_words.items():
            if word in content:
                suggest, label, keyword = "review", word_label, word
        for word, word_label in self._risky_words.items():
            if word in content:
                suggest, label, keyword = "risky", word_label, word
        detail: list[dict[str, Any]] = [
            {"strategy": "content_model", "errcode": 0, "suggest": suggest, "label": label,
             "prob": 90 if suggest != "pass" else 0},
            {"strategy": "keyword", "errcode": 0, **({"keyword": keyword} if keyword else {})},
        ]
        return {
            "result": {"suggest": suggest, "label": label},
            "detail": detail,
            "trace_id": secrets.token_hex(12),
        }


def render_code_png(scene: str, width: int) -> bytes:
    """Render a PNG QR code carrying `scene`, `width` pixels wide (blocking; use an executor)."""
    image = qrcode.make(scene).get_image().convert("L").resize((width, width))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


# --------------------------------------------------------------------------- handlers


class _FakeHandler(tornado.web.RequestHandler):
    """Applies fault controls and turns FakeError into WeChat's JSON error shape."""

    fake: FakeWeChat

    def initialize(self, fake: FakeWeChat) -> None:
        self.fake = fake

    async def prepare(self) -> None:
        if self.fake.delay_s:
            await asyncio.sleep(self.fake.delay_s)
        if self.fake.mode is FakeMode.DROP:
            self.detach().close()
        elif self.fake.mode is FakeMode.UNAVAILABLE:
            self.set_status(503)
            self.finish("service unavailable")
        else:
            errcode = self.fake.pop_failure(self.request.path)
            if errcode is not None:
                self.reply({"errcode": errcode, "errmsg": "injected failure"})

    def body_json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError:
            raise FakeError(47001, "data format error") from None
        if not isinstance(data, dict):
            raise FakeError(47001, "data format error")
        return data

    def reply(self, data: dict[str, Any]) -> None:
        data = {"errcode": 0, "errmsg": "ok", **data}
        self.set_header("Content-Type", "application/json; encoding=utf-8")
        self.finish(json.dumps(data, ensure_ascii=False))

    def check_token(self) -> None:
        self.fake.check_token(self.get_query_argument("access_token", None))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None))[1]
        if isinstance(error, FakeError):  # WeChat reports errors as HTTP 200 + errcode
            self.set_status(200)
            rid = secrets.token_hex(8)
            self.reply({"errcode": error.errcode, "errmsg": f"{error.errmsg}, rid: {rid}"})
        else:
            super().write_error(status_code, **kwargs)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if not isinstance(value, FakeError):
            super().log_exception(typ, value, tb)


class Code2SessionHandler(_FakeHandler):
    def get(self) -> None:
        args = {k: self.get_query_argument(k, "") for k in self.request.query_arguments}
        self.reply(self.fake.jscode2session(args))


class StableTokenHandler(_FakeHandler):
    def post(self) -> None:
        self.reply(self.fake.stable_token(self.body_json()))


class PhoneNumberHandler(_FakeHandler):
    def post(self) -> None:
        self.check_token()
        self.reply(self.fake.get_phone_number(self.body_json()))


class SubscribeSendHandler(_FakeHandler):
    def post(self) -> None:
        self.check_token()
        self.reply(self.fake.send_subscribe(self.body_json()))


class WxaCodeHandler(_FakeHandler):
    async def post(self) -> None:
        self.check_token()
        scene, width = self.fake.check_wxacode(self.body_json())
        loop = asyncio.get_running_loop()
        png = await loop.run_in_executor(None, render_code_png, scene, width)
        self.set_header("Content-Type", "image/png")
        self.finish(png)


class MsgSecCheckHandler(_FakeHandler):
    def post(self) -> None:
        self.check_token()
        self.reply(self.fake.msg_sec_check(self.body_json()))


class ControlHandler(_FakeHandler):
    """POST /_fake/<action> with a JSON body: drive the fake over HTTP during a demo run."""

    async def prepare(self) -> None:
        pass  # faults apply to the WeChat endpoints only, never to the controls

    def post(self, action: str) -> None:
        control = _CONTROLS.get(action)
        if control is None:
            raise tornado.web.HTTPError(404)
        try:
            self.reply(control(self.fake, self.body_json()))
        except (KeyError, TypeError, ValueError) as exc:
            raise FakeError(40097, f"invalid args: {exc}") from None


def _state(fake: FakeWeChat, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "stable_token_calls": fake.stable_token_calls,
        "sent_messages": [
            {"openid": m.openid, "template_id": m.template_id, "data": m.data}
            for m in fake.sent_messages
        ],
    }


def _set_faults(fake: FakeWeChat, body: dict[str, Any]) -> dict[str, Any]:
    fake.mode = FakeMode(body.get("mode", fake.mode))
    fake.delay_s = float(body.get("delay_s", fake.delay_s))
    return {"mode": fake.mode.value, "delay_s": fake.delay_s}


def _grant(fake: FakeWeChat, body: dict[str, Any]) -> dict[str, Any]:
    fake.grant_subscribe(body["openid"], body["template_id"], int(body.get("times", 1)))
    return {"quota": fake.quota(body["openid"], body["template_id"])}


def _ban_word(fake: FakeWeChat, body: dict[str, Any]) -> dict[str, Any]:
    fake.ban_word(body["word"])
    return {}


def _review_word(fake: FakeWeChat, body: dict[str, Any]) -> dict[str, Any]:
    fake.flag_word_for_review(body["word"])
    return {}


_CONTROLS: dict[str, Callable[[FakeWeChat, dict[str, Any]], dict[str, Any]]] = {
    "login_code": lambda f, b: {"code": f.issue_login_code(b["openid"], b.get("unionid"))},
    "phone_code": lambda f, b: {"code": f.register_phone_code(b["phone"], b.get("openid"))},
    "grant_subscribe": _grant,
    "ban_word": _ban_word,
    "review_word": _review_word,
    "faults": _set_faults,
    "state": _state,
}


def _log_request(handler: tornado.web.RequestHandler) -> None:
    # Like tornado's default access log, but without the secrets carried in query strings.
    request = handler.request
    path = redact_query_secrets(request.path + ("?" + request.query if request.query else ""))
    elapsed_ms = 1000.0 * request.request_time()
    status = handler.get_status()
    access_log.info(
        "%d %s %s (%s) %.2fms", status, request.method, path, request.remote_ip, elapsed_ms
    )


def make_fake_wechat_app(fake: FakeWeChat) -> tornado.web.Application:
    """Build the Tornado app serving `fake` on WeChat's real paths."""
    args = {"fake": fake}
    return tornado.web.Application(
        [
            (r"/sns/jscode2session", Code2SessionHandler, args),
            (r"/cgi-bin/stable_token", StableTokenHandler, args),
            (r"/wxa/business/getuserphonenumber", PhoneNumberHandler, args),
            (r"/cgi-bin/message/subscribe/send", SubscribeSendHandler, args),
            (r"/wxa/getwxacodeunlimit", WxaCodeHandler, args),
            (r"/wxa/msg_sec_check", MsgSecCheckHandler, args),
            (r"/_fake/(\w+)", ControlHandler, args),
        ],
        log_function=_log_request,
    )


async def _serve(port: int, host: str, fake: FakeWeChat) -> None:
    make_fake_wechat_app(fake).listen(port, address=host)
    print(f"fake WeChat on http://{host}:{port} appid={fake.appid}", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    """Run the fake on a loopback port: python -m miniprogram_api.fake_wechat --port N."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--appid", default=FakeWeChat.appid)
    parser.add_argument("--secret", default=FakeWeChat.secret)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    fake = FakeWeChat(appid=args.appid, secret=args.secret)
    try:
        asyncio.run(_serve(args.port, args.host, fake))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
