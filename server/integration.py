"""Integration clients of the city platform: registry, signed-request auth, nonces, rate limit.

A request to /api/open/v1 carries four headers (docs/integration.md is the contract):

    X-Open-Key       the client's key id (ok_…)
    X-Open-Timestamp Unix time in seconds
    X-Open-Nonce     16–64 characters of [A-Za-z0-9_-], never reused
    X-Open-Signature lowercase hex HMAC-SHA256(secret, canonical string)

    canonical string = METHOD \\n PATH \\n CANONICAL_QUERY \\n TIMESTAMP \\n NONCE \\n SHA256_HEX(BODY)

The secret must be recomputable to check an HMAC, so it is stored encrypted (AES-256-GCM via
`FieldCrypto`, bound to the key id), never hashed. Checks run in this order, each with its own
code: headers present (signature_missing) → client known and active (client_unknown,
client_disabled) → timestamp within ±skew (timestamp_stale) → signature (signature_invalid) →
nonce unused (nonce_reused) → rate (rate_limited). The nonce is stored only after the signature
is good, so nobody can burn a client's nonces.

Nonces and rate-limit slots are claimed by inserting a unique _id, which exactly one caller can
win on every store (FerretDB 1.24 may lose concurrent `$inc`s); both carry `expires_at` and are
deleted by `sweep()` (no TTL indexes, DOMAIN §6).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, quote

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from server.audit import actor_of
from server.auth import ClientUser, Principal
from server.clock import Clock, iso
from server.errors import Forbidden, InvalidInput, NotFound, RateLimited, Unauthenticated
from server.fieldcrypto import FieldCrypto
from server.registry import Community

_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
HEADERS = ("X-Open-Key", "X-Open-Timestamp", "X-Open-Nonce", "X-Open-Signature")


class ClientDisabled(Unauthenticated):
    """The client was disabled by an operator."""

    code = "client_disabled"
    message = "对接客户端已停用"


class CursorInvalid(InvalidInput):
    """A page cursor that this service did not issue."""

    code = "cursor_invalid"
    message = "分页游标无效"


# -- the signing contract (pure; the guide and the tests implement the same) ----------------
def canonical_query(query: str) -> str:
    """Decoded pairs, re-encoded per RFC 3986 (unreserved kept), sorted, joined with &."""
    pairs = [(quote(k, safe="-_.~"), quote(v, safe="-_.~"))
             for k, v in parse_qsl(query, keep_blank_values=True)]
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def canonical_string(method: str, path: str, query: str, timestamp: str, nonce: str,
                     body: bytes) -> str:
    return "\n".join([method.upper(), path, canonical_query(query), timestamp, nonce,
                      hashlib.sha256(body).hexdigest()])


def sign(secret: str, canonical: str) -> str:
    return hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()


# -- scope -------------------------------------------------------------------------------
def covers_community(client: ClientUser, community: Community) -> bool:
    return community.id in client.community_ids or any(
        a in community.area_path for a in client.area_ids)


def covers_area(client: ClientUser, area_path: Iterable[str]) -> bool:
    """An area is visible when it lies at or below one of the client's areas."""
    return any(a in client.area_ids for a in area_path)


def community_filter(client: ClientUser, field: str = "_id",
                     area_field: str = "area_path") -> dict[str, Any]:
    """A query on documents with a community id and area path: exactly the client's scope."""
    clauses: list[dict[str, Any]] = []
    if client.community_ids:
        clauses.append({field: {"$in": list(client.community_ids)}})
    if client.area_ids:
        clauses.append({area_field: {"$in": list(client.area_ids)}})
    return {"$or": clauses} if clauses else {field: {"$in": []}}


def out_of_scope(what: str = "该小区") -> Forbidden:
    return Forbidden(f"{what}不在本客户端的授权范围内", code="out_of_scope")


def require_client(principal: Principal | None) -> ClientUser:
    if not isinstance(principal, ClientUser):
        raise Forbidden("仅限对接平台", code="client_only")
    return principal


# -- cursors -----------------------------------------------------------------------------
def encode_cursor(last_id: str) -> str:
    raw = json.dumps({"after": last_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        after = value["after"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise CursorInvalid(fields={"cursor": "不是本服务签发的游标"}) from None
    if not isinstance(after, str):
        raise CursorInvalid(fields={"cursor": "不是本服务签发的游标"})
    return after


async def page(collection: Any, query: Mapping[str, Any], cursor: str | None, limit: int,
               projection: Mapping[str, Any] | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """One page in _id order after the cursor; stable under concurrent inserts and updates.

    Every document that existed before the first page is returned exactly once: the order is
    the immutable _id, and the cursor is the last _id seen (not an offset).
    """
    after = decode_cursor(cursor)
    full: dict[str, Any] = dict(query)
    if after is not None:
        full = {"$and": [dict(query), {"_id": {"$gt": after}}]}
    docs = await collection.find(full, projection).sort("_id", 1).limit(limit + 1).to_list(None)
    more = len(docs) > limit
    docs = docs[:limit]
    return docs, (encode_cursor(docs[-1]["_id"]) if more and docs else None)


def client_to_json(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "name": doc["name"], "area_ids": doc["area_ids"],
            "community_ids": doc["community_ids"], "rate_per_minute": doc["rate_per_minute"],
            "status": doc["status"], "created_at": iso(doc["created_at"]),
            "created_by": doc["created_by"].get("name", "")}


class Integration:
    """Registers clients and authenticates their signed requests (`services.open_auth`)."""

    def __init__(self, db: AsyncDatabase, clock: Clock, crypto: FieldCrypto, skew_seconds: int,
                 default_rate_per_minute: int) -> None:
        self.clients = db["open_clients"]
        self.nonces = db["open_nonces"]
        self.slots = db["open_rate_slots"]
        self.db = db
        self.clock = clock
        self.crypto = crypto
        self.skew = skew_seconds
        self.default_rate = default_rate_per_minute

    # -- clients ----------------------------------------------------------------------------
    async def register(self, principal: Principal, name: str, area_ids: list[str],
                       community_ids: list[str], rate_per_minute: int | None) -> dict[str, Any]:
        """A new client; the secret is returned here once and never again."""
        if not area_ids and not community_ids:
            raise InvalidInput("授权范围不能为空", code="scope_empty",
                               fields={"area_ids": "区域与小区至少填一项"})
        key_id = "ok_" + secrets.token_hex(8)
        secret = "sk_" + secrets.token_urlsafe(32)
        doc = {"_id": key_id, "name": name, "area_ids": sorted(set(area_ids)),
               "community_ids": sorted(set(community_ids)),
               "rate_per_minute": rate_per_minute or self.default_rate, "status": "active",
               "secret_enc": self.crypto.encrypt(secret, _context(key_id)),
               "created_at": self.clock.now(), "created_by": actor_of(principal)}
        await self.clients.insert_one(doc)
        return {**client_to_json(doc), "secret": secret}

    async def rotate(self, client_id: str) -> dict[str, Any]:
        doc = await self.get(client_id)
        secret = "sk_" + secrets.token_urlsafe(32)
        await self.clients.update_one({"_id": doc["_id"]}, {"$set": {
            "secret_enc": self.crypto.encrypt(secret, _context(doc["_id"])),
            "rotated_at": self.clock.now()}})
        return {**client_to_json(doc), "secret": secret}

    async def set_status(self, client_id: str, status: str) -> dict[str, Any]:
        doc = await self.get(client_id)
        await self.clients.update_one({"_id": doc["_id"]}, {"$set": {"status": status}})
        return client_to_json({**doc, "status": status})

    async def get(self, client_id: str) -> dict[str, Any]:
        doc = await self.clients.find_one({"_id": client_id})
        if doc is None:
            raise NotFound("对接客户端不存在", code="client_not_found")
        return doc

    async def list(self) -> list[dict[str, Any]]:
        return [client_to_json(d) for d in await self.clients.find({}).sort("_id", 1).to_list(None)]

    def secret_of(self, doc: Mapping[str, Any]) -> str:
        return self.crypto.decrypt(doc["secret_enc"], _context(doc["_id"]))

    # -- authentication ---------------------------------------------------------------------
    async def authenticate(self, request: Any) -> ClientUser:
        """`services.open_auth`: the Tornado request → the client, or a DomainError."""
        headers = request.headers
        values = {h: headers.get(h, "").strip() for h in HEADERS}
        missing = {h: "必填" for h, v in values.items() if not v}
        if missing:
            raise Unauthenticated("缺少签名信息", code="signature_missing", fields=missing)
        key_id, timestamp, nonce, signature = (values[h] for h in HEADERS)
        if not _NONCE.match(nonce):
            raise Unauthenticated("随机串格式不正确", code="signature_invalid",
                                  fields={"X-Open-Nonce": "16–64 位字母、数字、- 或 _"})
        doc = await self.clients.find_one({"_id": key_id})
        if doc is None:
            raise Unauthenticated("对接客户端未注册", code="client_unknown")
        if doc["status"] != "active":
            raise ClientDisabled()
        now = self.clock.now()
        if not timestamp.isdigit() or abs(now.timestamp() - int(timestamp)) > self.skew:
            raise Unauthenticated(f"请求时间戳与服务器时间相差超过 {self.skew} 秒",
                                  code="timestamp_stale",
                                  fields={"X-Open-Timestamp": f"服务器时间 {int(now.timestamp())}"})
        body: bytes = request.body or b""
        expected = sign(self.secret_of(doc), canonical_string(
            request.method, request.path, request.query, timestamp, nonce, body))
        if not _HEX64.match(signature) or not hmac.compare_digest(expected, signature):
            raise Unauthenticated("签名校验失败", code="signature_invalid")
        await self._use_nonce(key_id, nonce)
        await self._take_slot(key_id, doc["rate_per_minute"])
        return ClientUser(client_id=key_id, area_ids=tuple(doc["area_ids"]),
                          community_ids=tuple(doc["community_ids"]))

    async def _use_nonce(self, key_id: str, nonce: str) -> None:
        now = self.clock.now()
        # A nonce matters only while its timestamp could still pass: 2 × skew covers ±skew.
        record = {"_id": f"{key_id}:{nonce}", "expires_at": now + timedelta(seconds=2 * self.skew)}
        for _ in range(2):
            try:
                await self.nonces.insert_one(record)
                return
            except DuplicateKeyError:
                # Expired but not yet swept: a genuinely new request may take it over.
                gone = await self.nonces.delete_one({"_id": record["_id"],
                                                     "expires_at": {"$lte": now}})
                if gone.deleted_count == 0:
                    break
        raise Unauthenticated("随机串已使用（疑似重放请求）", code="nonce_reused")

    async def _take_slot(self, key_id: str, limit: int) -> None:
        """Fixed one-minute window: slot k of the window is an insert that one request wins."""
        now = self.clock.now()
        window = int(now.timestamp()) // 60
        taken = await self.slots.count_documents({"client_id": key_id, "window": window})
        expires_at = now + timedelta(seconds=120)
        while taken < limit:
            try:
                await self.slots.insert_one({"_id": f"{key_id}:{window}:{taken}",
                                             "client_id": key_id, "window": window,
                                             "expires_at": expires_at})
                return
            except DuplicateKeyError:
                taken += 1
        retry = 60 - int(now.timestamp()) % 60
        raise RateLimited(f"请求过于频繁：每分钟最多 {limit} 次，请 {retry} 秒后再试",
                          code="rate_limited", fields={"retry_after_seconds": str(retry)})

    async def sweep(self) -> int:
        """Delete expired nonces and rate slots (expiry is the application's job)."""
        now = self.clock.now()
        a = await self.nonces.delete_many({"expires_at": {"$lte": now}})
        b = await self.slots.delete_many({"expires_at": {"$lte": now}})
        return a.deleted_count + b.deleted_count


def _context(key_id: str) -> str:
    return f"open_client_secret:{key_id}"

