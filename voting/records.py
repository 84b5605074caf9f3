"""The ballot log's record shapes, leaf data with selective disclosure, and the tally over them.

Every log record is a JSON object. Records that name a person (votes, proxy authorisations)
are split in two: a `public` part (no identity, no choice) and a `private` part (identity,
choices, a random salt). The log leaf commits to the public part and to the SHA-256 of the
private part's canonical bytes, so a public bundle can leave the private parts out and still
be checked against the signed Merkle tree; an auditor bundle carries them and checks them too.
See docs/ballot-bundle.md.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from voting.canonical import canonical_bytes
from voting.merkle import leaf_hash
from voting.tally import (
    BlankPolicy,
    Choice,
    CountedChoice,
    ItemResult,
    MatterKind,
    RollTotals,
    tally_item,
)

FORMAT = "smartproperty-ballot-bundle/1"
SPLIT_TYPES = frozenset({"vote", "proxy_auth", "transfer"})


class RecordType(StrEnum):
    """What a log record is; the first two are always manifest then roll."""

    MANIFEST = "manifest"
    ROLL = "roll"
    PROXY_AUTH = "proxy_auth"
    TRANSFER = "transfer"
    VOTE = "vote"
    VOID = "void"
    CLOSE = "close"
    RESULT = "result"


class TransferEffect(StrEnum):
    """What a unit transfer during voting did to the roll person's vote."""

    VOTER_CHANGED = "voter_changed"  # no vote yet: the new owner votes for the unit
    VOTE_STANDS = "vote_stands"      # the earlier owner had voted: that vote stands


class Revote(StrEnum):
    """May an owner change a vote before close (a per-ballot rule)."""

    NEVER = "never"   # e.g. Beijing
    ONCE = "once"     # e.g. Wuhan
    LAST = "last"     # the last vote before close counts


class Channel(StrEnum):
    """How a vote reached the log."""

    ONLINE = "online"
    PAPER = "paper"
    PROXY = "proxy"


def leaf_data(entry: Mapping[str, Any]) -> bytes:
    """The exact bytes hashed into the Merkle leaf for a log entry.

    A split entry is {"type", "public", "private_sha256"}; every other entry is the record
    itself. Both are hashed as RFC 8785 canonical JSON.
    """
    return canonical_bytes(dict(entry))


def entry_leaf_hash(entry: Mapping[str, Any]) -> bytes:
    return leaf_hash(leaf_data(entry))


def split_entry(record_type: str, public: Mapping[str, Any],
                private: Mapping[str, Any]) -> dict[str, Any]:
    """The committed form of a vote or proxy authorisation (private part hashed, salted)."""
    if "salt" not in private or len(str(private["salt"])) < 32:
        raise ValueError("the private part needs a random salt of at least 128 bits (32 hex)")
    return {"type": record_type, "public": dict(public),
            "private_sha256": hashlib.sha256(canonical_bytes(dict(private))).hexdigest()}


def private_matches(entry: Mapping[str, Any], private: Mapping[str, Any]) -> bool:
    digest = hashlib.sha256(canonical_bytes(dict(private))).hexdigest()
    return hmac.compare_digest(digest, str(entry.get("private_sha256", "")))


def pseudonym(key: bytes, person_id: str) -> str:
    """Per-ballot pseudonym of a roll person: HMAC-SHA256(ballot key, person id), 16 hex."""
    return hmac.new(key, person_id.encode(), hashlib.sha256).hexdigest()[:16]


def roll_entries_sha256(entries: Iterable[Mapping[str, Any]]) -> str:
    """SHA-256 of the canonical JSON array of roll entries sorted by person_id."""
    ordered = sorted((dict(e) for e in entries), key=lambda e: e["person_id"])
    return hashlib.sha256(canonical_bytes(ordered)).hexdigest()


@dataclass(frozen=True)
class CountedVote:
    """A person's last vote (the one that counts) with the choices per item."""

    person_id: str
    seq: int
    choices: Mapping[str, str]


def final_votes(votes: Iterable[tuple[int, Mapping[str, Any], Mapping[str, Any]]]
                ) -> dict[str, CountedVote]:
    """From (seq, public, private) of every vote, keep each person's highest round."""
    best: dict[str, tuple[int, CountedVote]] = {}
    for seq, public, private in votes:
        person = str(private["person_id"])
        rnd = int(public["round"])
        if person not in best or rnd > best[person][0]:
            best[person] = (rnd, CountedVote(person, seq, dict(private["choices"])))
    return {p: v for p, (_, v) in best.items()}


def tally_items(manifest: Mapping[str, Any], totals: RollTotals,
                areas: Mapping[str, int], counted: Mapping[str, CountedVote]) -> list[dict[str, Any]]:
    """The result items of a ballot, in manifest order, as published in the result record."""
    rules = manifest["rules"]
    out = []
    for item in manifest["items"]:
        choices = [CountedChoice(person, areas[person], Choice(vote.choices[item["item_id"]]))
                   for person, vote in sorted(counted.items())
                   if item["item_id"] in vote.choices]
        result: ItemResult = tally_item(
            totals, MatterKind(item["kind"]), choices,
            blank_policy=BlankPolicy(rules["blank_policy"]),
            non_voters_follow_majority=bool(rules["follow_majority"]))
        out.append({
            "item_id": item["item_id"], "kind": item["kind"],
            "raw": result.raw.to_json(),
            "deemed": result.deemed.to_json() if result.deemed is not None else None,
            "deemed_side": result.deemed_side.value if result.deemed_side is not None else None,
        })
    return out
