"""Builds valid ballot bundles (docs/ballot-bundle.md) from scratch with the pure voting modules.

    builder = BallotBuilder.story(persons=12, revote=Revote.ONCE)   # the usual ballot, or
    builder = BallotBuilder(persons=5); builder.vote(builder.person_ids[0])
    bundle = builder.bundle()            # close, result, checkpoints, result signature
    public = public_variant(bundle)

The builder writes what it is told, like a log operator would: it does not enforce the rules,
so tests can also build a log that breaks them (a vote after close, a second vote under
revote=never) and is still correctly signed. Tampering tests edit a bundle and then either keep
the seals (someone else edited it) or call `reseal(bundle, builder.keys)` (the operator edited
it and signed again with the real keys).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from voting.checkpoint import Checkpoint, NoteSigner, parse_note, sign_checkpoint
from voting.merkle import MerkleTree
from voting.receipt import issue_receipt, with_checkpoint
from voting.records import (
    FORMAT,
    CountedVote,
    Revote,
    entry_leaf_hash,
    final_votes,
    pseudonym,
    roll_entries_sha256,
    split_entry,
    tally_items,
)
from voting.roll import AreaSource, Ownership, Scope, Unit, build_roll
from voting.signing import Keyring, KeyPurpose, b64encode, generate_keyring_config
from voting.tally import BlankPolicy, RollTotals

NOTE_KEY_NAME = "smartproperty.example"
OPENS_AT = datetime(2026, 11, 10, 0, 0, tzinfo=UTC)
CLOSES_AT = datetime(2026, 11, 25, 0, 0, tzinfo=UTC)
DEFAULT_ITEMS = (("i1", "ordinary"), ("i2", "special"))
_WEIGHTED_CHOICES = ("agree",) * 12 + ("disagree",) * 5 + ("abstain",) * 2 + ("blank",)


def rfc3339(moment: datetime) -> str:
    """The spec's time shape: UTC, milliseconds, 'Z'."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class BallotKeys:
    """The service's keys for one bundle: receipt, checkpoint and result keys, and a note signer."""

    keyring: Keyring
    note_signer: NoteSigner

    @classmethod
    def generate(cls) -> BallotKeys:
        """Fresh keys, one per purpose."""
        keyring = Keyring.from_config(generate_keyring_config(
            (KeyPurpose.RECEIPT, KeyPurpose.CHECKPOINT, KeyPurpose.RESULT)))
        signer = NoteSigner.from_signing_key(
            NOTE_KEY_NAME, keyring.active_key(KeyPurpose.CHECKPOINT))
        return cls(keyring, signer)

    def published_keys(self) -> dict[str, dict[str, str]]:
        """The bundle's `keys`: kid -> {"purpose", "public_key"}."""
        return {kid: {"purpose": str(entry["purpose"]), "public_key": str(entry["public_key"])}
                for kid, entry in self.keyring.public_keys().items()}


def sample_roll(persons: int, rng: random.Random) -> list[dict[str, Any]]:
    """Roll entries from voting.roll for `persons` persons.

    With six or more persons the roll also has an owner of two units, co-owners voting through
    a designated voter and the developer's undelivered units (each one person).
    """
    units: list[Unit] = []
    owners: list[Ownership] = []

    def add(unit_id: str, owner_ids: tuple[str, ...], **kw: Any) -> None:
        units.append(Unit(unit_id, f"b{len(units) % 7 + 1}", rng.randint(4_500, 16_000),
                          AreaSource.REGISTRY))
        owners.append(Ownership(unit_id, owner_ids, **kw))

    regular = persons - 2 if persons >= 6 else persons
    for k in range(regular):
        add(f"u{k:05d}", (f"w{k:05d}",))
    if persons >= 6:
        add("u-extra", ("w00000",))                          # one buyer, two units
        add("u-co", ("c1", "c2"), designated_voter_id="c1")  # co-owners, one voter
        add("u-dev1", ("dev1",), is_developer_unsold_or_undelivered=True)
        add("u-dev2", ("dev1",), is_developer_unsold_or_undelivered=True)
    roll = build_roll(units, owners, Scope.whole_community(), count_parking_and_storage=False)
    return [{"person_id": p.person_id, "unit_ids": list(p.unit_ids),
             "area_centi_m2": p.area_centi_m2, "owner_ids": list(p.owner_ids),
             "voter_owner_id": p.voter_owner_id, "is_developer": p.is_developer}
            for p in roll.persons]


class BallotBuilder:
    """Appends ballot log records like the service does and seals them into a bundle."""

    def __init__(self, *, persons: int = 8, revote: Revote | str = Revote.LAST,
                 items: Sequence[tuple[str, str]] = DEFAULT_ITEMS,
                 blank_policy: BlankPolicy | str = BlankPolicy.COUNT_AS_PARTICIPATION_ABSTAIN,
                 follow_majority: bool = False, checkpoint_every: int = 5, seed: int = 7,
                 ballot_id: str = "bl_test", keys: BallotKeys | None = None) -> None:
        self.rng = random.Random(seed)
        self.keys = keys or BallotKeys.generate()
        self.ballot_id = ballot_id
        self.origin = f"smartproperty.example/ballot/{ballot_id}"
        self.checkpoint_every = checkpoint_every
        self.pseudonym_key = self.rng.randbytes(32)
        self.roll = sample_roll(persons, self.rng)
        self.person_ids = [p["person_id"] for p in self.roll]
        self.now = OPENS_AT
        self.entries: list[dict[str, Any]] = []
        self.private: dict[str, dict[str, Any]] = {}
        self._last_vote: dict[str, tuple[int, int]] = {}   # person -> (index, round)
        self._last_auth: dict[str, int] = {}
        self.item_ids = [item_id for item_id, _ in items]
        self.manifest = {
            "type": "manifest", "ballot_id": ballot_id, "community_id": "cm_1",
            "community_name": "滕州市幸福里小区",
            "title": "续聘物业服务企业及维修资金使用",
            "description": "test ballot",
            "items": [{"item_id": item_id, "title": f"事项 {item_id}", "kind": kind,
                       "options": ["agree", "disagree", "abstain"]} for item_id, kind in items],
            "scope": {"kind": "community", "ids": []},
            "schedule": {"published_at": rfc3339(OPENS_AT - timedelta(days=16)),
                         "opens_at": rfc3339(OPENS_AT), "closes_at": rfc3339(CLOSES_AT),
                         "publicity_until": rfc3339(CLOSES_AT + timedelta(days=15))},
            "rules": {"revote": str(Revote(revote)), "follow_majority": follow_majority,
                      "blank_policy": str(BlankPolicy(blank_policy)),
                      "show_counts_before_close": False, "count_parking": False,
                      "count_storage": False},
            "supersedes_ballot_id": None, "created_by": "committee-1",
        }
        self._append(self.manifest)
        self._append({"type": "roll", "ballot_id": ballot_id,
                      "roll_sha256": roll_entries_sha256(self.roll), "persons": len(self.roll),
                      "A": sum(p["area_centi_m2"] for p in self.roll), "N": len(self.roll)})

    # --- the usual ballot ------------------------------------------------------------------

    @classmethod
    def story(cls, *, persons: int = 12, turnout_percent: int = 90, **options: Any
              ) -> BallotBuilder:
        """A ballot with every kind of record, valid under any re-vote rule.

        A proxy votes for person 1 after a written authorisation, then person 1 votes online
        (the own vote supersedes the proxy's); person 2 votes on paper entered by two
        operators; one log position is void; most others vote online; under `once`/`last`
        person 3 changes their vote.
        """
        b = cls(persons=persons, **options)
        ids = b.person_ids
        if persons >= 4:
            b.proxy_auth(ids[1])
            b.vote(ids[1], channel="proxy")
            b.vote(ids[2], channel="paper")
            b.void()
            b.vote(ids[1])
        rest = [p for p in ids if persons < 4 or p not in ids[1:3]]
        voting = rest[: max(1, len(rest) * turnout_percent // 100)]
        for person in voting:
            b.vote(person)
        if persons >= 4 and b.manifest["rules"]["revote"] != Revote.NEVER and ids[3] in voting:
            b.vote(ids[3])
        return b

    # --- records ---------------------------------------------------------------------------

    def tick(self, seconds: int = 1) -> str:
        """Advance the clock and return the new time."""
        self.now += timedelta(seconds=seconds)
        return rfc3339(self.now)

    def _append(self, entry: dict[str, Any], private: dict[str, Any] | None = None) -> int:
        index = len(self.entries)
        self.entries.append(entry)
        if private is not None:
            self.private[str(index)] = private
        return index

    def _salt(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"

    def pseudonym_of(self, person_id: str) -> str:
        """The person's per-ballot pseudonym."""
        return pseudonym(self.pseudonym_key, person_id)

    def voter_of(self, person_id: str) -> str | None:
        """The owner who casts the person's own vote (None if not on the roll)."""
        return next((p["voter_owner_id"] for p in self.roll if p["person_id"] == person_id),
                    None)

    def random_choices(self) -> dict[str, str]:
        """One choice per manifest item, mostly agree."""
        return {item_id: self.rng.choice(_WEIGHTED_CHOICES) for item_id in self.item_ids}

    def vote(self, person_id: str, choices: Mapping[str, str] | None = None, *,
             channel: str = "online", at: str | None = None, round_: int | None = None,
             supersedes: int | None | str = "auto", owner_id: str | None = None,
             operators: Sequence[str] = ("staff-a", "staff-b"),
             auth_index: int | None = None, proxy_user_id: str | None = None) -> int:
        """Append a vote; rounds and `supersedes` follow the person's previous vote by default."""
        previous = self._last_vote.get(person_id)
        rnd = round_ if round_ is not None else (previous[1] + 1 if previous else 0)
        if supersedes == "auto":
            supersedes = previous[0] if previous else None
        cast_by: dict[str, Any]
        if channel == "online":
            cast_by = {"kind": "owner", "owner_id": owner_id or self.voter_of(person_id)
                       or person_id.split(":", 1)[-1]}
        elif channel == "paper":
            cast_by = {"kind": "paper", "operators": list(operators),
                       "scan_sha256": f"{self.rng.getrandbits(256):064x}"}
        else:
            auth = auth_index if auth_index is not None else self._last_auth[person_id]
            cast_by = {"kind": "proxy", "auth_index": auth,
                       "proxy_user_id": proxy_user_id or self.private[str(auth)]["proxy_user_id"]}
        public = {"ballot_id": self.ballot_id, "pseudonym": self.pseudonym_of(person_id),
                  "round": rnd, "channel": channel, "cast_at": at or self.tick(),
                  "supersedes": supersedes}
        private = {"salt": self._salt(), "person_id": person_id,
                   "choices": dict(choices or self.random_choices()), "cast_by": cast_by}
        index = self._append(split_entry("vote", public, private), private)
        self._last_vote[person_id] = (index, rnd)
        return index

    def proxy_auth(self, person_id: str, proxy_user_id: str = "u-proxy-1", *,
                   item_ids: Sequence[str] | None = None) -> int:
        """Append a written proxy authorisation valid for the whole voting window."""
        public = {"ballot_id": self.ballot_id, "pseudonym": self.pseudonym_of(person_id),
                  "document_sha256": f"{self.rng.getrandbits(256):064x}",
                  "valid_from": self.manifest["schedule"]["opens_at"],
                  "valid_until": self.manifest["schedule"]["closes_at"],
                  "item_ids": list(item_ids if item_ids is not None else self.item_ids),
                  "recorded_at": self.tick()}
        private = {"salt": self._salt(), "person_id": person_id,
                   "proxy_user_id": proxy_user_id, "recorded_by": "committee-1"}
        index = self._append(split_entry("proxy_auth", public, private), private)
        self._last_auth[person_id] = index
        return index

    def void(self, reason: str = "writer did not finish") -> int:
        """Append a void position."""
        return self._append({"type": "void", "ballot_id": self.ballot_id, "reason": reason})

    def close(self, at: str | None = None) -> int:
        """Append the close record (by default at the scheduled close)."""
        return self._append({"type": "close", "ballot_id": self.ballot_id,
                             "closed_at": at or self.manifest["schedule"]["closes_at"]})

    def counted_votes(self) -> dict[str, CountedVote]:
        """Each person's last vote, as the tally sees it."""
        return final_votes((int(i), e["public"], self.private[str(i)])
                           for i, e in enumerate(self.entries) if e["type"] == "vote")

    def result(self) -> int:
        """Append the result computed with voting.records.tally_items."""
        totals = RollTotals(self.entries[1]["A"], self.entries[1]["N"])
        areas = {p["person_id"]: p["area_centi_m2"] for p in self.roll}
        # Votes of persons off the roll (a test's bad log) have no area; they are left out here
        # and the verifier names them before it gets to the result.
        counted = {p: v for p, v in self.counted_votes().items() if p in areas}
        items = tally_items(self.manifest, totals, areas, counted)
        return self._append({"type": "result", "ballot_id": self.ballot_id,
                             "computed_at": rfc3339(CLOSES_AT + timedelta(minutes=1)),
                             "A": totals.total_area_centi_m2, "N": totals.total_headcount,
                             "items": items})

    # --- sealing ---------------------------------------------------------------------------

    def bundle(self, variant: str = "auditor") -> dict[str, Any]:
        """Close (if not yet), add the result, checkpoint every k entries and sign the result."""
        if not any(e["type"] == "close" for e in self.entries):
            self.close()
        if self.entries[-1]["type"] != "result":
            self.result()
        n = len(self.entries)
        sizes = [*range(self.checkpoint_every, n, self.checkpoint_every), n]
        bundle = {
            "format": FORMAT, "variant": "auditor", "ballot_id": self.ballot_id,
            "origin": self.origin, "keys": self.keys.published_keys(),
            "checkpoint_verifiers": [self.keys.note_signer.verifier().to_string()],
            "entries": copy.deepcopy(self.entries), "private": copy.deepcopy(self.private),
            "roll": copy.deepcopy(self.roll), "pseudonym_key": b64encode(self.pseudonym_key),
            "checkpoints": [], "result_signature": None,
        }
        reseal(bundle, self.keys, sizes=sizes)
        return public_variant(bundle) if variant == "public" else bundle

    def receipt(self, bundle: Mapping[str, Any], index: int, *,
                checkpointed: bool = True) -> dict[str, Any]:
        """The receipt the owner got for entry `index`, with the first checkpoint covering it."""
        entry = bundle["entries"][index]
        receipt = issue_receipt(self.keys.keyring, ballot_id=self.ballot_id, origin=self.origin,
                                index=index, leaf_hash=entry_leaf_hash(entry),
                                cast_at=entry["public"]["cast_at"])
        if not checkpointed:
            return receipt
        tree = MerkleTree(entry_leaf_hash(e) for e in bundle["entries"])
        for note in bundle["checkpoints"]:
            size = checkpoint_size(note)
            if size > index:
                return with_checkpoint(receipt, note, tree.inclusion_proof(index, size))
        raise ValueError(f"no checkpoint covers entry {index}")


def checkpoint_size(note: str) -> int:
    """The tree size a signed checkpoint states (not verified)."""
    return Checkpoint.from_text(parse_note(note).text).tree_size


def reseal(bundle: dict[str, Any], keys: BallotKeys, *, sizes: Sequence[int] | None = None,
           recount: bool = False) -> dict[str, Any]:
    """Sign checkpoints and the result again over the bundle's current entries (in place).

    Default sizes: the bundle's checkpoint sizes below the entry count, then the entry count.
    With `recount` the result items are first recomputed from the (auditor) bundle's votes.
    This is what a log operator holding the real keys could do after editing the log.
    """
    entries = bundle["entries"]
    n = len(entries)
    if recount:
        roll = bundle["roll"]
        counted = final_votes((i, e["public"], bundle["private"][str(i)])
                              for i, e in enumerate(entries) if e["type"] == "vote")
        entries[-1]["items"] = tally_items(
            entries[0], RollTotals(entries[1]["A"], entries[1]["N"]),
            {p["person_id"]: p["area_centi_m2"] for p in roll}, counted)
    if sizes is None:
        sizes = [s for s in map(checkpoint_size, bundle["checkpoints"]) if s < n] + [n]
    tree = MerkleTree(entry_leaf_hash(e) for e in entries)
    bundle["checkpoints"] = [
        sign_checkpoint(Checkpoint(bundle["origin"], size, tree.root(size)), [keys.note_signer])
        for size in sizes]
    bundle["result_signature"] = keys.keyring.sign(KeyPurpose.RESULT, entries[-1])
    return bundle


def insert_entry(bundle: dict[str, Any], index: int, entry: Mapping[str, Any],
                 private: Mapping[str, Any] | None = None) -> None:
    """Insert a log entry at `index` (in place), moving later private parts along."""
    _shift_private(bundle, index, +1)
    bundle["entries"].insert(index, copy.deepcopy(dict(entry)))
    if private is not None:
        bundle["private"][str(index)] = copy.deepcopy(dict(private))


def remove_entry(bundle: dict[str, Any], index: int) -> dict[str, Any]:
    """Remove the log entry at `index` (in place) with its private part; return the entry."""
    bundle["private"].pop(str(index), None)
    entry: dict[str, Any] = bundle["entries"].pop(index)
    _shift_private(bundle, index + 1, -1)
    return entry


def _shift_private(bundle: dict[str, Any], start: int, by: int) -> None:
    private = bundle["private"]
    bundle["private"] = {str(int(k) + by if int(k) >= start else int(k)): v
                         for k, v in private.items()}


def public_variant(bundle: Mapping[str, Any]) -> dict[str, Any]:
    """The public bundle: the same log and seals without private parts, roll or pseudonym key."""
    public = copy.deepcopy(dict(bundle))
    public.update(variant="public", private={}, roll=None, pseudonym_key=None)
    return public


def valid_bundle(variant: str = "auditor", **options: Any) -> dict[str, Any]:
    """The usual ballot as a sealed bundle."""
    return BallotBuilder.story(**options).bundle(variant)
