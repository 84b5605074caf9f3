"""The event outbox: domain modules record what happened; webhooks deliver it later.

`emit` is the one call a domain module makes (one line, after its own state change). It only
inserts into `events`; fan-out to subscriptions and delivery are `server/webhooks.py`'s job.

- The event id is derived from the occurrence (`type` + `key`), so a step that runs twice
  (two processes closing the same ballot, a repaired publish) records the event once.
- `seq` numbers the events of one subject (`ballot:bl_…`) 1, 2, 3…; it is allocated by
  inserting against the unique (subject, seq) index, never by a counter: FerretDB 1.24 can
  lose concurrent `$inc`s, a unique insert cannot be won twice.
- A failure here is logged and swallowed: the domain change has already happened and must not
  be reported as failed (no multi-document transactions, DOMAIN §6).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from server.clock import Clock, iso

log = logging.getLogger("server.outbox")
MAX_SEQ_RETRIES = 50


class EventType(StrEnum):
    """What a client can subscribe to."""

    BALLOT_PUBLISHED = "ballot.published"
    BALLOT_CLOSED = "ballot.closed"
    BALLOT_RESULT = "ballot.result"
    DISCLOSURE_PUBLISHED = "disclosure.published"
    COMPLAINT_ESCALATED = "complaint.escalated"
    CREDIT_LIST_PUBLISHED = "credit_list.published"


def complaint_event(doc: Mapping[str, Any]) -> dict[str, Any]:
    """What the city platform learns of an escalated complaint (no owner identity, no text)."""
    return {"complaint_id": doc["_id"], "community_id": doc["community_id"],
            "company_id": doc["company_id"], "category": doc["category"], "state": doc["state"],
            "level": doc["level"], "handler_area_id": doc["handler_area_id"] or None,
            "filed_at": iso(doc["filed_at"]),
            "due_at": iso(doc["due_at"]) if doc.get("due_at") else None,
            "version": doc["version"]}


def event_id(event_type: str, key: str) -> str:
    return "ev_" + hashlib.sha256(f"{event_type}\x1f{key}".encode()).hexdigest()[:24]


async def emit(db: AsyncDatabase, clock: Clock, event_type: EventType | str, subject: str,
               key: str, data: Mapping[str, Any], community_id: str = "",
               area_path: Iterable[str] = ()) -> str | None:
    """Record one event (idempotent per `key`); returns its id, or None if it could not be."""
    try:
        return await _insert(db, clock, str(event_type), subject, key, dict(data), community_id,
                             list(area_path))
    except Exception:  # the domain change stands; the event is logged as lost
        log.exception("event not recorded", extra={"event_type": str(event_type), "key": key})
        return None


async def _insert(db: AsyncDatabase, clock: Clock, event_type: str, subject: str, key: str,
                  data: dict[str, Any], community_id: str, area_path: list[str]) -> str:
    events = db["events"]
    eid = event_id(event_type, key)
    for _ in range(MAX_SEQ_RETRIES):
        if await events.find_one({"_id": eid}, {"_id": 1}) is not None:
            return eid  # already recorded by an earlier run of the same step
        last = await events.find({"subject": subject}, {"seq": 1}).sort("seq", -1).limit(1).to_list(None)
        seq = (last[0]["seq"] if last else 0) + 1
        try:
            await events.insert_one({
                "_id": eid, "type": event_type, "subject": subject, "seq": seq, "key": key,
                "community_id": community_id, "area_path": area_path, "data": data,
                "at": clock.now(), "fanned_out": False})
            return eid
        except DuplicateKeyError:
            continue  # same id (recorded meanwhile) or same seq (another event won it): retry
    raise RuntimeError(f"could not allocate a sequence number for {subject}")
