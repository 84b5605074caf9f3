"""The per-ballot append-only log in the store: positions, entries, checkpoints, proofs.

Positions are handed out by one atomic `$inc` on the ballot document; an entry is written with
its position as `_id`, so a position holds at most one entry, ever. Nothing here updates or
deletes an entry. A position whose writer died is filled with a `void` entry by whoever notices
first (the unique `_id` decides), so the log has no gaps and stays a valid Merkle log.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from server.clock import Clock, iso
from server.errors import StoreUnavailable
from voting.checkpoint import Checkpoint, NoteSigner, sign_checkpoint
from voting.merkle import MerkleTree
from voting.records import entry_leaf_hash
from voting.signing import Keyring, KeyPurpose

CHECKPOINT_SIGNER = "smartproperty-checkpoint"


class PositionTaken(Exception):
    """The log position was filled by someone else (a void after our writer stalled)."""


def entry_id(ballot_id: str, seq: int) -> str:
    return f"{ballot_id}:{seq:09d}"


@dataclass(frozen=True)
class LogEntry:
    """One stored entry: its position, the committed entry, the private part (if split)."""

    seq: int
    entry: dict[str, Any]
    private: dict[str, Any] | None
    leaf: bytes
    written_at: datetime


class Ledger:
    """Appends to and reads ballot logs; signs checkpoints."""

    def __init__(self, db: AsyncDatabase, clock: Clock, keyring: Keyring, origin: str) -> None:
        self.db = db
        self.clock = clock
        self.keyring = keyring
        self.origin_base = origin
        key = keyring.active_key(KeyPurpose.CHECKPOINT)
        self.signer = NoteSigner.from_signing_key(CHECKPOINT_SIGNER, key)
        self._trees: dict[str, MerkleTree] = {}

    def origin(self, ballot_id: str) -> str:
        return f"{self.origin_base}/ballot/{ballot_id}"

    # -- positions and writes --------------------------------------------------------------
    async def reserve(self, ballot_id: str, guard: dict[str, Any] | None = None) -> int | None:
        """The next position, atomically; None when the guard no longer matches the ballot."""
        doc = await self.db["ballots"].find_one_and_update(
            {"_id": ballot_id, **(guard or {})},
            {"$inc": {"log_next": 1}, "$set": {"log_touched_at": self.clock.now()}},
            return_document=ReturnDocument.AFTER)  # (FerretDB 1.x: no projection here)
        return None if doc is None else int(doc["log_next"]) - 1

    async def write(self, ballot_id: str, seq: int, entry: dict[str, Any],
                    private: dict[str, Any] | None = None) -> bytes:
        """Write the entry at `seq`; raises PositionTaken if that position is filled."""
        leaf = entry_leaf_hash(entry)
        try:
            await self.db["ballot_log"].insert_one({
                "_id": entry_id(ballot_id, seq), "ballot_id": ballot_id, "seq": seq,
                "type": entry["type"], "entry": entry, "private": private, "leaf": leaf.hex(),
                "written_at": self.clock.now(),
            })
        except DuplicateKeyError:
            raise PositionTaken(entry_id(ballot_id, seq)) from None
        return leaf

    async def write_once(self, ballot_id: str, seq: int, entry: dict[str, Any]) -> None:
        """Write a deterministic entry (manifest, roll, close, result); a repeat is a no-op."""
        try:
            await self.write(ballot_id, seq, entry)
        except PositionTaken:
            existing = await self.db["ballot_log"].find_one({"_id": entry_id(ballot_id, seq)})
            if existing is None or existing["leaf"] != entry_leaf_hash(entry).hex():
                raise

    async def fill_void(self, ballot_id: str, seq: int, reason: str) -> bool:
        """Fill an abandoned position; False if its writer got there first."""
        try:
            await self.write(ballot_id, seq, {"type": "void", "ballot_id": ballot_id,
                                              "reason": reason})
            return True
        except PositionTaken:
            return False

    # -- reads ------------------------------------------------------------------------------
    async def entries(self, ballot_id: str, start: int = 0) -> list[LogEntry]:
        cursor = self.db["ballot_log"].find({"ballot_id": ballot_id, "seq": {"$gte": start}})
        docs = await cursor.sort("seq", 1).to_list(None)
        return [LogEntry(d["seq"], d["entry"], d.get("private"), bytes.fromhex(d["leaf"]),
                         d["written_at"]) for d in docs]

    async def entry(self, ballot_id: str, seq: int) -> LogEntry | None:
        d = await self.db["ballot_log"].find_one({"_id": entry_id(ballot_id, seq)})
        if d is None:
            return None
        return LogEntry(d["seq"], d["entry"], d.get("private"), bytes.fromhex(d["leaf"]),
                        d["written_at"])

    async def tree(self, ballot_id: str) -> MerkleTree:
        """The Merkle tree of the contiguous prefix of the log (cached, extended on demand)."""
        tree = self._trees.get(ballot_id) or MerkleTree()
        docs = await self.db["ballot_log"].find(
            {"ballot_id": ballot_id, "seq": {"$gte": tree.size}}, {"seq": 1, "leaf": 1}
        ).sort("seq", 1).to_list(None)
        for d in docs:
            if d["seq"] != tree.size:
                break  # a gap: a position reserved but not yet written
            tree.append_leaf_hash(bytes.fromhex(d["leaf"]))
        self._trees[ballot_id] = tree
        return tree

    # -- gaps and checkpoints ---------------------------------------------------------------
    async def fill_stale_gaps(self, ballot_id: str, log_next: int, older_than: timedelta) -> int:
        """Void positions below `log_next` that stayed empty longer than `older_than`."""
        tree = await self.tree(ballot_id)
        present = {d["seq"] for d in await self.db["ballot_log"].find(
            {"ballot_id": ballot_id, "seq": {"$gte": tree.size}}, {"seq": 1}).to_list(None)}
        filled = 0
        for seq in range(tree.size, log_next):
            if seq in present:
                continue
            claim = await self.db["vote_claims"].find_one({"ballot_id": ballot_id, "seq": seq})
            reserved_at = claim["at"] if claim else None
            if reserved_at is not None and self.clock.now() - reserved_at < older_than:
                continue
            if claim is None and not await self._reservation_is_old(ballot_id, older_than):
                continue
            if await self.fill_void(ballot_id, seq, "abandoned"):
                filled += 1
        return filled

    async def _reservation_is_old(self, ballot_id: str, older_than: timedelta) -> bool:
        doc = await self.db["ballots"].find_one({"_id": ballot_id}, {"log_touched_at": 1})
        touched = doc.get("log_touched_at") if doc else None
        return touched is None or self.clock.now() - touched >= older_than

    async def checkpoint(self, ballot_id: str) -> dict[str, Any] | None:
        """Sign a checkpoint of the contiguous prefix if it grew; idempotent across processes."""
        tree = await self.tree(ballot_id)
        if tree.size == 0:
            return None
        last = await self.latest_checkpoint(ballot_id)
        if last is not None and last["size"] >= tree.size:
            return last
        note = sign_checkpoint(Checkpoint(self.origin(ballot_id), tree.size, tree.root()),
                               [self.signer])
        doc = {"_id": entry_id(ballot_id, tree.size), "ballot_id": ballot_id, "size": tree.size,
               "root": tree.root().hex(), "note": note, "at": self.clock.now()}
        try:
            await self.db["checkpoints"].insert_one(doc)
        except DuplicateKeyError:
            pass  # another process signed the same size: Ed25519 is deterministic, same note
        return doc

    async def latest_checkpoint(self, ballot_id: str) -> dict[str, Any] | None:
        docs = await self.db["checkpoints"].find({"ballot_id": ballot_id}).sort(
            "size", -1).limit(1).to_list(None)
        return docs[0] if docs else None

    async def checkpoints(self, ballot_id: str) -> list[dict[str, Any]]:
        return await self.db["checkpoints"].find({"ballot_id": ballot_id}).sort(
            "size", 1).to_list(None)

    async def inclusion(self, ballot_id: str, seq: int) -> dict[str, Any] | None:
        """The newest checkpoint covering `seq` and the inclusion proof against it."""
        checkpoint = await self.latest_checkpoint(ballot_id)
        if checkpoint is None or checkpoint["size"] <= seq:
            return None
        tree = await self.tree(ballot_id)
        proof = tree.inclusion_proof(seq, checkpoint["size"])
        return {"checkpoint": checkpoint["note"], "tree_size": checkpoint["size"],
                "inclusion_proof": [p.hex() for p in proof]}

    def verifier_string(self) -> str:
        return self.signer.verifier().to_string()

    def public_keys(self) -> dict[str, dict[str, str]]:
        return {kid: {"purpose": str(info["purpose"]), "public_key": str(info["public_key"])}
                for kid, info in self.keyring.public_keys().items()}

    async def wait_filled(self, ballot_id: str, below: int, timeout: float,
                          poll: float = 0.05) -> bool:
        """Wait until every position below `below` holds an entry."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if (await self.tree(ballot_id)).size >= below:
                return True
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(poll)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def iso_or_none(value: datetime | None) -> str | None:
    return iso(value) if value is not None else None


__all__ = ["Ledger", "LogEntry", "PositionTaken", "StoreUnavailable", "entry_id"]
