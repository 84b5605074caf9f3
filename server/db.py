"""The store: connect with PyMongo's async API, collection names, indexes created at start-up."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from server.errors import StoreUnavailable

# Index specs per collection. Only what FerretDB 1.x and MongoDB both support: plain, compound
# and unique indexes; no TTL, no partial, no sparse (DOMAIN.md §6). A unique index therefore
# never relies on a field being absent: every indexed field is always written.
INDEXES: dict[str, list[IndexModel]] = {
    "areas": [IndexModel([("parent", ASCENDING)])],
    "communities": [IndexModel([("area_path", ASCENDING)]), IndexModel([("company_id", ASCENDING)])],
    "buildings": [IndexModel([("community_id", ASCENDING), ("name", ASCENDING)], unique=True)],
    "units": [
        IndexModel([("community_id", ASCENDING), ("building_id", ASCENDING), ("number", ASCENDING)],
                   unique=True),
        IndexModel([("community_id", ASCENDING), ("owner_ids", ASCENDING)]),
    ],
    "owners": [
        IndexModel([("community_id", ASCENDING), ("id_hash", ASCENDING)], unique=True),
        IndexModel([("community_id", ASCENDING), ("phone_hash", ASCENDING)]),
    ],
    "users": [IndexModel([("openid", ASCENDING)], unique=True), IndexModel([("phone_hash", ASCENDING)])],
    "sessions": [IndexModel([("subject", ASCENDING)]), IndexModel([("expires_at", ASCENDING)])],
    "bindings": [
        IndexModel([("user_id", ASCENDING), ("unit_id", ASCENDING)], unique=True),
        IndexModel([("community_id", ASCENDING), ("status", ASCENDING)]),
    ],
    "staff": [IndexModel([("username", ASCENDING)], unique=True)],
    "login_failures": [IndexModel([("staff_id", ASCENDING), ("at", ASCENDING)])],
    "companies": [],
    "audit": [IndexModel([("community_id", ASCENDING), ("at", DESCENDING)]),
              IndexModel([("target", ASCENDING), ("at", ASCENDING)])],
    "roster_imports": [],
    "wechat_tokens": [],
    "leases": [],
    # Owner e-voting (server/ballots.py, casting.py, ledger.py): the log position is the _id of
    # its entry; a vote claim's _id is (ballot, person, round): one winner per round.
    "ballots": [IndexModel([("community_id", ASCENDING), ("created_at", DESCENDING)]),
                IndexModel([("status", ASCENDING), ("closes_at", ASCENDING)])],
    "ballot_rolls": [IndexModel([("ballot_id", ASCENDING), ("current_voter_owner_id", ASCENDING)]),
                     IndexModel([("ballot_id", ASCENDING), ("owner_ids", ASCENDING)])],
    "ballot_log": [IndexModel([("ballot_id", ASCENDING), ("seq", ASCENDING)], unique=True)],
    "vote_claims": [IndexModel([("ballot_id", ASCENDING), ("person_id", ASCENDING),
                                ("round", ASCENDING)]),
                    IndexModel([("state", ASCENDING), ("at", ASCENDING)])],
    "checkpoints": [IndexModel([("ballot_id", ASCENDING), ("size", DESCENDING)])],
    "vote_receipts": [IndexModel([("ballot_id", ASCENDING), ("person_id", ASCENDING)])],
    "proxy_auths": [], "paper_entries": [], "paper_confirmations": [], "vote_locks": [],
    "posters": [], "vote_notices": [],
    # Disclosures, ratings, complaints, credit (server/duties.py): a version is written once,
    # a person rates once per period, a list is published once per area and period.
    "attachments": [IndexModel([("community_id", ASCENDING), ("sha256", ASCENDING)], unique=True)],
    "disclosures": [
        IndexModel([("community_id", ASCENDING), ("publisher", ASCENDING), ("kind", ASCENDING),
                    ("period", ASCENDING), ("version", ASCENDING)], unique=True),
        IndexModel([("area_path", ASCENDING), ("kind", ASCENDING), ("period", ASCENDING)]),
    ],
    "rating_periods": [IndexModel([("quarter", ASCENDING), ("area_path", ASCENDING)])],
    "ratings": [
        IndexModel([("period_id", ASCENDING), ("person_key", ASCENDING)], unique=True),
        IndexModel([("period_id", ASCENDING), ("user_id", ASCENDING)]),
    ],
    "complaints": [
        IndexModel([("state", ASCENDING), ("due_at", ASCENDING)]),
        IndexModel([("community_id", ASCENDING), ("filed_at", DESCENDING)]),
        IndexModel([("filed_by", ASCENDING), ("filed_at", DESCENDING)]),
        IndexModel([("area_path", ASCENDING), ("quarter", ASCENDING)]),
    ],
    "complaint_notices": [IndexModel([("complaint_id", ASCENDING)])],
    "complaint_contacts": [],
    "credit_lists": [IndexModel([("inputs.company_id", ASCENDING)])],
    # Fees and WeChat Pay (server/fees.py, server/payments.py): every state change is guarded
    # by these unique keys, not by transactions.
    "fee_items": [IndexModel([("community_id", ASCENDING), ("name", ASCENDING)], unique=True)],
    "bills": [
        IndexModel([("community_id", ASCENDING), ("unit_id", ASCENDING), ("item_id", ASCENDING),
                    ("period", ASCENDING)], unique=True),
        IndexModel([("unit_id", ASCENDING), ("status", ASCENDING)]),
        IndexModel([("community_id", ASCENDING), ("period", ASCENDING), ("status", ASCENDING)]),
        IndexModel([("area_path", ASCENDING), ("period", ASCENDING)]),
    ],
    "pay_orders": [
        IndexModel([("out_trade_no", ASCENDING)], unique=True),
        IndexModel([("user_id", ASCENDING), ("created_at", DESCENDING)]),
        IndexModel([("status", ASCENDING), ("created_at", ASCENDING)]),
        IndexModel([("community_id", ASCENDING), ("created_at", DESCENDING)]),
    ],
    "receipts": [IndexModel([("order_id", ASCENDING)], unique=True)],
    "pay_notifications": [],
    "pay_rejections": [IndexModel([("at", DESCENDING)])],
    "pay_refunds": [IndexModel([("order_id", ASCENDING)]), IndexModel([("status", ASCENDING)])],
    "orphan_payments": [IndexModel([("community_id", ASCENDING), ("status", ASCENDING)])],
    "pay_reconciliations": [],
    "bill_locks": [IndexModel([("kind", ASCENDING), ("at", ASCENDING)])],
    "pay_outcomes": [],
    "refund_ledger": [IndexModel([("order_id", ASCENDING), ("seq", DESCENDING)])],
    "refund_outcomes": [],
    # City platform integration (server/integration.py, outbox.py, webhooks.py): nonces, rate
    # slots, event sequence numbers, delivery attempts and replays are claimed by unique keys.
    "open_clients": [],
    "open_nonces": [IndexModel([("expires_at", ASCENDING)])],
    "open_rate_slots": [IndexModel([("client_id", ASCENDING), ("window", ASCENDING)]),
                        IndexModel([("expires_at", ASCENDING)])],
    "events": [IndexModel([("subject", ASCENDING), ("seq", ASCENDING)], unique=True),
               IndexModel([("fanned_out", ASCENDING), ("at", ASCENDING)])],
    "webhook_subscriptions": [IndexModel([("client_id", ASCENDING)])],
    "webhook_deliveries": [
        IndexModel([("state", ASCENDING), ("next_attempt_at", ASCENDING)]),
        IndexModel([("subscription_id", ASCENDING), ("subject", ASCENDING), ("seq", ASCENDING)]),
        IndexModel([("client_id", ASCENDING), ("state", ASCENDING)]),
    ],
    "webhook_attempts": [IndexModel([("outcome", ASCENDING), ("at", ASCENDING)])],
    "webhook_replays": [],
    "report_entries": [],
}


@dataclass
class Store:
    """The connected client and database; one per process."""

    client: AsyncMongoClient
    db: AsyncDatabase

    async def close(self) -> None:
        await self.client.close()

    async def ping(self, timeout: float = 2.0) -> None:
        """Raise StoreUnavailable unless the store answers within `timeout` seconds."""
        try:
            await asyncio.wait_for(self.db.command("ping"), timeout)
        except (TimeoutError, PyMongoError) as exc:
            raise StoreUnavailable() from exc


def connect(uri: str, db_name: str) -> Store:
    """Create the client (connects lazily; nothing happens at import time)."""
    client: AsyncMongoClient = AsyncMongoClient(
        uri,
        tz_aware=True,
        serverSelectionTimeoutMS=2000,
        connectTimeoutMS=2000,
        # Retries stay on: a write is retried once after a failover, which with our
        # single-document, guarded updates cannot apply twice.
        retryWrites=True,
        appname="smartproperty",
    )
    return Store(client=client, db=client[db_name])


async def ensure_indexes(db: AsyncDatabase, extra: dict[str, list[IndexModel]] | None = None) -> None:
    """Create every index; idempotent (create_indexes is a no-op for existing ones)."""
    specs = {**INDEXES, **(extra or {})}
    for name, models in specs.items():
        # One index per call: FerretDB 1.24.2 panics (closing the connection) when a single
        # createIndexes names several indexes that all exist already — i.e. on every restart.
        for model in models:
            await db[name].create_indexes([model])
