"""Paper, proxy and re-votes through the API; the service's bundle passes the offline verifier."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from server.clock import ManualClock, iso
from tests.apiclient import Api
from tests.voting_api.helpers import VotingWorld, close, open_voting, published_ballot, vote, voting_world
from voting.verify import VerificationFailed, check_receipt_in_bundle, verify_bundle

SCAN = "ab" * 32


async def _person_of(api: Api, world: VotingWorld, ballot_id: str, owner: int) -> str:
    me = (await api.get(f"/api/mp/v1/ballots/{ballot_id}", world.owners[owner])).json()
    return str(me["my_persons"][0]["person_id"])


async def test_paper_ballot_needs_two_different_operators_who_agree(api: Api, clock: ManualClock) -> None:
    world = await voting_world(api)
    bid = (await published_ballot(api, world, clock))["id"]
    open_voting(clock)
    person = await _person_of(api, world, bid, 3)
    choices = {"i1": "agree", "i2": "blank"}
    r = await api.post(f"/api/admin/v1/ballots/{bid}/paper-entries", world.committee,
                       json={"person_id": person, "choices": choices, "scan_sha256": SCAN})
    assert r.status_code == 201
    entry = r.json()["entry_id"]
    path = f"/api/admin/v1/ballots/{bid}/paper-entries/{entry}/confirm"
    r = await api.post(path, world.committee, json={"choices": choices, "scan_sha256": SCAN})
    assert r.status_code == 403 and r.json()["error"]["code"] == "second_operator_required"
    assert await api.services.store.db["ballot_log"].count_documents({"type": "vote"}) == 0
    r = await api.post(path, world.committee2, json={"choices": choices, "scan_sha256": SCAN})
    assert r.status_code == 201, r.text
    receipts = (await api.get(f"/api/mp/v1/ballots/{bid}/receipts", world.owners[3])).json()
    assert [x["channel"] for x in receipts["receipts"]] == ["paper"]
    r = await vote(api, world.owners[3], bid)  # the paper ballot is the owner's own vote
    assert r.status_code == 409 and r.json()["error"]["code"] == "already_voted"


async def test_mismatched_second_entry_records_nothing(api: Api, clock: ManualClock) -> None:
    world = await voting_world(api)
    bid = (await published_ballot(api, world, clock))["id"]
    open_voting(clock)
    person = await _person_of(api, world, bid, 3)
    r = await api.post(f"/api/admin/v1/ballots/{bid}/paper-entries", world.committee,
                       json={"person_id": person, "choices": {"i1": "agree", "i2": "agree"},
                             "scan_sha256": SCAN})
    r = await api.post(f"/api/admin/v1/ballots/{bid}/paper-entries/{r.json()['entry_id']}/confirm",
                       world.committee2,
                       json={"choices": {"i1": "disagree", "i2": "agree"}, "scan_sha256": SCAN})
    assert r.status_code == 409 and r.json()["error"]["code"] == "paper_mismatch"
    assert await api.services.store.db["ballot_log"].count_documents({"type": "vote"}) == 0


async def _record_proxy(api: Api, world: VotingWorld, clock: ManualClock, bid: str,
                        owner: int, proxy_phone: str) -> int:
    r = await api.post(f"/api/admin/v1/ballots/{bid}/proxies", world.committee, json={
        "person_id": await _person_of(api, world, bid, owner), "proxy_phone": proxy_phone,
        "document_sha256": SCAN, "valid_from": iso(clock.now() - timedelta(hours=1)),
        "valid_until": iso(clock.now() + timedelta(days=10))})
    assert r.status_code == 201, r.text
    return int(r.json()["auth_index"])


async def test_owner_own_vote_supersedes_the_proxy_vote(api: Api, clock: ManualClock) -> None:
    world = await voting_world(api)
    bid = (await published_ballot(api, world, clock, rules={"revote": "never"}))["id"]
    open_voting(clock)
    proxy = await api.mp_owner("proxy-holder", "13700000001")
    auth = await _record_proxy(api, world, clock, bid, 4, "13700000001")
    person = await _person_of(api, world, bid, 4)
    r = await vote(api, proxy, bid, "disagree", "disagree", person_id=person, proxy_auth_index=auth)
    assert r.status_code == 201, r.text
    r = await vote(api, world.owners[4], bid, "agree", "agree")
    assert r.status_code == 201, r.text  # allowed even under revote=never
    r = await vote(api, proxy, bid, "disagree", "disagree", person_id=person, proxy_auth_index=auth)
    assert r.status_code == 409 and r.json()["error"]["code"] == "owner_already_voted"
    result = (await close(api, world, clock, bid))["result"]
    assert result["items"][0]["raw"]["YN"] == 1 and result["items"][0]["raw"]["PN"] == 1


async def test_proxy_without_authorisation_is_refused(api: Api, clock: ManualClock) -> None:
    world = await voting_world(api)
    bid = (await published_ballot(api, world, clock))["id"]
    open_voting(clock)
    intruder = await api.mp_owner("intruder", "13700000002")
    person = await _person_of(api, world, bid, 4)
    r = await vote(api, intruder, bid, person_id=person, proxy_auth_index=2)
    assert r.status_code == 404  # an outsider without an authorisation does not see the ballot
    r = await vote(api, world.owners[2], bid, person_id=person, proxy_auth_index=2)
    assert r.status_code == 403 and r.json()["error"]["code"] == "proxy_not_authorised"
    assert await api.services.store.db["ballot_log"].count_documents({"type": "vote"}) == 0


@pytest.mark.parametrize(("policy", "allowed_changes"), [("never", 0), ("once", 1), ("last", 3)])
async def test_revote_policies(api: Api, clock: ManualClock, policy: str, allowed_changes: int) -> None:
    world = await voting_world(api)
    bid = (await published_ballot(api, world, clock, rules={"revote": policy}))["id"]
    open_voting(clock)
    assert (await vote(api, world.owners[1], bid, "agree")).status_code == 201
    statuses = [(await vote(api, world.owners[1], bid, c)).status_code
                for c in ("disagree", "agree", "disagree")]
    assert statuses == [201] * allowed_changes + [409] * (3 - allowed_changes)
    result = (await close(api, world, clock, bid))["result"]
    final = ["agree", "disagree", "agree", "disagree"][allowed_changes]
    assert result["items"][0]["raw"]["YN"] == (1 if final == "agree" else 0)
    assert result["items"][0]["raw"]["PN"] == 1


async def test_service_bundle_verifies_offline_and_receipts_are_included(
        api: Api, clock: ManualClock, tmp_path: Path) -> None:
    world = await voting_world(api)
    bid = (await published_ballot(api, world, clock, rules={"revote": "once"}))["id"]
    open_voting(clock)
    proxy = await api.mp_owner("proxy-holder", "13700000001")
    auth = await _record_proxy(api, world, clock, bid, 5, "13700000001")
    person5 = await _person_of(api, world, bid, 5)
    assert (await vote(api, proxy, bid, "agree", "disagree", person_id=person5,
                       proxy_auth_index=auth)).status_code == 201
    for i in (1, 2, 3):
        assert (await vote(api, world.owners[i], bid, "agree", "agree")).status_code == 201
    await api.services.voting_jobs.tick()  # a checkpoint while open
    assert (await vote(api, world.owners[1], bid, "disagree", "agree")).status_code == 201
    person6 = await _person_of(api, world, bid, 6)
    entry = (await api.post(f"/api/admin/v1/ballots/{bid}/paper-entries", world.committee,
                            json={"person_id": person6, "choices": {"i1": "abstain", "i2": "blank"},
                                  "scan_sha256": SCAN})).json()["entry_id"]
    await api.post(f"/api/admin/v1/ballots/{bid}/paper-entries/{entry}/confirm", world.committee2,
                   json={"choices": {"i1": "abstain", "i2": "blank"}, "scan_sha256": SCAN})
    closed = await close(api, world, clock, bid)
    assert closed["status"] == "closed"

    bundle = (await api.get(f"/api/admin/v1/ballots/{bid}/bundle", world.committee)).json()
    summary = verify_bundle(bundle)
    assert summary.tally_recomputed
    public = (await api.get(f"/api/mp/v1/ballots/{bid}/bundle", world.owners[2])).json()
    assert not verify_bundle(public).tally_recomputed

    receipts = (await api.get(f"/api/mp/v1/ballots/{bid}/receipts", world.owners[1])).json()["receipts"]
    assert len(receipts) == 2 and all("inclusion_proof" in r["receipt"] for r in receipts)
    for item in receipts:
        check_receipt_in_bundle(item["receipt"], public)

    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle, ensure_ascii=False))
    done = subprocess.run([sys.executable, "-m", "voting.verify", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr

    vote_private = next(p for p in bundle["private"].values() if "choices" in p)
    vote_private["choices"]["i1"] = "disagree" if vote_private["choices"]["i1"] != "disagree" else "agree"
    with pytest.raises(VerificationFailed, match="private"):
        verify_bundle(bundle)
