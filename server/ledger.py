"""The per-ballot append-only log in the store: positions, entries, checkpoints, proofs.

An entry is written with its position as `_id`, so a position holds at most one entry, ever;
positions are taken by insert alone (see `append`). Nothing here updates or deletes an entry.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from server.clock import Clock
from voting.checkpoint import Checkpoint, NoteSigner, sign_checkpoint
from voting.merkle import MerkleTree
from voting.records import entry_leaf_hash
from voting.signing import Keyring, KeyPurpose

CHECKPOINT_SIGNER = "smartproperty-checkpoint"


class PositionTaken(Exception):
    """A fixed log position holds a different entry than the one being written."""


class LogSealed(Exception):
    """The log takes no entry now: it is closed (or its opening entries are not written yet)."""


SEALING = frozenset({"close", "result"})


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
        self._locks: dict[str, asyncio.Lock] = {}
        self._next: dict[str, int] = {}  # per ballot: the position after our last append

    def origin(self, ballot_id: str) -> str:
        return f"{self.origin_base}/ballot/{ballot_id}"

    # -- appending ---------------------------------------------------------------------------
    # Positions are decided by inserts alone: an entry's `_id` is its position, so of several
    # writers trying one position exactly one wins, on FerretDB as on a MongoDB cluster. (An
    # `$inc` counter is not safe here: FerretDB 1.24 applies updates as read-modify-write and
    # loses concurrent increments.) A writer starts just after the last entry and, when a
    # position is taken, looks at what took it before moving on — so it never skips an entry,
    # the log has no gaps, and nothing is ever appended after the close.
    async def append(self, ballot_id: str, entry: dict[str, Any],
                     private: dict[str, Any] | None = None) -> tuple[int, bytes]:
        """Append an entry; raises LogSealed once the log holds its close entry."""
        leaf = entry_leaf_hash(entry)
        async with self._lock(ballot_id):
            seq = await self._next_position(ballot_id)
            while True:
                try:
                    await self._insert(ballot_id, seq, entry, private, leaf)
                    self._next[ballot_id] = seq + 1
                    return seq, leaf
                except DuplicateKeyError:
                    taken = await self.db["ballot_log"].find_one({"_id": entry_id(ballot_id, seq)})
                    if taken is not None and taken["type"] in SEALING:
                        self._next.pop(ballot_id, None)
                        raise LogSealed(ballot_id) from None
                    seq += 1

    async def seal(self, ballot_id: str, close: dict[str, Any], result_for: Any) -> int:
        """Append the close entry (once, whoever comes first) and then the result after it."""
        leaf = entry_leaf_hash(close)
        async with self._lock(ballot_id):
            seq = await self._next_position(ballot_id, stop_at_seal=False)
            while True:
                existing = await self.db["ballot_log"].find_one({"_id": entry_id(ballot_id, seq)})
                if existing is not None and existing["type"] == "close":
                    break
                if existing is None:
                    try:
                        await self._insert(ballot_id, seq, close, None, leaf)
                        break
                    except DuplicateKeyError:
                        continue  # look at what took it
                seq += 1
        result = await result_for(seq)
        await self.write_once(ballot_id, seq + 1, result)
        return seq

    async def _next_position(self, ballot_id: str, stop_at_seal: bool = True) -> int:
        hint = self._next.get(ballot_id)
        if hint is not None and stop_at_seal:
            return hint  # probing from here meets every entry written since (by _id)
        last = await self.db["ballot_log"].find({"ballot_id": ballot_id}).sort(
            "seq", -1).limit(1).to_list(None)
        if not last or last[0]["seq"] < 1:
            # Entries 0 and 1 (manifest, roll) are written at publication; nothing goes first.
            raise LogSealed(ballot_id)
        if last[0]["type"] in SEALING:
            if stop_at_seal:
                raise LogSealed(ballot_id)
            # Sealing again: start at the close entry itself (the result is the one after it).
            return int(last[0]["seq"]) - (1 if last[0]["type"] == "result" else 0)
        return int(last[0]["seq"]) + 1

    def _lock(self, ballot_id: str) -> asyncio.Lock:
        """Writers of one process take turns per ballot; processes race only on the insert."""
        lock = self._locks.get(ballot_id)
        if lock is None:
            lock = self._locks[ballot_id] = asyncio.Lock()
        return lock

    async def _insert(self, ballot_id: str, seq: int, entry: dict[str, Any],
                      private: dict[str, Any] | None, leaf: bytes) -> None:
        await self.db["ballot_log"].insert_one({
            "_id": entry_id(ballot_id, seq), "ballot_id": ballot_id, "seq": seq,
            "type": entry["type"], "entry": entry, "private": private, "leaf": leaf.hex(),
            "written_at": self.clock.now(),
        })

    async def write_once(self, ballot_id: str, seq: int, entry: dict[str, Any]) -> None:
        """Write a deterministic entry at a fixed position (manifest, roll, result); a repeat
        by another process is a no-op, a different entry there is an error."""
        leaf = entry_leaf_hash(entry)
        try:
            await self._insert(ballot_id, seq, entry, None, leaf)
        except DuplicateKeyError:
            existing = await self.db["ballot_log"].find_one({"_id": entry_id(ballot_id, seq)})
            if existing is None or existing["leaf"] != leaf.hex():
                raise PositionTaken(entry_id(ballot_id, seq)) from None

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

    # -- checkpoints -------------------------------------------------------------------------
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


__all__ = ["Ledger", "LogEntry", "LogSealed", "PositionTaken", "entry_id"]
