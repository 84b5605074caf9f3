"""The one Tornado handler behind every endpoint: auth, body limits, validation, JSON errors."""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import tornado.escape
import tornado.iostream
import tornado.web
from pymongo.errors import (
    AutoReconnect,
    ConnectionFailure,
    ExecutionTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
)

from miniprogram_api.wechat import WeChatError, WeChatUnavailable
from server.errors import (
    DomainError,
    InvalidInput,
    PayloadTooLarge,
    StoreUnavailable,
    Unauthenticated,
    UpstreamRejected,
    UpstreamUnavailable,
)
from server.logs import request_id_var
from server.validation import Schema, coerce_query

if TYPE_CHECKING:
    from server.auth import Principal
    from server.services import Services

log = logging.getLogger("server.http")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_STORE_DOWN = (ServerSelectionTimeoutError, AutoReconnect, ConnectionFailure, ExecutionTimeout)


def _store_busy(exc: object) -> bool:
    """The embedded FerretDB/SQLite refusing a write under contention ("database is locked",
    SQLITE_BUSY): transient, like an outage, so 503 store_unavailable and the client retries
    (found by bench/bills: 18 of 300 concurrent orders answered 500)."""
    return isinstance(exc, OperationFailure) and "SQLITE_BUSY" in str(exc)


class Auth(StrEnum):
    """Who may call an endpoint."""

    PUBLIC = "public"      # anyone (health, docs)
    MP = "mp"              # a mini-program user with a session token
    ADMIN = "admin"        # committee member, property staff, official (staff session)
    OPEN = "open"          # a city-platform integration client (signed request)
    CALLBACK = "callback"  # WeChat Pay notifications: the endpoint verifies the signature itself


@dataclass(frozen=True)
class Reply:
    """A non-default response: a status, extra headers, or a non-JSON body.

    A body that is an async iterable of bytes is streamed (chunked transfer), see `_stream`.
    """

    body: Any = None
    status: int | None = None
    content_type: str = "application/json; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Request:
    """What an endpoint function receives."""

    services: Services
    principal: Principal | None
    body: Any
    query: dict[str, Any]
    args: dict[str, str]
    raw_body: bytes
    headers: Mapping[str, str]
    request_id: str
    method: str
    path: str


EndpointFunc = Callable[[Request], Awaitable[Any]]


@dataclass(frozen=True)
class Endpoint:
    """One operation: the route table and /openapi.json are both built from these."""

    method: str
    path: str  # OpenAPI style: /api/mp/v1/ballots/{ballot_id}
    func: EndpointFunc
    auth: Auth
    summary: str
    response: Mapping[str, Any] | None = None  # JSON schema of the success body
    body: Mapping[str, Any] | None = None      # JSON schema of the request body
    query: Mapping[str, Any] | None = None     # JSON schema (object) of the query string
    status: int = 200
    tag: str = ""
    raw_response: str | None = None           # content type when the body is not JSON
    max_body_bytes: int | None = None         # overrides MAX_BODY_BYTES (e.g. roster files)

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)

    @property
    def pattern(self) -> str:
        return "^" + re.sub(r"{(\w+)}", r"(?P<\1>[^/]+)", self.path) + "$"


@tornado.web.stream_request_body
class EndpointHandler(tornado.web.RequestHandler):
    """Dispatches one path to its endpoints by method; every outcome is JSON.

    The body is streamed so an oversize request is refused with a JSON 413 as soon as its
    Content-Length (or, when chunked, its running size) passes the limit, without buffering it.
    """

    SUPPORTED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

    def initialize(self, endpoints: Mapping[str, Endpoint], services: Services,
                   schemas: Mapping[int, tuple[Schema | None, Schema | None]]) -> None:
        self.endpoints = endpoints
        self.services = services
        self.schemas = schemas
        self.request_id = ""
        self._started = time.monotonic()
        self._chunks: list[bytes] = []
        self._size = 0
        self._entered = False

    # -- lifecycle ---------------------------------------------------------------------------
    def prepare(self) -> None:
        incoming = self.request.headers.get("X-Request-Id", "")
        self.request_id = incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(8)
        request_id_var.set(self.request_id)
        self.set_header("X-Request-Id", self.request_id)
        self.services.inflight.enter()
        self._entered = True
        limit = self._limit()
        length = self.request.headers.get("Content-Length", "")
        if length and (not length.isdigit() or int(length) > limit):
            raise PayloadTooLarge(fields={"$": f"最大 {limit} 字节"})

    def _limit(self) -> int:
        endpoint = self.endpoints.get(self.request.method or "")
        if endpoint is not None and endpoint.max_body_bytes:
            return endpoint.max_body_bytes
        return self.services.settings.max_body_bytes

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size <= self._limit():
            self._chunks.append(chunk)

    def on_finish(self) -> None:
        if self._entered:
            self.services.inflight.leave()
        log.info(
            "request",
            extra={
                "method": self.request.method,
                "path": self.request.path,
                "status": self.get_status(),
                "duration_ms": round((time.monotonic() - self._started) * 1000, 1),
            },
        )

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    async def get(self, **kwargs: str) -> None:
        await self._dispatch(kwargs)

    post = put = patch = delete = get

    # -- dispatch ----------------------------------------------------------------------------
    async def _dispatch(self, args: dict[str, str]) -> None:
        endpoint = self.endpoints.get(self.request.method or "")
        if endpoint is None:
            self._write_error_body(405, {"error": {"code": "method_not_allowed",
                                                   "message": "不支持该请求方法"}})
            return
        body_schema, query_schema = self.schemas[id(endpoint)]
        if self._size > self._limit():
            raise PayloadTooLarge(fields={"$": f"最大 {self._limit()} 字节"})
        raw = b"".join(self._chunks)
        self.request.body = raw  # signed open-API requests hash exactly these bytes
        principal = await self._authenticate(endpoint)
        body = self._parse_body(endpoint, body_schema, raw)
        query: dict[str, Any] = {}
        if query_schema is not None:
            query = query_schema.check(coerce_query(query_schema.schema, self.request.query_arguments))
        elif self.request.query_arguments and endpoint.auth is not Auth.CALLBACK:
            raise InvalidInput(fields={k: "不允许的参数" for k in self.request.query_arguments})
        request = Request(
            services=self.services, principal=principal, body=body, query=query,
            args={k: tornado.escape.url_unescape(v) for k, v in args.items()}, raw_body=raw,
            headers=self.request.headers, request_id=self.request_id,
            method=self.request.method or "", path=self.request.path,
        )
        result = await endpoint.func(request)
        if isinstance(result, Reply) and isinstance(result.body, AsyncIterable):
            await self._stream(endpoint, result)
            return
        self._write_result(endpoint, result)

    async def _stream(self, endpoint: Endpoint, reply: Reply) -> None:
        """Chunked transfer for large exports: each chunk is flushed to the socket (and the
        flush awaited) before the next is produced, so memory stays flat whatever the size.
        An error before the first chunk is a normal JSON error; after it, the connection is
        closed without the final chunk, so the client sees an incomplete transfer."""
        self.set_status(reply.status or endpoint.status)
        for name, value in reply.headers.items():
            self.set_header(name, value)
        self.set_header("Content-Type", reply.content_type)
        started = False
        try:
            async for chunk in reply.body:
                self.write(chunk)
                await self.flush()
                started = True
        except tornado.iostream.StreamClosedError:
            return  # the client went away; Tornado's auto-finish runs on_finish
        except Exception:
            if not started:
                raise
            log.error("stream aborted", exc_info=True)
            if self.request.connection is not None:
                self.request.connection.close()
            return
        self.finish()

    async def _authenticate(self, endpoint: Endpoint) -> Principal | None:
        if endpoint.auth in (Auth.PUBLIC, Auth.CALLBACK):
            return None
        if endpoint.auth is Auth.OPEN:
            return await self.services.open_auth(self.request)
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated(code="token_missing", message="请先登录")
        return await self.services.sessions.authenticate(token.strip(), kind=endpoint.auth.value)

    @staticmethod
    def _parse_body(endpoint: Endpoint, schema: Schema | None, raw: bytes) -> Any:
        if endpoint.auth is Auth.CALLBACK:
            return None  # the endpoint reads raw bytes: signatures are over exactly those
        if schema is None:
            if raw.strip():
                raise InvalidInput("此接口不接受请求体", code="body_not_allowed", fields={"$": "不允许请求体"})
            return None
        try:
            value = json.loads(raw.decode("utf-8")) if raw.strip() else None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidInput("请求体不是有效的 JSON", code="malformed_json",
                               fields={"$": f"JSON 解析失败：{exc.__class__.__name__}"}) from None
        if value is None:
            raise InvalidInput("缺少请求体", code="body_required", fields={"$": "必填"})
        return schema.check(value)

    def _write_result(self, endpoint: Endpoint, result: Any) -> None:
        reply = result if isinstance(result, Reply) else Reply(body=result)
        self.set_status(reply.status or endpoint.status)
        for name, value in reply.headers.items():
            self.set_header(name, value)
        if reply.body is None or self.get_status() == 204:
            self.finish()
            return
        self.set_header("Content-Type", reply.content_type)
        if isinstance(reply.body, (bytes, str)):
            self.finish(reply.body)
        else:
            self.finish(json.dumps(reply.body, ensure_ascii=False, separators=(",", ":")))

    # -- errors ------------------------------------------------------------------------------
    def _write_error_body(self, status: int, body: Mapping[str, Any]) -> None:
        self.clear()
        self.set_header("X-Request-Id", self.request_id)
        self.set_status(status)
        self.finish(json.dumps(body, ensure_ascii=False))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, (DomainError, tornado.web.HTTPError)):
            return
        if isinstance(value, WeChatError):
            log.warning("wechat refused: %s", value.code, extra={"errcode": value.errcode})
            return
        if isinstance(value, _STORE_DOWN) or _store_busy(value):
            log.warning("store unavailable: %s", type(value).__name__)
            return
        log.error("unhandled error", exc_info=(typ, value, tb))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, WeChatError):
            exc = _from_wechat(exc)
        if isinstance(exc, DomainError):
            self._write_error_body(exc.status, exc.to_json())
        elif isinstance(exc, _STORE_DOWN) or _store_busy(exc):
            self._write_error_body(503, StoreUnavailable().to_json())
        elif isinstance(exc, tornado.web.HTTPError) and exc.status_code < 500:
            self._write_error_body(exc.status_code, {"error": {
                "code": f"http_{exc.status_code}", "message": "请求无效"}})
        else:
            self._write_error_body(500, {"error": {"code": "internal_error",
                                                   "message": "服务器内部错误，请稍后再试"}})


def _from_wechat(exc: WeChatError) -> DomainError:
    """WeChat's refusals as our errors; its raw message never reaches the client."""
    if isinstance(exc, WeChatUnavailable):
        return UpstreamUnavailable(code=exc.code)
    messages = {"wechat_invalid_code": "登录凭证无效，请重新登录",
                "wechat_code_used": "登录凭证已使用，请重新登录"}
    return UpstreamRejected(messages.get(exc.code, "微信拒绝了请求"), code=exc.code)


class NotFoundHandler(EndpointHandler):
    """Unknown paths: a JSON 404 like every other error."""

    def initialize(self, services: Services) -> None:  # type: ignore[override]
        super().initialize({}, services, {})

    def prepare(self) -> None:
        super().prepare()
        self._write_error_body(404, {"error": {"code": "route_not_found", "message": "接口不存在"}})

    async def get(self, **kwargs: str) -> None:
        pass  # answered in prepare()

    post = put = patch = delete = get
