"""The audit trail: who did what, when, to what, and why. Entries are only ever inserted."""

from __future__ import annotations

import secrets
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from server.auth import ClientUser, MpUser, Principal, StaffUser
from server.clock import Clock, iso


def actor_of(principal: Principal | None) -> dict[str, str]:
    if isinstance(principal, StaffUser):
        return {"kind": "staff", "id": principal.staff_id, "name": principal.username}
    if isinstance(principal, MpUser):
        return {"kind": "mp", "id": principal.user_id, "name": ""}
    if isinstance(principal, ClientUser):
        return {"kind": "client", "id": principal.client_id, "name": ""}
    return {"kind": "system", "id": "system", "name": ""}


class Audit:
    """Appends audit entries; reads them back per community or per target."""

    def __init__(self, db: AsyncDatabase, clock: Clock) -> None:
        self.entries = db["audit"]
        self.clock = clock

    async def record(self, principal: Principal | None, action: str, *, community_id: str,
                     target: str, detail: dict[str, Any] | None = None, reason: str = "") -> None:
        await self.entries.insert_one({
            "_id": "au_" + secrets.token_hex(10), "at": self.clock.now(),
            "actor": actor_of(principal), "action": action, "community_id": community_id,
            "target": target, "detail": detail or {}, "reason": reason,
        })

    async def for_community(self, community_id: str, limit: int = 100) -> list[dict[str, Any]]:
        docs = await self.entries.find({"community_id": community_id}).sort(
            "at", -1).limit(limit).to_list(None)
        return [{"id": d["_id"], "at": iso(d["at"]), "actor": d["actor"], "action": d["action"],
                 "target": d["target"], "detail": d["detail"], "reason": d["reason"]} for d in docs]
