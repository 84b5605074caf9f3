"""Scheduled voting work: close due ballots, checkpoint open logs, resolve stalled claims, remind.

Each step is a guarded single-document transition, so it happens exactly once even when several
processes run it; the lease only keeps them from doing the same work twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from miniprogram_api.wechat import WeChatError
from server.ballots import Ballots, BallotStatus
from server.casting import Casting
from server.clock import Clock, as_utc
from server.leases import Lease
from server.ledger import Ledger

log = logging.getLogger(__name__)
REMIND_BEFORE = timedelta(hours=24)


class VotingJobs:
    """One tick does everything that is due; `run_forever` ticks every second under a lease."""

    def __init__(self, db: AsyncDatabase, clock: Clock, ballots: Ballots, ledger: Ledger,
                 casting: Casting, wechat: Any, checkpoint_interval: timedelta,
                 template_id: str) -> None:
        self.db = db
        self.clock = clock
        self.ballots = ballots
        self.ledger = ledger
        self.casting = casting
        self.wechat = wechat
        self.checkpoint_interval = checkpoint_interval
        self.template_id = template_id
        self.lease = Lease(db, clock, "voting-jobs", timedelta(seconds=15))

    async def tick(self) -> dict[str, int]:
        now = self.clock.now()
        done = {"closed": 0, "checkpoints": 0, "claims": 0, "reminders": 0}
        done["claims"] = await self.casting.sweep_stale_claims()
        async for doc in self.db["ballots"].find(
                {"status": {"$in": [BallotStatus.PUBLISHED.value, BallotStatus.CLOSING.value]},
                 "closes_at": {"$lte": now}}, {"_id": 1}):
            if await self.ballots.close(doc["_id"]) is not None:
                done["closed"] += 1
        async for doc in self.db["ballots"].find({"status": BallotStatus.PUBLISHED.value}):
            await self.ballots.write_opening_entries(doc)  # repairs a publish that crashed
            latest = await self.ledger.latest_checkpoint(doc["_id"])
            if latest is None or now - as_utc(latest["at"]) >= self.checkpoint_interval:
                before = latest["size"] if latest else 0
                made = await self.ledger.checkpoint(doc["_id"])
                if made is not None and made["size"] > before:
                    done["checkpoints"] += 1
            if as_utc(doc["opens_at"]) <= now and as_utc(doc["closes_at"]) - now <= REMIND_BEFORE:
                done["reminders"] += await self.remind(doc)
        return done

    async def remind(self, ballot: dict[str, Any]) -> int:
        """Remind owners who have not voted, once per ballot (the guarded flag decides)."""
        claimed = await self.db["ballots"].update_one(
            {"_id": ballot["_id"], "reminded_at": {"$exists": False}},
            {"$set": {"reminded_at": self.clock.now()}})
        if claimed.modified_count == 0 or not self.template_id:
            return 0
        voted = set(await self.db["vote_claims"].distinct("person_id", {"ballot_id": ballot["_id"]}))
        sent = 0
        async for person in self.db["ballot_rolls"].find({"ballot_id": ballot["_id"]}):
            if person["person_id"] in voted or not person["voter_owner_id"]:
                continue
            async for binding in self.db["bindings"].find(
                    {"owner_id": person["voter_owner_id"], "role": "owner", "status": "active"}):
                user = await self.db["users"].find_one({"_id": binding["user_id"]}, {"openid": 1})
                if user is None:
                    continue
                with contextlib.suppress(WeChatError):
                    await self.wechat.send_subscribe_message(
                        user["openid"], self.template_id,
                        {"thing1": ballot["title"][:20],
                         "time2": as_utc(ballot["closes_at"]).strftime("%Y-%m-%d %H:%M")},
                        page=f"pages/ballot/index?id={ballot['_id']}")
                    sent += 1
        return sent

    async def run_forever(self, period: float = 1.0) -> None:
        while True:
            try:
                if await self.lease.acquire():
                    await self.tick()
            except Exception:  # keep the scheduler alive through store outages
                log.warning("voting jobs tick failed", exc_info=True)
            await asyncio.sleep(period)
