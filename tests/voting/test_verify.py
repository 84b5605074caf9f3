"""Specification of the bundle verifier: valid bundles pass, every single tampering is named.

Two kinds of tampering. "Sealed" edits change a bundle after the service signed it (anyone
holding a copy could); the signed checkpoints expose them. "Resealed" edits are made by the log
operator itself, who signs again with the real keys; the log's own rules expose them.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.voting.bundle_factory import (
    BallotBuilder,
    BallotKeys,
    checkpoint_size,
    insert_entry,
    public_variant,
    reseal,
    valid_bundle,
)
from voting.canonical import CanonicalizationError, canonical_bytes
from voting.checkpoint import Checkpoint, NoteSigner, parse_note, sign_checkpoint
from voting.records import Revote
from voting.signing import KeyPurpose
from voting.verify import VerificationFailed, canonical, main, verify_bundle

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def story() -> BallotBuilder:
    return BallotBuilder.story(persons=12, revote=Revote.ONCE)


@pytest.fixture(scope="module")
def sealed(story: BallotBuilder) -> dict[str, Any]:
    return story.bundle()


@pytest.fixture()
def bundle(sealed: dict[str, Any]) -> dict[str, Any]:
    """A fresh copy of the valid auditor bundle for each test to tamper with."""
    return copy.deepcopy(sealed)


def failure(bundle: dict[str, Any], **options: Any) -> VerificationFailed:
    with pytest.raises(VerificationFailed) as caught:
        verify_bundle(bundle, **options)
    return caught.value


def votes(bundle: dict[str, Any], channel: str | None = None) -> list[int]:
    return [i for i, e in enumerate(bundle["entries"]) if e["type"] == "vote"
            and (channel is None or e["public"]["channel"] == channel)]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "voting.verify", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def note_with_text(note: str, text: str) -> str:
    parsed = parse_note(note)
    return text + note[len(parsed.text):]


# --- valid bundles ---------------------------------------------------------------------------


def test_valid_auditor_bundle_verifies_and_recomputes_the_tally(
        bundle: dict[str, Any], story: BallotBuilder) -> None:
    summary = verify_bundle(bundle)
    assert summary.variant == "auditor" and summary.tally_recomputed
    assert summary.ballot_id == "bl_test"
    assert summary.entries == len(bundle["entries"])
    assert summary.persons == summary.total_headcount == 12
    assert summary.total_area_centi_m2 == sum(p["area_centi_m2"] for p in story.roll)
    assert summary.votes_counted == len(story.counted_votes())
    assert summary.vote_entries == len(votes(bundle)) > summary.votes_counted
    result = bundle["entries"][-1]["items"]
    assert [(i.item_id, i.quorum_met, i.passed) for i in summary.items] == [
        (r["item_id"], r["raw"]["quorum_met"], r["raw"]["passed"]) for r in result]


def test_public_bundle_verifies_without_recomputing_the_tally(bundle: dict[str, Any]) -> None:
    public = public_variant(bundle)
    assert public["private"] == {} and public["roll"] is None and public["pseudonym_key"] is None
    summary = verify_bundle(public)
    assert summary.variant == "public" and not summary.tally_recomputed
    assert summary.items == verify_bundle(bundle).items


@pytest.mark.parametrize("revote", list(Revote))
@pytest.mark.parametrize("follow_majority", [False, True])
@pytest.mark.parametrize("blank_policy", ["count_as_participation_abstain", "exclude"])
def test_bundles_verify_under_every_revote_rule_and_counting_option(
        revote: Revote, follow_majority: bool, blank_policy: str) -> None:
    options = dict(persons=9, revote=revote, follow_majority=follow_majority,
                   blank_policy=blank_policy, seed=len(blank_policy) + revote.value.__len__())
    auditor = valid_bundle(**options)
    assert verify_bundle(auditor).tally_recomputed
    assert not verify_bundle(public_variant(auditor)).tally_recomputed


def test_cli_prints_a_summary_and_exits_0_for_valid_bundles(
        bundle: dict[str, Any], tmp_path: Path) -> None:
    for variant, data in (("auditor", bundle), ("public", public_variant(bundle))):
        path = tmp_path / f"{variant}.json"
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        done = run_cli(str(path))
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith(f"OK: {variant} bundle of ballot bl_test")
        assert "item i1 (ordinary)" in done.stdout


def test_cli_prints_the_reason_and_exits_1_when_a_check_fails(
        bundle: dict[str, Any], tmp_path: Path) -> None:
    bundle["roll"][0]["area_centi_m2"] += 1
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bundle), encoding="utf-8")
    done = run_cli(str(path))
    assert done.returncode == 1
    assert done.stdout.startswith("FAILED: roll: roll_sha256 differs")


def test_cli_exits_2_on_unreadable_input(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    assert main([str(broken)]) == 2
    assert main([str(tmp_path / "missing.json")]) == 2


def test_duplicate_json_keys_fail_because_readers_could_disagree(tmp_path: Path) -> None:
    path = tmp_path / "dup.json"
    path.write_text('{"format": "x", "format": "smartproperty-ballot-bundle/1"}')
    assert main([str(path)]) == 1


def test_a_bundle_verifies_against_pinned_checkpoint_keys(
        bundle: dict[str, Any], story: BallotBuilder) -> None:
    pinned = [story.keys.note_signer.verifier().to_string()]
    assert verify_bundle(bundle, checkpoint_verifiers=pinned).entries == len(bundle["entries"])


# --- sealed tampering: the signed checkpoints expose it --------------------------------------


def test_changed_choice_in_a_private_part_fails_its_hash(bundle: dict[str, Any]) -> None:
    i = votes(bundle, "online")[2]
    choices = bundle["private"][str(i)]["choices"]
    choices["i1"] = "disagree" if choices["i1"] == "agree" else "agree"
    err = failure(bundle)
    assert err.reason == f"entry {i}: private part does not match private_sha256"
    assert err.index == i


def test_changed_area_in_the_roll_fails_the_roll_hash(bundle: dict[str, Any]) -> None:
    bundle["roll"][3]["area_centi_m2"] += 100
    assert failure(bundle).reason.startswith("roll: roll_sha256 differs: the log has ")


def test_changed_cast_at_breaks_the_checkpoint_over_that_entry(bundle: dict[str, Any]) -> None:
    i = votes(bundle)[4]
    bundle["entries"][i]["public"]["cast_at"] = "2026-11-12T08:00:00.000Z"
    err = failure(bundle)
    match = re.fullmatch(r"entries (\d+)\.\.(\d+): leaves do not match checkpoint (\d+) root "
                         r"\(size (\d+)\)", err.reason)
    assert match, err.reason
    assert int(match[1]) <= i <= int(match[2])


def test_with_a_checkpoint_per_entry_the_changed_entry_itself_is_named() -> None:
    bundle = valid_bundle(persons=6, checkpoint_every=1)
    i = votes(bundle)[1]
    bundle["entries"][i]["public"]["cast_at"] = "2026-11-12T08:00:00.000Z"
    assert failure(bundle).reason == f"entry {i}: leaf does not match checkpoint {i} root"


def test_dropped_entry_fails_the_first_checkpoint_covering_it(bundle: dict[str, Any]) -> None:
    i = votes(bundle)[3]
    del bundle["entries"][i]
    assert re.fullmatch(rf"entries \d+\.\.\d+: leaves do not match checkpoint {i // 5 } root "
                        r"\(size \d+\)", failure(bundle).reason)


def test_duplicated_entry_fails_the_checkpoints(bundle: dict[str, Any]) -> None:
    i = votes(bundle)[3]
    bundle["entries"].insert(i, copy.deepcopy(bundle["entries"][i]))
    assert "leaves do not match checkpoint" in failure(bundle).reason


def test_reordered_entries_fail_the_checkpoints(bundle: dict[str, Any]) -> None:
    i, j = votes(bundle)[3:5]
    entries = bundle["entries"]
    entries[i], entries[j] = entries[j], entries[i]
    assert "leaves do not match checkpoint" in failure(bundle).reason


@pytest.mark.parametrize("line", [1, 2], ids=["size", "root"])
def test_altered_checkpoint_fails_its_signature(bundle: dict[str, Any], line: int) -> None:
    note = bundle["checkpoints"][1]
    lines = parse_note(note).text.split("\n")
    lines[line] = "11" if line == 1 else base64.b64encode(bytes(32)).decode()
    bundle["checkpoints"][1] = note_with_text(note, "\n".join(lines))
    assert failure(bundle).reason == (
        "checkpoint 1: signature does not verify (key smartproperty.example)")


def test_altered_checkpoint_signature_fails(bundle: dict[str, Any]) -> None:
    note = bundle["checkpoints"][2]
    text, _, sig_line = note.rpartition("\n\n")
    name, encoded = sig_line.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(encoded))
    raw[10] ^= 1
    bundle["checkpoints"][2] = f"{text}\n\n{name} {base64.b64encode(raw).decode()}\n"
    assert failure(bundle).reason == (
        "checkpoint 2: signature does not verify (key smartproperty.example)")


def test_tampered_checkpoint_re_signed_with_an_unknown_key_fails(bundle: dict[str, Any]) -> None:
    forger = NoteSigner("smartproperty.example", Ed25519PrivateKey.generate())
    old = Checkpoint.from_text(parse_note(bundle["checkpoints"][1]).text)
    forged = Checkpoint(old.origin, old.tree_size, bytes(32))
    bundle["checkpoints"][1] = sign_checkpoint(forged, [forger])
    assert failure(bundle).reason == "checkpoint 1: no signature from a known key"


def test_forger_adding_their_key_to_the_bundle_fails_against_pinned_keys(
        bundle: dict[str, Any], story: BallotBuilder) -> None:
    forger = NoteSigner("smartproperty.example", Ed25519PrivateKey.generate())
    bundle["checkpoint_verifiers"] = [forger.verifier().to_string()]
    for k, note in enumerate(bundle["checkpoints"]):
        bundle["checkpoints"][k] = sign_checkpoint(
            Checkpoint.from_text(parse_note(note).text), [forger])
    assert verify_bundle(bundle).entries  # the bundle alone cannot tell whose key it is...
    pinned = [story.keys.note_signer.verifier().to_string()]
    err = failure(bundle, checkpoint_verifiers=pinned)  # ...the published key can
    assert err.reason == "checkpoint 0: no signature from a known key"


def test_altered_result_signature_fails(bundle: dict[str, Any]) -> None:
    raw = bytearray(base64.b64decode(bundle["result_signature"]["sig"]))
    raw[0] ^= 1
    bundle["result_signature"]["sig"] = base64.b64encode(raw).decode()
    assert failure(bundle).reason == "result: signature does not verify"


def test_result_signed_with_a_receipt_key_fails(
        bundle: dict[str, Any], story: BallotBuilder) -> None:
    bundle["result_signature"] = story.keys.keyring.sign(KeyPurpose.RECEIPT,
                                                         bundle["entries"][-1])
    kid = bundle["result_signature"]["kid"]
    assert failure(bundle).reason == (
        f"result: signature key {kid} is a receipt key, not a result key")


def test_changed_count_in_a_signed_result_breaks_the_last_checkpoint(
        bundle: dict[str, Any]) -> None:
    bundle["entries"][-1]["items"][0]["raw"]["YA"] += 1
    n = len(bundle["entries"])
    assert re.fullmatch(rf"entries \d+\.\.{n - 1}: leaves do not match checkpoint \d+ root "
                        rf"\(size {n}\)", failure(bundle).reason)


# --- resealed tampering: the operator signs again, the log's rules expose it -----------------


def test_result_with_a_changed_count_fails_the_recount(
        bundle: dict[str, Any], story: BallotBuilder) -> None:
    raw = bundle["entries"][-1]["items"][0]["raw"]
    published = raw["PA"]
    raw["PA"] += 100
    reseal(bundle, story.keys)
    assert failure(bundle).reason == (
        f"result: item i1 PA differs: published {published + 100}, recomputed {published}")


def test_public_result_with_a_changed_count_fails_its_own_arithmetic(
        bundle: dict[str, Any], story: BallotBuilder) -> None:
    raw = bundle["entries"][-1]["items"][1]["raw"]
    raw["YA"] += 100
    public = public_variant(reseal(bundle, story.keys))
    assert re.fullmatch(r"result: item i2 PA differs: published \d+, recomputed \d+",
                        failure(public).reason)


def test_public_result_counting_an_extra_ballot_fails(
        bundle: dict[str, Any], story: BallotBuilder) -> None:
    raw = bundle["entries"][-1]["items"][0]["raw"]
    raw["YN"] += 1
    raw["PN"] += 1
    public = public_variant(reseal(bundle, story.keys))
    voted = len({bundle["entries"][i]["public"]["pseudonym"] for i in votes(bundle)})
    assert failure(public).reason == (
        f"result: item i1 counts {voted + 1} ballots, but {voted} persons voted")


def test_vote_from_a_person_outside_the_roll_fails() -> None:
    b = BallotBuilder.story(persons=8)
    i = b.vote("o:stranger")
    assert failure(b.bundle()).reason == f"entry {i}: person o:stranger not on the roll"


def test_vote_cast_after_the_scheduled_close_fails() -> None:
    b = BallotBuilder.story(persons=8)
    i = b.vote(b.person_ids[5], at="2026-11-25T00:00:00.000Z")
    assert failure(b.bundle()).reason == (
        f"entry {i}: vote cast after close (cast_at 2026-11-25T00:00:00.000Z, "
        f"closes_at 2026-11-25T00:00:00.000Z)")


def test_vote_cast_after_an_early_close_record_fails() -> None:
    b = BallotBuilder.story(persons=8)
    i = b.vote(b.person_ids[5], at="2026-11-20T00:00:00.001Z")
    b.close(at="2026-11-20T00:00:00.000Z")
    assert failure(b.bundle()).reason.startswith(f"entry {i}: vote cast after close")


def test_second_own_vote_fails_under_revote_never() -> None:
    b = BallotBuilder.story(persons=8, revote=Revote.NEVER)
    i = b.vote(b.person_ids[4])
    reason = failure(b.bundle()).reason
    assert reason == f"entry {i}: second own vote not allowed under revote=never"
    assert "second own vote" in failure(public_variant(b.bundle())).reason


def test_third_own_vote_fails_under_revote_once() -> None:
    b = BallotBuilder.story(persons=8, revote=Revote.ONCE)
    b.vote(b.person_ids[4])
    i = b.vote(b.person_ids[4])
    assert failure(b.bundle()).reason == (
        f"entry {i}: third own vote not allowed under revote=once")


def test_own_vote_after_a_proxy_vote_is_allowed_even_under_revote_never() -> None:
    b = BallotBuilder(persons=6, revote=Revote.NEVER)
    person = b.person_ids[2]
    b.proxy_auth(person)
    b.vote(person, channel="proxy")
    b.vote(person)
    assert verify_bundle(b.bundle()).vote_entries == 2


def test_proxy_vote_after_the_owners_own_vote_fails() -> None:
    b = BallotBuilder.story(persons=8, revote=Revote.LAST)
    person = b.person_ids[5]
    own = max(i for i, e in enumerate(b.entries) if e["type"] == "vote"
              and b.private[str(i)]["person_id"] == person)
    b.proxy_auth(person)
    i = b.vote(person, channel="proxy")
    expected = f"entry {i}: proxy vote after the owner's own vote (entry {own})"
    assert failure(b.bundle()).reason == expected
    assert failure(public_variant(b.bundle())).reason == expected


def test_proxy_vote_without_an_authorisation_fails_even_in_the_public_bundle() -> None:
    b = BallotBuilder(persons=6)
    auth = b.proxy_auth(b.person_ids[1])
    i = b.vote(b.person_ids[2], channel="proxy", auth_index=auth)
    assert failure(b.bundle()).reason == (
        f"entry {i}: proxy authorisation at entry {auth} is for another person")
    assert failure(b.bundle("public")).reason == (
        f"entry {i}: proxy vote without a valid proxy authorisation")


def test_paper_vote_entered_by_the_same_operator_twice_fails() -> None:
    b = BallotBuilder.story(persons=8)
    i = b.vote(b.person_ids[6], channel="paper", operators=("staff-a", "staff-a"))
    assert failure(b.bundle()).reason == (
        f"entry {i}: paper vote names the same operator twice (staff-a)")


def test_co_owner_who_is_not_the_designated_voter_cannot_vote_online() -> None:
    b = BallotBuilder(persons=6)
    i = b.vote("co:c1+c2", owner_id="c2")
    assert failure(b.bundle()).reason == (
        f"entry {i}: cast by owner c2, but co:c1+c2's voter is c1")


def test_vote_counted_twice_by_the_operator_is_named_as_a_duplicate_round(
        bundle: dict[str, Any], story: BallotBuilder) -> None:
    i = votes(bundle, "online")[3]
    at = len(bundle["entries"]) - 2  # just before close
    insert_entry(bundle, at, bundle["entries"][i], bundle["private"][str(i)])
    reseal(bundle, story.keys, recount=True)
    who = bundle["entries"][i]["public"]["pseudonym"]
    rnd = bundle["entries"][i]["public"]["round"]
    assert failure(bundle).reason == (
        f"entry {at}: duplicate vote round {rnd} for pseudonym {who} (first at entry {i})")


def test_rounds_swapped_by_the_operator_fail() -> None:
    b = BallotBuilder(persons=6, revote=Revote.LAST)
    first = b.vote(b.person_ids[0])
    b.vote(b.person_ids[1])
    second = b.vote(b.person_ids[0])
    bundle = b.bundle()
    entries, private = bundle["entries"], bundle["private"]
    entries[first], entries[second] = entries[second], entries[first]
    private[str(first)], private[str(second)] = private[str(second)], private[str(first)]
    reseal(bundle, b.keys)
    who = entries[first]["public"]["pseudonym"]
    assert failure(bundle).reason == (
        f"entry {first}: vote round 1 for pseudonym {who}, expected 0")


def test_vote_naming_an_item_the_manifest_does_not_have_fails() -> None:
    b = BallotBuilder(persons=6)
    i = b.vote(b.person_ids[0], {"i1": "agree", "i9": "agree"})
    assert failure(b.bundle()).reason == (
        f"entry {i}: choices name items ['i1', 'i9'], the manifest has ['i1', 'i2']")


def test_log_missing_its_result_fails(bundle: dict[str, Any], story: BallotBuilder) -> None:
    bundle["entries"].pop()
    reseal(bundle, story.keys)
    n = len(bundle["entries"])
    assert failure(bundle).reason == f"entry {n - 1}: the last entry is close, expected result"


# --- canonical bytes and speed ---------------------------------------------------------------


def test_fast_canonical_bytes_equal_the_reference_implementation(
        bundle: dict[str, Any]) -> None:
    samples: list[Any] = [*bundle["entries"], *bundle["private"].values(), bundle["roll"],
                          {"\u20ac": 1, "\r": 2, "\U0001f600": 3, "\ufb33": 4, "a": [None]},
                          ["\u2028\u2029\x7f\x00\x1f\b\t\n\f\r\"\\/é漢😀"], -(2**53 - 1)]
    for sample in samples:
        assert canonical(sample) == canonical_bytes(sample)
    for bad in (1.0, 2**53, {"x": "\ud800"}, {1: "a"}):
        with pytest.raises(CanonicalizationError):
            canonical(bad)


def test_ten_thousand_votes_verify() -> None:
    started = time.perf_counter()
    builder = BallotBuilder.story(persons=10_000, turnout_percent=100, checkpoint_every=256)
    bundle = builder.bundle()
    built = time.perf_counter()
    summary = verify_bundle(bundle)
    verified = time.perf_counter()
    public = verify_bundle(public_variant(bundle))
    done = time.perf_counter()
    assert summary.vote_entries >= 10_000 and public.votes_counted == 10_000
    print(f"\n10,000 votes: built in {built - started:.2f} s, auditor bundle verified in "
          f"{verified - built:.2f} s, public bundle in {done - verified:.2f} s")


def test_factory_checkpoints_every_k_entries_and_the_last_covers_all() -> None:
    bundle = valid_bundle(persons=6, checkpoint_every=4)
    sizes = [checkpoint_size(n) for n in bundle["checkpoints"]]
    assert sizes[:-1] == list(range(4, len(bundle["entries"]), 4))
    assert sizes[-1] == len(bundle["entries"])


def test_builder_keys_are_per_purpose() -> None:
    keys = BallotKeys.generate().published_keys()
    assert sorted(k["purpose"] for k in keys.values()) == ["checkpoint", "receipt", "result"]


def test_malformed_bundles_fail_with_a_reason_instead_of_crashing(
        bundle: dict[str, Any]) -> None:
    rng = random.Random(5)
    variants = (bundle, public_variant(bundle))
    for _ in range(400):
        mangled = copy.deepcopy(rng.choice(variants))
        parent: Any = mangled
        key: Any = rng.choice(list(parent))
        while isinstance(parent[key], (dict, list)) and parent[key] and rng.random() < 0.75:
            parent = parent[key]
            key = rng.choice(list(parent)) if isinstance(parent, dict) else rng.randrange(
                len(parent))
        parent[key] = rng.choice([None, -1, "x", [], {}, 1.5, True])
        try:
            verify_bundle(mangled)
        except VerificationFailed as err:
            assert err.reason and "malformed input" not in err.reason, err.reason
