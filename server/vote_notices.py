"""Subscribe-message notices of votes recorded in an owner's name (best effort, off the request)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from miniprogram_api.wechat import WeChatError
from server.clock import Clock

log = logging.getLogger(__name__)


class VoteNotices:
    """Tells every user bound as owner of the voter's units that a vote was recorded."""

    def __init__(self, db: AsyncDatabase, clock: Clock, wechat: Any, template_id: str) -> None:
        self.db = db
        self.clock = clock
        self.wechat = wechat
        self.template_id = template_id
        self._tasks: set[asyncio.Task[None]] = set()

    async def notify(self, ballot: dict[str, Any], person: dict[str, Any],
                     receipt: dict[str, Any]) -> None:
        if not self.template_id:
            return
        task = asyncio.create_task(self._send(ballot, person, receipt))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, ballot: dict[str, Any], person: dict[str, Any],
                    receipt: dict[str, Any]) -> None:
        bindings = await self.db["bindings"].find(
            {"owner_id": {"$in": person["owner_ids"]}, "role": "owner", "status": "active"}
        ).to_list(None)
        for user_id in sorted({b["user_id"] for b in bindings}):
            user = await self.db["users"].find_one({"_id": user_id}, {"openid": 1})
            if user is None:
                continue
            data = {"thing1": ballot["title"][:20], "time2": receipt["cast_at"][:16].replace("T", " "),
                    "character_string3": f"{receipt['index']}"}
            status = "sent"
            try:
                await self.wechat.send_subscribe_message(user["openid"], self.template_id, data,
                                                         page=f"pages/ballot/index?id={ballot['_id']}")
            except WeChatError as exc:
                status = exc.code  # no quota (43101) is normal: the receipt is in the app anyway
            await self.db["vote_notices"].insert_one({
                "ballot_id": ballot["_id"], "index": receipt["index"], "user_id": user_id,
                "status": status, "at": self.clock.now()})

    async def drain(self) -> None:
        """Wait for notices in flight (tests, shutdown)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
