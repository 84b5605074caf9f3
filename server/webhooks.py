"""Webhooks: subscriptions, fan-out of outbox events, signed deliveries with back-off, dead letters.

One tick (run every few seconds under the "webhook-delivery" lease):

1. fan-out: each event not yet fanned out gets one delivery per matching, in-scope subscription
   (`_id` = event:subscription, so a second fan-out inserts nothing new);
2. interrupted attempts (a process died mid-POST) are finished as failures;
3. due deliveries are sent. Per subscription and subject only the lowest pending `seq` may go,
   and not while an earlier event of that subject is still waiting to be fanned out: event n+1
   of a ballot never reaches a receiver before event n is delivered or dead-lettered.

Exactly-once *attempts*: attempt n of a delivery is claimed by inserting `<delivery>#<n>` into
`webhook_attempts`; only the winner POSTs. So two processes ticking together (or a lease that
lapsed mid-tick) never send the same attempt twice. The receiver still deduplicates by event id
(a POST whose 2xx reply was lost is retried — at-least-once delivery, docs/integration.md).

After the last retry of the schedule a delivery is `dead`; an operator's replay moves it back
to `pending` with a fresh schedule, claimed by a unique insert so two clicks replay it once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import httpx
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from server.audit import Audit, actor_of
from server.auth import ClientUser, Principal
from server.clock import Clock, as_utc, iso
from server.errors import Conflict, InvalidInput, NotFound
from server.integration import Integration, page
from server.leases import Lease
from server.outbox import EventType

log = logging.getLogger("server.webhooks")
PARALLEL = 16


class DeliveryState(StrEnum):
    """A delivery waits (pending), arrived (delivered) or gave up (dead, in the dead-letter list)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


def webhook_signature(secret: str, timestamp: str, event_id: str, body: bytes) -> str:
    """hex HMAC-SHA256(secret, TIMESTAMP \\n EVENT_ID \\n BODY) — what receivers recompute."""
    message = f"{timestamp}\n{event_id}\n".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def event_body(event: Mapping[str, Any]) -> bytes:
    return json.dumps({"id": event["_id"], "type": event["type"], "subject": event["subject"],
                       "seq": event["seq"], "occurred_at": iso(event["at"]),
                       "data": event["data"]},
                      ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def subscription_to_json(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "client_id": doc["client_id"], "url": doc["url"],
            "events": doc["events"], "status": doc["status"], "created_at": iso(doc["created_at"])}


def delivery_to_json(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "event_id": doc["event_id"], "event_type": doc["type"],
            "subject": doc["subject"], "seq": doc["seq"], "client_id": doc["client_id"],
            "subscription_id": doc["subscription_id"], "state": doc["state"],
            "attempts": doc["attempts"], "replays": doc["replays"],
            "next_attempt_at": iso(doc["next_attempt_at"]) if doc.get("next_attempt_at") else None,
            "last_error": doc.get("last_error", ""),
            "delivered_at": iso(doc["delivered_at"]) if doc.get("delivered_at") else None,
            "dead_at": iso(doc["dead_at"]) if doc.get("dead_at") else None}


def _in_scope(client: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    user = ClientUser(client["_id"], tuple(client["area_ids"]), tuple(client["community_ids"]))
    return (bool(event["community_id"]) and event["community_id"] in user.community_ids) or any(
        a in user.area_ids for a in event["area_path"])


class Webhooks:
    """Subscriptions, the delivery job and the dead-letter list."""

    def __init__(self, db: AsyncDatabase, clock: Clock, integration: Integration, audit: Audit,
                 schedule: tuple[int, ...], timeout_seconds: float, allow_http: bool) -> None:
        self.db = db
        self.events = db["events"]
        self.subs = db["webhook_subscriptions"]
        self.deliveries = db["webhook_deliveries"]
        self.attempts = db["webhook_attempts"]
        self.replays = db["webhook_replays"]
        self.clock = clock
        self.integration = integration
        self.audit = audit
        self.schedule = schedule
        self.timeout = timeout_seconds
        # An attempt claimed longer ago than this is treated as interrupted (its POST timed out).
        self.stale_after = timedelta(seconds=timeout_seconds * 2 + 30)
        self.allow_http = allow_http
        self.lease = Lease(db, clock, "webhook-delivery", timedelta(seconds=30))
        self._http: httpx.AsyncClient | None = None

    # -- subscriptions ------------------------------------------------------------------------
    async def subscribe(self, principal: Principal, client_id: str, url: str,
                        events: list[str]) -> dict[str, Any]:
        await self.integration.get(client_id)
        parts = urlsplit(url)
        if parts.scheme != "https" and not (self.allow_http and parts.scheme == "http"):
            raise InvalidInput("回调地址须为 https", code="webhook_url_invalid",
                               fields={"url": "须为 https:// 地址"})
        if not parts.netloc:
            raise InvalidInput(fields={"url": "地址不完整"})
        doc = {"_id": "ws_" + secrets.token_hex(8), "client_id": client_id, "url": url,
               "events": sorted(set(events)), "status": "active", "created_at": self.clock.now(),
               "created_by": actor_of(principal)}
        await self.subs.insert_one(doc)
        await self.audit.record(principal, "webhook.subscribe", community_id="", target=doc["_id"],
                                detail={"client_id": client_id, "url": url, "events": doc["events"]})
        return subscription_to_json(doc)

    async def subscriptions(self, client_id: str) -> list[dict[str, Any]]:
        docs = await self.subs.find({"client_id": client_id}).sort("_id", 1).to_list(None)
        return [subscription_to_json(d) for d in docs]

    async def subscription(self, subscription_id: str) -> dict[str, Any]:
        doc = await self.subs.find_one({"_id": subscription_id})
        if doc is None:
            raise NotFound("订阅不存在", code="subscription_not_found")
        return doc

    async def unsubscribe(self, principal: Principal, subscription_id: str) -> dict[str, Any]:
        doc = await self.subscription(subscription_id)
        await self.subs.update_one({"_id": doc["_id"]}, {"$set": {"status": "disabled"}})
        await self.audit.record(principal, "webhook.unsubscribe", community_id="",
                                target=doc["_id"], detail={"client_id": doc["client_id"]})
        return subscription_to_json({**doc, "status": "disabled"})

    # -- the job ------------------------------------------------------------------------------
    async def tick(self) -> dict[str, int]:
        done = {"fanned_out": await self.fan_out(), "interrupted": await self.finish_interrupted()}
        done.update(await self.deliver_due())
        done["swept"] = await self.integration.sweep()
        return done

    async def fan_out(self, limit: int = 500) -> int:
        pending = await self.events.find({"fanned_out": False}).sort(
            [("at", 1), ("seq", 1)]).limit(limit).to_list(None)
        if not pending:
            return 0
        subs = await self.subs.find({"status": "active"}).to_list(None)
        clients = {d["_id"]: d for d in await self.integration.clients.find(
            {"_id": {"$in": sorted({s["client_id"] for s in subs})}}).to_list(None)}
        paths: dict[str, list[str]] = {}
        for event in pending:
            if event["community_id"] and not event["area_path"]:
                # Emitters name the community only; its place is looked up here, once.
                cid = event["community_id"]
                if cid not in paths:
                    found = await self.db["communities"].find_one({"_id": cid}, {"area_path": 1})
                    paths[cid] = list(found["area_path"]) if found else []
                event = {**event, "area_path": paths[cid]}
            rows = [self._delivery(event, s) for s in subs
                    if event["type"] in s["events"] and s["client_id"] in clients
                    and clients[s["client_id"]]["status"] == "active"
                    and _in_scope(clients[s["client_id"]], event)]
            if rows:
                try:
                    await self.deliveries.insert_many(rows, ordered=False)
                except BulkWriteError:
                    pass  # fanned out by another process already: same ids
            await self.events.update_one({"_id": event["_id"]}, {"$set": {"fanned_out": True}})
        return len(pending)

    def _delivery(self, event: Mapping[str, Any], sub: Mapping[str, Any]) -> dict[str, Any]:
        return {"_id": f"{event['_id']}:{sub['_id']}", "event_id": event["_id"],
                "subscription_id": sub["_id"], "client_id": sub["client_id"],
                "type": event["type"], "subject": event["subject"], "seq": event["seq"],
                "state": DeliveryState.PENDING.value, "attempts": 0, "cycle_start": 0,
                "replays": 0, "next_attempt_at": self.clock.now(), "last_error": "",
                "created_at": self.clock.now()}

    async def deliver_due(self, limit: int = 500) -> dict[str, int]:
        now = self.clock.now()
        due = await self.deliveries.find(
            {"state": DeliveryState.PENDING.value, "next_attempt_at": {"$lte": now}}
        ).sort([("subject", 1), ("seq", 1)]).limit(limit).to_list(None)
        heads: dict[tuple[str, str], dict[str, Any]] = {}
        for d in due:
            heads.setdefault((d["subscription_id"], d["subject"]), d)  # lowest seq only
        ready = [d for d in heads.values() if not await self._blocked(d)]
        gate = asyncio.Semaphore(PARALLEL)

        async def one(d: dict[str, Any]) -> str:
            async with gate:
                return await self.attempt(d)

        outcomes = await asyncio.gather(*(one(d) for d in ready))
        return {"delivered": outcomes.count("delivered"), "failed": outcomes.count("failed"),
                "dead": outcomes.count("dead")}

    async def _blocked(self, d: Mapping[str, Any]) -> bool:
        """An earlier event of the same subject is still on its way to this subscription."""
        earlier = {"subject": d["subject"], "seq": {"$lt": d["seq"]}}
        if await self.events.find_one({**earlier, "fanned_out": False}, {"_id": 1}):
            return True
        return await self.deliveries.find_one(
            {**earlier, "subscription_id": d["subscription_id"],
             "state": DeliveryState.PENDING.value}, {"_id": 1}) is not None

    async def attempt(self, d: Mapping[str, Any]) -> str:
        """One attempt, if this caller wins its claim: 'delivered', 'failed', 'dead' or 'skipped'."""
        n = d["attempts"]
        claim = {"_id": f"{d['_id']}#{n}", "delivery_id": d["_id"], "attempt": n,
                 "at": self.clock.now(), "outcome": ""}
        try:
            await self.attempts.insert_one(claim)
        except DuplicateKeyError:
            return "skipped"  # another process is making (or made) this attempt
        ok, status, error = await self._post(d, n)
        return await self._record(d, n, ok, status, error)

    async def _post(self, d: Mapping[str, Any], n: int) -> tuple[bool, int, str]:
        event = await self.events.find_one({"_id": d["event_id"]})
        sub = await self.subs.find_one({"_id": d["subscription_id"]})
        client = await self.integration.clients.find_one({"_id": d["client_id"]})
        if event is None or sub is None or client is None:
            return False, 0, "subscription or client removed"
        if sub["status"] != "active" or client["status"] != "active":
            return False, 0, "subscription or client disabled"
        body = event_body(event)
        timestamp = str(int(self.clock.now().timestamp()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-Webhook-Id": event["_id"], "X-Webhook-Timestamp": timestamp,
            "X-Webhook-Signature": webhook_signature(self.integration.secret_of(client),
                                                     timestamp, event["_id"], body),
            "X-Webhook-Attempt": str(n + 1), "User-Agent": "smartproperty-webhooks/1",
        }
        try:
            reply = await self.http.post(sub["url"], content=body, headers=headers)
        except httpx.HTTPError as exc:
            return False, 0, f"{type(exc).__name__}"
        if 200 <= reply.status_code < 300:
            return True, reply.status_code, ""
        return False, reply.status_code, f"HTTP {reply.status_code}"

    async def _record(self, d: Mapping[str, Any], n: int, ok: bool, status: int,
                      error: str) -> str:
        now = self.clock.now()
        await self.attempts.update_one({"_id": f"{d['_id']}#{n}"},
                                       {"$set": {"outcome": "ok" if ok else "failed",
                                                 "status": status, "error": error,
                                                 "finished_at": now}})
        update: dict[str, Any] = {"attempts": n + 1, "last_status": status, "last_error": error,
                                  "last_attempt_at": now}
        if ok:
            outcome = "delivered"
            update.update(state=DeliveryState.DELIVERED.value, delivered_at=now,
                          next_attempt_at=None)
        else:
            made = n + 1 - d.get("cycle_start", 0)  # attempts made in this cycle
            if made > len(self.schedule):
                outcome = "dead"
                update.update(state=DeliveryState.DEAD.value, dead_at=now, next_attempt_at=None)
            else:
                outcome = "failed"
                update["next_attempt_at"] = now + timedelta(seconds=self.schedule[made - 1])
        # Only the claimer of attempt n writes this (guarded by the attempt count as well).
        await self.deliveries.update_one({"_id": d["_id"], "attempts": n}, {"$set": update})
        if outcome == "dead":
            log.warning("webhook delivery dead-lettered",
                        extra={"delivery": d["_id"], "error": error})
        return outcome

    async def finish_interrupted(self) -> int:
        """Attempts whose claimer died mid-POST count as failed, so the schedule goes on."""
        cutoff = self.clock.now() - self.stale_after
        finished = 0
        async for claim in self.attempts.find({"outcome": "", "at": {"$lt": cutoff}}):
            d = await self.deliveries.find_one({"_id": claim["delivery_id"]})
            if d is not None and d["attempts"] == claim["attempt"] and d["state"] == "pending":
                await self._record(d, claim["attempt"], False, 0, "interrupted")
                finished += 1
            else:
                await self.attempts.update_one({"_id": claim["_id"]},
                                               {"$set": {"outcome": "failed"}})
        return finished

    # -- dead letters -------------------------------------------------------------------------
    async def dead_letters(self, client_id: str | None, cursor: str | None,
                           limit: int) -> dict[str, Any]:
        query: dict[str, Any] = {"state": DeliveryState.DEAD.value}
        if client_id:
            query["client_id"] = client_id
        docs, next_cursor = await page(self.deliveries, query, cursor, limit)
        return {"items": [delivery_to_json(d) for d in docs], "next_cursor": next_cursor}

    async def delivery(self, delivery_id: str) -> dict[str, Any]:
        doc = await self.deliveries.find_one({"_id": delivery_id})
        if doc is None:
            raise NotFound("投递记录不存在", code="delivery_not_found")
        return doc

    async def replay(self, principal: Principal, delivery_id: str) -> dict[str, Any]:
        """Back from the dead-letter list with a fresh schedule; two clicks replay it once."""
        doc = await self.delivery(delivery_id)
        if doc["state"] != DeliveryState.DEAD:
            raise Conflict("只有死信可以重放", code="delivery_not_dead")
        try:
            await self.replays.insert_one({"_id": f"{doc['_id']}#r{doc['replays']}",
                                           "delivery_id": doc["_id"], "at": self.clock.now(),
                                           "by": actor_of(principal)})
        except DuplicateKeyError:
            raise Conflict("该死信已在重放", code="delivery_not_dead") from None
        now = self.clock.now()
        await self.deliveries.update_one(
            {"_id": doc["_id"], "state": DeliveryState.DEAD.value, "replays": doc["replays"]},
            {"$set": {"state": DeliveryState.PENDING.value, "cycle_start": doc["attempts"],
                      "next_attempt_at": now, "replays": doc["replays"] + 1, "dead_at": None}})
        await self.audit.record(principal, "webhook.replay", community_id="", target=doc["_id"],
                                detail={"event_id": doc["event_id"], "client_id": doc["client_id"]})
        return delivery_to_json(await self.delivery(delivery_id))

    # -- plumbing -----------------------------------------------------------------------------
    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def run_forever(self, period: float) -> None:
        while True:
            try:
                if await self.lease.acquire():
                    await self.tick()
            except Exception:  # keep the job alive through store outages
                log.warning("webhook tick failed", exc_info=True)
            await asyncio.sleep(period)


EVENT_TYPES = tuple(e.value for e in EventType)


def next_times(schedule: tuple[int, ...], start: datetime) -> list[datetime]:
    """When the attempts of one cycle happen if every one fails (for docs and tests)."""
    out, at = [as_utc(start)], as_utc(start)
    for delay in schedule:
        at = at + timedelta(seconds=delay)
        out.append(at)
    return out
