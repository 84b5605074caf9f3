"""Who is asking: session tokens (stored as hashes), staff passwords (argon2id), principals."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pymongo.asynchronous.database import AsyncDatabase

from server.clock import Clock, as_utc
from server.errors import DomainError, InvalidInput, Locked, Unauthenticated


class Role(StrEnum):
    """Staff roles; each grant names the community, company or area it covers."""

    COMMITTEE = "committee"          # owners' committee member of one community
    PROPERTY = "property"            # property-company staff: the communities it serves
    OFFICIAL = "official"            # community/street/district/city official: an area subtree
    PLATFORM_ADMIN = "platform_admin"  # operates the platform itself (registry set-up)


@dataclass(frozen=True)
class Grant:
    """One role over one scope."""

    role: Role
    community_id: str = ""
    company_id: str = ""
    area_id: str = ""

    def to_doc(self) -> dict[str, str]:
        return {"role": self.role.value, "community_id": self.community_id,
                "company_id": self.company_id, "area_id": self.area_id}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Grant:
        return cls(Role(doc["role"]), doc.get("community_id", ""), doc.get("company_id", ""),
                   doc.get("area_id", ""))


@dataclass(frozen=True)
class MpUser:
    """A mini-program user (an owner, family member or tenant once bound to units)."""

    user_id: str
    openid: str
    kind: str = "mp"


@dataclass(frozen=True)
class StaffUser:
    """A committee member, property clerk, official or platform operator."""

    staff_id: str
    username: str
    name: str
    grants: tuple[Grant, ...] = field(default_factory=tuple)
    kind: str = "admin"

    def has_role(self, *roles: Role) -> bool:
        return any(g.role in roles for g in self.grants)


@dataclass(frozen=True)
class ClientUser:
    """A city-platform integration client (signed requests)."""

    client_id: str
    area_ids: tuple[str, ...]
    community_ids: tuple[str, ...]
    kind: str = "open"


Principal = MpUser | StaffUser | ClientUser


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class InvalidCredentials(DomainError):
    """Username or password wrong (never says which)."""

    status = 401
    code = "invalid_credentials"
    message = "用户名或密码错误"


class SessionStore:
    """Random bearer tokens; the store keeps only their SHA-256, with expiry and revocation."""

    def __init__(self, db: AsyncDatabase, clock: Clock) -> None:
        self.sessions = db["sessions"]
        self.users = db["users"]
        self.staff = db["staff"]
        self.clock = clock

    async def issue(self, kind: str, subject: str, ttl_seconds: int) -> tuple[str, Any]:
        token = f"{kind}_{secrets.token_urlsafe(32)}"
        now = self.clock.now()
        expires_at = now + timedelta(seconds=ttl_seconds)
        await self.sessions.insert_one({
            "_id": hash_token(token), "kind": kind, "subject": subject,
            "created_at": now, "expires_at": expires_at, "revoked_at": None,
        })
        return token, expires_at

    async def revoke(self, token: str) -> None:
        await self.sessions.update_one({"_id": hash_token(token), "revoked_at": None},
                                       {"$set": {"revoked_at": self.clock.now()}})

    async def revoke_subject(self, subject: str) -> int:
        result = await self.sessions.update_many({"subject": subject, "revoked_at": None},
                                                 {"$set": {"revoked_at": self.clock.now()}})
        return result.modified_count

    async def authenticate(self, token: str, kind: str) -> Principal:
        doc = await self.sessions.find_one({"_id": hash_token(token)})
        if doc is None or doc["kind"] != kind:
            raise Unauthenticated(code="token_unknown", message="登录状态无效，请重新登录")
        if doc.get("revoked_at") is not None:
            raise Unauthenticated(code="token_revoked", message="登录已失效，请重新登录")
        if as_utc(doc["expires_at"]) <= self.clock.now():
            raise Unauthenticated(code="token_expired", message="登录已过期，请重新登录")
        if kind == "mp":
            user = await self.users.find_one({"_id": doc["subject"]}, {"openid": 1})
            if user is None:
                raise Unauthenticated(code="token_unknown", message="登录状态无效，请重新登录")
            return MpUser(user_id=user["_id"], openid=user["openid"])
        staff = await self.staff.find_one({"_id": doc["subject"]})
        if staff is None or staff.get("disabled"):
            raise Unauthenticated(code="token_revoked", message="登录已失效，请重新登录")
        return staff_from_doc(staff)

    async def sweep_expired(self) -> int:
        """Expiry is the application's job (no TTL indexes on FerretDB): delete old sessions."""
        result = await self.sessions.delete_many({"expires_at": {"$lt": self.clock.now()}})
        return result.deleted_count


def staff_from_doc(doc: dict[str, Any]) -> StaffUser:
    return StaffUser(staff_id=doc["_id"], username=doc["username"], name=doc.get("name", ""),
                     grants=tuple(Grant.from_doc(g) for g in doc.get("grants", [])))


# argon2id, RFC 9106 second recommended option (memory 64 MiB, 3 passes, 4 lanes).
_HASHER = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4)
_DUMMY_HASH = _HASHER.hash("not-a-real-password")


def _verify(hashed: str, password: str) -> bool:
    try:
        return _HASHER.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


async def hash_password(password: str) -> str:
    """argon2id is CPU- and memory-hard on purpose: run it off the IOLoop."""
    return await asyncio.get_running_loop().run_in_executor(None, _HASHER.hash, password)


def check_password_strength(password: str) -> None:
    if len(password) < 10 or password.isdigit() or password.isalpha():
        raise InvalidInput("密码至少 10 位，且须包含字母和数字",
                           code="weak_password", fields={"password": "密码强度不足"})


class StaffAccounts:
    """Staff sign-in with lock-out after repeated failures (atomic counter on the account)."""

    def __init__(self, db: AsyncDatabase, clock: Clock, sessions: SessionStore,
                 max_failures: int, lock_seconds: int, ttl_seconds: int) -> None:
        self.staff = db["staff"]
        self.failures = db["login_failures"]
        self.clock = clock
        self.sessions = sessions
        self.max_failures = max_failures
        self.lock_seconds = lock_seconds
        self.ttl_seconds = ttl_seconds

    async def create(self, username: str, password: str, name: str, grants: list[Grant]) -> str:
        check_password_strength(password)
        staff_id = "st_" + secrets.token_hex(8)
        await self.staff.insert_one({
            "_id": staff_id, "username": username, "name": name,
            "password_hash": await hash_password(password),
            "grants": [g.to_doc() for g in grants], "locked_until": None,
            "disabled": False, "created_at": self.clock.now(),
        })
        return staff_id

    async def login(self, username: str, password: str) -> tuple[str, Any, StaffUser]:
        now = self.clock.now()
        doc = await self.staff.find_one({"username": username})
        loop = asyncio.get_running_loop()
        if doc is None or doc.get("disabled"):
            await loop.run_in_executor(None, _verify, _DUMMY_HASH, password)  # same timing
            raise InvalidCredentials()
        if doc.get("locked_until") is not None and as_utc(doc["locked_until"]) > now:
            raise Locked()
        if not await loop.run_in_executor(None, _verify, doc["password_hash"], password):
            await self._record_failure(doc["_id"], now)
            raise InvalidCredentials()
        await self.staff.update_one({"_id": doc["_id"]},
                                    {"$set": {"locked_until": None, "last_login_at": now}})
        await self.failures.delete_many({"staff_id": doc["_id"]})  # a success resets the count
        token, expires_at = await self.sessions.issue("admin", doc["_id"], self.ttl_seconds)
        return token, expires_at, staff_from_doc(doc)

    async def _record_failure(self, staff_id: str, now: Any) -> None:
        # One inserted document per failure, counted afterwards: inserts are never lost, while
        # FerretDB 1.24 can lose concurrent $inc updates — and concurrent guessing is exactly
        # what a lock-out must withstand.
        await self.failures.insert_one({"staff_id": staff_id, "at": now})
        if await self.failures.count_documents({"staff_id": staff_id}) >= self.max_failures:
            await self.staff.update_one(
                {"_id": staff_id},
                {"$set": {"locked_until": now + timedelta(seconds=self.lock_seconds)}})
            await self.failures.delete_many({"staff_id": staff_id})
