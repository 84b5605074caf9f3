"""Domain errors: each a small class with a stable code and a Chinese message for users."""

from __future__ import annotations

from collections.abc import Mapping


class DomainError(Exception):
    """Base of every error a user may see; `code` is stable, `message` is for people."""

    status = 400
    code = "error"
    message = "请求无法完成"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        fields: Mapping[str, str] | None = None,
    ) -> None:
        if message is not None:
            self.message = message
        if code is not None:
            self.code = code
        self.fields = dict(fields or {})
        super().__init__(self.message)

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {"code": self.code, "message": self.message}
        if self.fields:
            body["fields"] = self.fields
        return {"error": body}


class InvalidInput(DomainError):
    """The request is malformed or a field is invalid; `fields` maps paths to reasons."""

    status = 400
    code = "invalid_input"
    message = "请求参数有误"


class Unauthenticated(DomainError):
    """No valid credential: missing, unknown, expired or revoked token."""

    status = 401
    code = "unauthenticated"
    message = "请先登录"


class Forbidden(DomainError):
    """The caller is known but may not do this, or not for this community."""

    status = 403
    code = "forbidden"
    message = "无权执行此操作"


class NotFound(DomainError):
    """The thing asked for does not exist (or is not visible to the caller)."""

    status = 404
    code = "not_found"
    message = "未找到"


class Conflict(DomainError):
    """The request conflicts with the current state (duplicate, wrong state, closed window)."""

    status = 409
    code = "conflict"
    message = "与当前状态冲突"


class PayloadTooLarge(DomainError):
    """The request body exceeds the configured limit."""

    status = 413
    code = "payload_too_large"
    message = "请求内容过大"


class RateLimited(DomainError):
    """Too many requests or attempts; try again later."""

    status = 429
    code = "rate_limited"
    message = "请求过于频繁，请稍后再试"


class Locked(DomainError):
    """The account is locked after repeated failures."""

    status = 423
    code = "account_locked"
    message = "账号已锁定，请稍后再试"


class StoreUnavailable(DomainError):
    """The database cannot be reached; nothing was changed."""

    status = 503
    code = "store_unavailable"
    message = "服务暂时不可用，请稍后再试"


class UpstreamUnavailable(DomainError):
    """A party we depend on (WeChat, WeChat Pay) did not answer in time."""

    status = 503
    code = "upstream_unavailable"
    message = "微信服务暂时不可用，请稍后再试"


class UpstreamRejected(DomainError):
    """A party we depend on refused the request (e.g. an invalid login code)."""

    status = 400
    code = "upstream_rejected"
    message = "微信返回错误"
