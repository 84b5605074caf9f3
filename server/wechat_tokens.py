"""The WeChat access_token cache in the store, shared by every server process."""

from __future__ import annotations

from datetime import datetime

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from miniprogram_api.wechat import CachedToken
from server.clock import as_utc


class StoreTokenCache:
    """TokenCache on one document per appid; `put` and `invalidate` are compare-and-set."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.tokens = db["wechat_tokens"]

    async def get(self, appid: str) -> CachedToken | None:
        doc = await self.tokens.find_one({"_id": appid})
        return None if doc is None else CachedToken(doc["token"], as_utc(doc["expires_at"]))

    async def put(self, appid: str, token: str, expires_at: datetime) -> CachedToken:
        try:
            doc = await self.tokens.find_one_and_update(
                {"_id": appid, "expires_at": {"$lt": expires_at}},
                {"$set": {"token": token, "expires_at": expires_at}},
                upsert=True, return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:
            doc = None  # a newer token is stored already (the upsert collided with it)
        if doc is None:
            doc = await self.tokens.find_one({"_id": appid})
        assert doc is not None
        return CachedToken(doc["token"], as_utc(doc["expires_at"]))

    async def invalidate(self, appid: str, token: str) -> None:
        await self.tokens.delete_one({"_id": appid, "token": token})
