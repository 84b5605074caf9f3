"""Leases in the store: one process at a time runs a periodic job (others stand by)."""

from __future__ import annotations

import secrets
from datetime import timedelta

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from server.clock import Clock


class Lease:
    """A named lease held by this process until it lapses; acquire() renews it."""

    def __init__(self, db: AsyncDatabase, clock: Clock, name: str, ttl: timedelta) -> None:
        self.leases = db["leases"]
        self.clock = clock
        self.name = name
        self.ttl = ttl
        self.holder = secrets.token_hex(8)

    async def acquire(self) -> bool:
        now = self.clock.now()
        try:
            await self.leases.update_one(
                {"_id": self.name, "$or": [{"holder": self.holder}, {"expires_at": {"$lte": now}}]},
                {"$set": {"holder": self.holder, "expires_at": now + self.ttl}}, upsert=True)
        except DuplicateKeyError:
            return False  # held by another process and not expired: the upsert collided
        return True
