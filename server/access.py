"""Scope checks: which community a caller may act on, and with which role."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from server.auth import ClientUser, MpUser, Principal, Role, StaffUser
from server.errors import Forbidden
from server.registry import Community, Registry

OUT_OF_SCOPE = "out_of_scope"


def staff_covers(staff: StaffUser, community: Community, roles: Iterable[Role]) -> bool:
    """True when one of the staff's grants with one of `roles` covers the community."""
    wanted = set(roles)
    for grant in staff.grants:
        if grant.role not in wanted:
            continue
        if grant.role is Role.COMMITTEE and grant.community_id == community.id:
            return True
        if grant.role is Role.PROPERTY and grant.company_id and grant.company_id == community.company_id:
            return True
        if grant.role is Role.OFFICIAL and grant.area_id in community.area_path:
            return True
        if grant.role is Role.PLATFORM_ADMIN:
            return True
    return False


def staff_community_filter(staff: StaffUser, roles: Iterable[Role]) -> dict[str, Any]:
    """A `communities` query matching exactly the communities the staff may see."""
    wanted = set(roles)
    clauses: list[dict[str, Any]] = []
    for grant in staff.grants:
        if grant.role not in wanted:
            continue
        if grant.role is Role.PLATFORM_ADMIN:
            return {}
        if grant.role is Role.COMMITTEE:
            clauses.append({"_id": grant.community_id})
        elif grant.role is Role.PROPERTY and grant.company_id:
            clauses.append({"company_id": grant.company_id})
        elif grant.role is Role.OFFICIAL:
            clauses.append({"area_path": grant.area_id})
    return {"$or": clauses} if clauses else {"_id": {"$in": []}}


ALL_STAFF_ROLES = (Role.COMMITTEE, Role.PROPERTY, Role.OFFICIAL, Role.PLATFORM_ADMIN)


class Access:
    """Loads the thing asked for and refuses callers outside its community."""

    # A user's active bindings are read on every mini-program request; on FerretDB's SQLite
    # backend that read scans the collection, so each process keeps them for a few seconds.
    # A binding change made by this process is seen at once (forget); by another, within TTL.
    BINDINGS_TTL_SECONDS = 5.0

    def __init__(self, db: AsyncDatabase, registry: Registry) -> None:
        self.db = db
        self.registry = registry
        self._bindings: dict[str, tuple[float, list[dict[str, Any]]]] = {}

    def forget(self, user_id: str) -> None:
        self._bindings.pop(user_id, None)

    async def _active_bindings(self, user_id: str, full: bool = False) -> list[dict[str, Any]]:
        """From the user document (read by _id); `full` reads the bindings collection itself."""
        now = time.monotonic()
        cached = self._bindings.get(user_id)
        if cached is not None and cached[0] > now and not full:
            return cached[1]
        if full:
            docs = await self.db["bindings"].find(
                {"user_id": user_id, "status": "active"}).to_list(None)
        else:
            user = await self.db["users"].find_one({"_id": user_id})
            docs = list((user or {}).get("active_bindings", []))
        if len(self._bindings) > 50_000:
            self._bindings.clear()
        self._bindings[user_id] = (now + self.BINDINGS_TTL_SECONDS, docs)
        return docs

    async def staff_community(self, principal: Principal | None, community_id: str,
                              roles: Iterable[Role] = ALL_STAFF_ROLES) -> Community:
        staff = require_staff(principal)
        community = await self.registry.community(community_id)
        if not staff_covers(staff, community, roles):
            raise Forbidden("无权访问该小区", code=OUT_OF_SCOPE)
        return community

    async def staff_area(self, principal: Principal | None, area_id: str) -> dict[str, Any]:
        """An official may act on their own area and everything below it."""
        staff = require_staff(principal)
        area = await self.registry.area(area_id)
        for grant in staff.grants:
            if grant.role is Role.PLATFORM_ADMIN or (
                grant.role is Role.OFFICIAL and grant.area_id in area["path"]
            ):
                return area
        raise Forbidden("无权访问该区域", code=OUT_OF_SCOPE)

    async def owner_bindings(self, principal: Principal | None, community_id: str | None = None,
                             roles: Iterable[str] = ("owner",)) -> list[dict[str, Any]]:
        user = require_mp(principal)
        wanted = set(roles)

        def matching(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [b for b in docs
                    if b["role"] in wanted and (not community_id or b["community_id"] == community_id)]

        found = matching(await self._active_bindings(user.user_id))
        if not found:  # before refusing anyone, ask the source of truth
            found = matching(await self._active_bindings(user.user_id, full=True))
        return found

    async def mp_community(self, principal: Principal | None, community_id: str,
                           roles: Iterable[str] = ("owner", "family", "tenant")) -> Community:
        """A mini-program user may read a community where they have an active binding."""
        if not await self.owner_bindings(principal, community_id, roles):
            raise Forbidden("您不是该小区的住户", code=OUT_OF_SCOPE)
        return await self.registry.community(community_id)


def require_staff(principal: Principal | None) -> StaffUser:
    if not isinstance(principal, StaffUser):
        raise Forbidden("仅限管理人员", code="staff_only")
    return principal


def require_mp(principal: Principal | None) -> MpUser:
    if not isinstance(principal, MpUser):
        raise Forbidden("仅限小程序用户", code="mp_only")
    return principal


def require_client(principal: Principal | None) -> ClientUser:
    if not isinstance(principal, ClientUser):
        raise Forbidden("仅限对接平台", code="client_only")
    return principal
