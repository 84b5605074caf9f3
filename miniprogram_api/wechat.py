"""Async client for the WeChat mini-program server APIs (login, token, phone, messages, codes)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

import httpx

DEFAULT_API_BASE = "https://api.weixin.qq.com"
# stable_token hands out a new token in the last 5 minutes of the old one's life
# (getStableAccessToken docs: "普通模式下平台会提前5分钟更新access_token"), so refresh then.
TOKEN_REFRESH_MARGIN = timedelta(minutes=5)
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})
MAX_SEC_CHECK_CHARS = 2500

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


# --------------------------------------------------------------------------- errors


class WeChatError(Exception):
    """WeChat refused a call; `errcode` is WeChat's (None when we refused it locally)."""

    code = "wechat_error"

    def __init__(self, errcode: int | None, errmsg: str) -> None:
        self.errcode = errcode
        self.errmsg = errmsg
        super().__init__(f"{self.code} (errcode={errcode}): {errmsg}")


class WeChatUnavailable(WeChatError):
    """WeChat could not be reached in time: timeout, connection error, 5xx, garbled reply."""

    code = "wechat_unavailable"


class WeChatBusy(WeChatUnavailable):
    """WeChat answered -1 (system busy); retry later."""

    code = "wechat_busy"


class WeChatMisconfigured(WeChatError):
    """Our appid/secret or IP whitelist is wrong (40013, 40125, 40164, 41002, 41004)."""

    code = "wechat_misconfigured"


class AccessTokenInvalid(WeChatError):
    """The access_token was rejected even after one refresh (40001, 40014, 42001)."""

    code = "wechat_access_token_invalid"


class InvalidCode(WeChatError):
    """A wx.login or phone-number code is unknown or expired (40029)."""

    code = "wechat_invalid_code"


class CodeAlreadyUsed(WeChatError):
    """A wx.login code was already exchanged once (40163)."""

    code = "wechat_code_used"


class LoginBlocked(WeChatError):
    """WeChat blocked the login of a high-risk user (40226)."""

    code = "wechat_login_blocked"


class RateLimited(WeChatError):
    """WeChat's per-user or per-app rate limit was hit (45011, 45009)."""

    code = "wechat_rate_limited"


class InvalidOpenid(WeChatError):
    """The openid is empty or does not belong to this mini-program (40003)."""

    code = "wechat_invalid_openid"


class InvalidTemplate(WeChatError):
    """The subscribe-message template id is empty or wrong (40037)."""

    code = "wechat_invalid_template"


class InvalidTemplateData(WeChatError):
    """A subscribe-message field breaks its value-type rule (47003 or local check)."""

    code = "wechat_invalid_template_data"


class SubscribeQuotaExhausted(WeChatError):
    """The user has no accepted subscription left for this template (43101)."""

    code = "wechat_subscribe_quota_exhausted"


class InvalidPage(WeChatError):
    """The mini-program page does not exist or is malformed (41030 or local check)."""

    code = "wechat_invalid_page"


class InvalidScene(WeChatError):
    """A mini-program code scene is empty, too long or uses a banned character (40129, 40169)."""

    code = "wechat_invalid_scene"


class InvalidArgument(WeChatError):
    """A request argument is out of range or malformed (40097, 44002, 47001 or local check)."""

    code = "wechat_invalid_argument"


class UserNotRecent(WeChatError):
    """The user has not opened the mini-program in the last 2 hours (61010)."""

    code = "wechat_user_not_recent"


ERRCODE_EXCEPTIONS: Mapping[int, type[WeChatError]] = {
    -1: WeChatBusy,
    40001: AccessTokenInvalid,
    40014: AccessTokenInvalid,
    42001: AccessTokenInvalid,
    40013: WeChatMisconfigured,
    40125: WeChatMisconfigured,
    40164: WeChatMisconfigured,
    41002: WeChatMisconfigured,
    41004: WeChatMisconfigured,
    40029: InvalidCode,
    40163: CodeAlreadyUsed,
    40226: LoginBlocked,
    45009: RateLimited,
    45011: RateLimited,
    40003: InvalidOpenid,
    40037: InvalidTemplate,
    47003: InvalidTemplateData,
    43101: SubscribeQuotaExhausted,
    41030: InvalidPage,
    40129: InvalidScene,
    40169: InvalidScene,
    40097: InvalidArgument,
    44002: InvalidArgument,
    47001: InvalidArgument,
    61010: UserNotRecent,
}


def error_for(errcode: int, errmsg: str) -> WeChatError:
    """Build the exception class mapped to a WeChat errcode."""
    return ERRCODE_EXCEPTIONS.get(errcode, WeChatError)(errcode, errmsg)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Session:
    """Result of jscode2session; session_key stays out of repr so it never reaches logs."""

    openid: str
    session_key: str = field(repr=False)
    unionid: str | None = None


@dataclass(frozen=True)
class PhoneInfo:
    """A user's phone number as confirmed by WeChat."""

    phone_number: str
    pure_phone_number: str
    country_code: str


class SecSuggest(StrEnum):
    """msg_sec_check v2 verdict."""

    PASS = "pass"
    REVIEW = "review"
    RISKY = "risky"


@dataclass(frozen=True)
class SecCheckResult:
    """Overall msg_sec_check v2 result: suggestion, label (100 = normal) and trace id."""

    suggest: SecSuggest
    label: int
    trace_id: str | None = None

    @property
    def is_pass(self) -> bool:
        return self.suggest is SecSuggest.PASS


# --------------------------------------------------------------------------- token cache


@dataclass(frozen=True)
class CachedToken:
    """An access_token and the moment (aware UTC) WeChat stops accepting it."""

    token: str = field(repr=False)
    expires_at: datetime


class TokenCache(Protocol):
    """Where access_tokens live; one store shared by every process of the app.

    Implementations must make `put` and `invalidate` atomic compare-and-set operations so
    that racing processes converge on one token:
    - `put` stores the token only if no token is stored or the stored one expires earlier,
      and returns whichever token is stored afterwards (the caller uses that one);
    - `invalidate` removes the stored token only if it is still `token` (a process that saw
      a rejected token must not delete a fresh one another process just stored).
    With MongoDB: `find_one_and_update({_id: appid, expires_at: {$lt: new}}, upsert=True)`
    (a duplicate-key error means a newer token won: read it) and
    `delete_one({_id: appid, token: token})`.
    """

    async def get(self, appid: str) -> CachedToken | None: ...

    async def put(self, appid: str, token: str, expires_at: datetime) -> CachedToken: ...

    async def invalidate(self, appid: str, token: str) -> None: ...


class MemoryTokenCache:
    """Per-process TokenCache; fine for tests and single-process runs."""

    def __init__(self) -> None:
        self._tokens: dict[str, CachedToken] = {}

    async def get(self, appid: str) -> CachedToken | None:
        return self._tokens.get(appid)

    async def put(self, appid: str, token: str, expires_at: datetime) -> CachedToken:
        current = self._tokens.get(appid)
        if current is None or current.expires_at < expires_at:
            current = self._tokens[appid] = CachedToken(token, expires_at)
        return current

    async def invalidate(self, appid: str, token: str) -> None:
        current = self._tokens.get(appid)
        if current is not None and current.token == token:
            del self._tokens[appid]


# --------------------------------------------------------------------------- validation

_CJK = "\u4e00-\u9fff"
_SCENE = re.compile(r"[0-9A-Za-z!#$&'()*+,/:;=?@\-._~]{1,32}")
_DATA_KEY = re.compile(r"([a-z_]+?)\d+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Dates: y年m月d日, y年m月, m月d日, or joined by - / . (2018-01-01, 2018-01, 01-01).
_DATE = (
    r"(?:\d{4}年\d{1,2}月(?:\d{1,2}日)?|\d{1,2}月\d{1,2}日"
    r"|\d{4}[-/.]\d{1,2}(?:[-/.]\d{1,2})?|\d{1,2}[-/.]\d{1,2})"
)
_TIME = r"\d{1,2}:\d{2}(?::\d{2})?"


def _span(point: str) -> re.Pattern[str]:
    return re.compile(rf"{point}(?:\s*~\s*{point})?")


# Limits from the subscribe-message docs (订阅消息参数值内容限制说明).
_VALUE_RULES: Mapping[str, tuple[re.Pattern[str], int, str]] = {
    "thing": (re.compile(r".+", re.S), 20, "up to 20 characters"),
    "number": (re.compile(r"-?\d+(?:\.\d+)?"), 32, "up to 32 digits, decimals allowed"),
    "letter": (re.compile(r"[A-Za-z]+"), 32, "up to 32 letters"),
    "symbol": (re.compile(rf"[^0-9A-Za-z{_CJK}\s]+"), 5, "up to 5 symbols"),
    "character_string": (re.compile(r"[\x21-\x7e]+"), 32, "up to 32 digits/letters/symbols"),
    "time": (_span(rf"(?:{_DATE}\s*)?{_TIME}"), 64, "24h time, optional date, '~' range"),
    "date": (_span(rf"{_DATE}(?:\s*{_TIME})?"), 64, "date, optional 24h time, '~' range"),
    "amount": (re.compile(r"[¥￥$€£]?\d{1,10}(?:\.\d{1,2})?元?"), 14, "currency + up to 10 digits"),
    "phone_number": (re.compile(r"[^A-Za-z\s" + _CJK + r"]+"), 17, "up to 17 digits/symbols"),
    "car_number": (
        re.compile(rf"[{_CJK}A-Za-z0-9][A-Za-z0-9]*[{_CJK}A-Za-z0-9]?"),
        8,
        "up to 8 chars, CJK only first/last",
    ),
    "phrase": (re.compile(rf"[{_CJK}]+"), 5, "up to 5 Chinese characters"),
}


def _name_ok(value: str) -> bool:
    # 10 Chinese characters, or 20 letters/symbols; mixed names count as Chinese.
    has_cjk = re.search(rf"[{_CJK}]", value) is not None
    return len(value) <= (10 if has_cjk else 20)


def validate_subscribe_data(data: Mapping[str, str]) -> None:
    """Check subscribe-message values against their type's rule; raise InvalidTemplateData."""
    if not data:
        raise InvalidTemplateData(None, "data is empty")
    for key, value in data.items():
        _validate_field(key, value)


def _validate_field(key: str, value: str) -> None:
    def bad(rule: str) -> InvalidTemplateData:
        return InvalidTemplateData(None, f"data.{key}: {rule} (got {len(value)} chars)")

    match = _DATA_KEY.fullmatch(key)
    if match is None:
        raise InvalidTemplateData(None, f"data.{key}: key must look like thing1, time2 ...")
    if not isinstance(value, str) or not value:
        raise InvalidTemplateData(None, f"data.{key}: value is empty")
    if _CONTROL.search(value):
        raise bad("no control characters such as newlines")
    kind = match.group(1)
    if kind == "name":
        if not _name_ok(value):
            raise bad("10 Chinese characters or 20 letters")
        return
    rule = _VALUE_RULES.get(kind)
    if rule is None:  # enum and future types: WeChat checks them
        return
    pattern, max_len, text = rule
    if len(value) > max_len or not pattern.fullmatch(value):
        raise bad(text)


def validate_scene(scene: str) -> None:
    """Check a getwxacodeunlimit scene: 1-32 chars of digits, letters, !#$&'()*+,/:;=?@-._~."""
    if not _SCENE.fullmatch(scene):
        raise InvalidScene(None, f"scene must be 1-32 chars of the allowed set (got {len(scene)})")


def validate_page(page: str) -> None:
    """Check a mini-program page path: no leading '/', no query string."""
    if page.startswith("/") or "?" in page or not page:
        raise InvalidPage(None, "page must look like pages/x/y: no leading '/', no query")


# --------------------------------------------------------------------------- logging


_SECRET_QUERY = re.compile(r"\b(access_token|secret|js_code)=[^&\s\"']*")


def redact_query_secrets(text: str) -> str:
    """Replace the values of access_token, secret and js_code query parameters with ***."""
    return _SECRET_QUERY.sub(r"\1=***", text)


class _RedactQueryFilter(logging.Filter):
    """Blank access_token/secret/js_code in httpx's request log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_query_secrets(str(arg)) if isinstance(arg, str | httpx.URL) else arg
                for arg in record.args
            )
        return True


def _install_log_redaction() -> None:
    # httpx logs every request URL at INFO; those URLs carry the secret and tokens.
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactQueryFilter) for f in logger.filters):
        logger.addFilter(_RedactQueryFilter())


# --------------------------------------------------------------------------- client


class WeChatClient:
    """Async WeChat mini-program API client; keep one per app and `aclose()` it at shutdown."""

    def __init__(
        self,
        *,
        appid: str,
        secret: str,
        token_cache: TokenCache | None = None,
        api_base: str = DEFAULT_API_BASE,
        timeout_s: float = 5.0,
        clock: Clock = utc_now,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.appid = appid
        self._secret = secret
        self._cache: TokenCache = token_cache if token_cache is not None else MemoryTokenCache()
        self._timeout_s = timeout_s
        self._clock = clock
        self._token_lock = asyncio.Lock()
        self._http = httpx.AsyncClient(
            base_url=api_base, timeout=httpx.Timeout(timeout_s), transport=transport
        )
        _install_log_redaction()

    def __repr__(self) -> str:
        return f"WeChatClient(appid={self.appid!r}, api_base={str(self._http.base_url)!r})"

    async def aclose(self) -> None:
        """Close the underlying HTTP connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> WeChatClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ---- login

    async def code2session(self, js_code: str) -> Session:
        """Exchange a wx.login code for openid, session_key and unionid."""
        if not js_code:
            raise InvalidCode(None, "js_code is empty")
        params = {
            "appid": self.appid,
            "secret": self._secret,
            "js_code": js_code,
            "grant_type": "authorization_code",
        }
        response = await self._send("GET", "/sns/jscode2session", params=params)
        data = self._checked_json(response, sensitive=(js_code,))
        try:
            return Session(data["openid"], data["session_key"], data.get("unionid"))
        except KeyError:
            raise WeChatUnavailable(None, "jscode2session reply lacks openid") from None

    # ---- access token

    async def get_access_token(self, force_refresh: bool = False) -> str:
        """Return a usable access_token, from the shared cache when it has one.

        force_refresh=True asks stable_token for a brand-new token, which invalidates the
        old one for every process; WeChat allows it 20 times a day, 30 s apart.
        """
        seen = await self._cache.get(self.appid)
        if not force_refresh and self._usable(seen):
            assert seen is not None
            return seen.token
        async with self._token_lock:
            current = await self._cache.get(self.appid)
            if self._usable(current) and (not force_refresh or current != seen):
                assert current is not None
                return current.token  # another caller refreshed while we waited
            if force_refresh and current is not None:
                # Force mode kills the old token; drop it so `put` cannot prefer it.
                await self._cache.invalidate(self.appid, current.token)
            return await self._fetch_token(force_refresh)

    async def _replace_rejected_token(self, rejected: str) -> str:
        # Another process may already hold the fresh token (e.g. after a force refresh),
        # and stable_token's normal mode returns the current valid token, so we only use
        # WeChat's force mode (invalidates every process's token, 20/day) as a last resort.
        await self._cache.invalidate(self.appid, rejected)
        async with self._token_lock:
            current = await self._cache.get(self.appid)
            if self._usable(current) and current is not None and current.token != rejected:
                return current.token
            token = await self._fetch_token(force_refresh=False)
            if token == rejected:
                await self._cache.invalidate(self.appid, rejected)
                token = await self._fetch_token(force_refresh=True)
            return token

    def _usable(self, cached: CachedToken | None) -> bool:
        return cached is not None and cached.expires_at - TOKEN_REFRESH_MARGIN > self._clock()

    async def _fetch_token(self, force_refresh: bool) -> str:
        requested_at = self._clock()
        body = {
            "grant_type": "client_credential",
            "appid": self.appid,
            "secret": self._secret,
            "force_refresh": force_refresh,
        }
        response = await self._send("POST", "/cgi-bin/stable_token", json_body=body)
        data = self._checked_json(response)
        try:
            token, expires_in = str(data["access_token"]), int(data["expires_in"])
        except (KeyError, ValueError, TypeError):
            raise WeChatUnavailable(None, "stable_token reply lacks access_token") from None
        expires_at = requested_at + timedelta(seconds=expires_in)
        stored = await self._cache.put(self.appid, token, expires_at)
        return stored.token

    # ---- token-requiring APIs

    async def get_phone_number(self, code: str, openid: str | None = None) -> PhoneInfo:
        """Exchange a getPhoneNumber button code for the user's phone number."""
        if not code:
            raise InvalidCode(None, "phone code is empty")
        body: dict[str, Any] = {"code": code}
        if openid is not None:
            body["openid"] = openid
        response = await self._post_with_token("/wxa/business/getuserphonenumber", body)
        info = self._checked_json(response, sensitive=(code,)).get("phone_info") or {}
        try:
            return PhoneInfo(
                phone_number=info["phoneNumber"],
                pure_phone_number=info["purePhoneNumber"],
                country_code=str(info["countryCode"]),
            )
        except KeyError:
            raise WeChatUnavailable(None, "getuserphonenumber reply lacks phone_info") from None

    async def send_subscribe_message(
        self,
        openid: str,
        template_id: str,
        data: Mapping[str, str],
        page: str | None = None,
        state: str = "formal",
        lang: str = "zh_CN",
    ) -> None:
        """Send one subscribe message; each send uses up one user acceptance (43101 when none)."""
        if not openid:
            raise InvalidOpenid(None, "openid is empty")
        if not template_id:
            raise InvalidTemplate(None, "template_id is empty")
        if state not in ("developer", "trial", "formal"):
            raise InvalidArgument(None, "state must be developer, trial or formal")
        validate_subscribe_data(data)
        body: dict[str, Any] = {
            "touser": openid,
            "template_id": template_id,
            "data": {key: {"value": value} for key, value in data.items()},
            "miniprogram_state": state,
            "lang": lang,
        }
        if page is not None:
            body["page"] = page
        response = await self._post_with_token("/cgi-bin/message/subscribe/send", body)
        self._checked_json(response)

    async def get_wxacode_unlimit(
        self,
        scene: str,
        page: str,
        width: int = 430,
        check_path: bool = False,
        env_version: str = "release",
    ) -> bytes:
        """Return the image bytes of an unlimited mini-program code for `scene` on `page`."""
        validate_scene(scene)
        validate_page(page)
        if not 280 <= width <= 1280:
            raise InvalidArgument(None, "width must be 280-1280 px")
        if env_version not in ("release", "trial", "develop"):
            raise InvalidArgument(None, "env_version must be release, trial or develop")
        body = {
            "scene": scene,
            "page": page,
            "width": width,
            "check_path": check_path,
            "env_version": env_version,
        }
        response = await self._post_with_token("/wxa/getwxacodeunlimit", body)
        if _is_image(response):
            return response.content
        self._checked_json(response)
        raise WeChatUnavailable(None, "getwxacodeunlimit returned neither image nor error")

    async def msg_sec_check(self, openid: str, content: str, scene: int = 2) -> SecCheckResult:
        """Check user text (v2); scene 1 profile, 2 comment, 3 forum, 4 social log."""
        if scene not in (1, 2, 3, 4):
            raise InvalidArgument(None, "scene must be 1, 2, 3 or 4")
        if not content or len(content) > MAX_SEC_CHECK_CHARS:
            raise InvalidArgument(None, f"content must be 1-{MAX_SEC_CHECK_CHARS} chars")
        body = {"version": 2, "openid": openid, "scene": scene, "content": content}
        response = await self._post_with_token("/wxa/msg_sec_check", body)
        data = self._checked_json(response)
        result = data.get("result") or {}
        try:
            suggest = SecSuggest(result["suggest"])
            label = int(result["label"])
        except (KeyError, ValueError, TypeError):
            raise WeChatUnavailable(None, "msg_sec_check reply lacks result") from None
        return SecCheckResult(suggest, label, data.get("trace_id"))

    # ---- transport

    async def _post_with_token(self, path: str, body: Mapping[str, Any]) -> httpx.Response:
        token = await self.get_access_token()
        response = await self._send("POST", path, json_body=body, access_token=token)
        if _token_rejected(response):
            token = await self._replace_rejected_token(token)
            response = await self._send("POST", path, json_body=body, access_token=token)
        return response

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
        access_token: str | None = None,
    ) -> httpx.Response:
        query = dict(params or {})
        if access_token is not None:
            query["access_token"] = access_token
        content = None
        headers = {}
        if json_body is not None:
            # ensure_ascii=False: WeChat expects raw UTF-8 Chinese in message bodies.
            content = json.dumps(json_body, ensure_ascii=False).encode()
            headers["Content-Type"] = "application/json"
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await self._http.request(
                    method, path, params=query, content=content, headers=headers
                )
        except (httpx.HTTPError, TimeoutError) as exc:
            # `from None`: httpx exceptions carry the request URL, which holds secrets.
            raise WeChatUnavailable(None, f"{method} {path}: {type(exc).__name__}") from None
        if response.status_code >= 500:
            raise WeChatUnavailable(None, f"{method} {path}: HTTP {response.status_code}")
        return response

    def _checked_json(
        self, response: httpx.Response, sensitive: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        data = _json_or_none(response)
        if data is None:
            path = response.request.url.path
            raise WeChatUnavailable(None, f"{path}: HTTP {response.status_code}, not JSON")
        errcode = data.get("errcode") or 0
        if errcode != 0:
            errmsg = self._scrub(str(data.get("errmsg", "")), sensitive)
            raise error_for(int(errcode), errmsg)
        return data

    def _scrub(self, text: str, sensitive: tuple[str, ...]) -> str:
        for value in (self._secret, *sensitive):
            if value:
                text = text.replace(value, "***")
        return redact_query_secrets(text)[:300]


def _is_image(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").startswith("image/")


def _json_or_none(response: httpx.Response) -> dict[str, Any] | None:
    if _is_image(response):
        return None
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _token_rejected(response: httpx.Response) -> bool:
    data = _json_or_none(response)
    return data is not None and data.get("errcode") in TOKEN_ERRCODES
