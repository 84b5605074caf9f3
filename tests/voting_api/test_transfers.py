"""A unit changing hands while voting runs: an earlier vote stands, otherwise the new owner votes."""

from __future__ import annotations

from server.clock import ManualClock
from server.demo import RosterLine, make_id_number, roster_csv
from tests.apiclient import Api
from tests.voting_api.helpers import VotingWorld, close, open_voting, published_ballot, vote, voting_world
from tests.world import simple_roster, unit_id
from voting.verify import verify_bundle

SCAN = "cd" * 32


async def _sell(api: Api, number: str, buyer_serial: int, buyer_phone: str) -> None:
    lines = simple_roster(100)
    idx = next(i for i, line in enumerate(lines) if line.unit == number)
    old = lines[idx]
    lines[idx] = RosterLine(old.building, old.unit, old.area, f"买受人{buyer_serial}",
                            make_id_number(buyer_serial), buyer_phone)
    report = await api.services.roster.run("cm_a", roster_csv(lines), "csv")
    assert report.units["updated"] == 1


async def _transfer(api: Api, world: VotingWorld, bid: str, number: str) -> dict:  # type: ignore[type-arg]
    r = await api.post(f"/api/admin/v1/ballots/{bid}/transfers", world.committee,
                       json={"unit_id": unit_id("cm_a", "1号楼", number), "document_sha256": SCAN})
    assert r.status_code == 201, r.text
    return r.json()


async def test_new_owner_votes_when_the_seller_had_not_and_the_seller_cannot(api: Api, clock: ManualClock) -> None:
    world = await voting_world(api)
    bid = (await published_ballot(api, world, clock))["id"]
    open_voting(clock)
    await _sell(api, "102", 777, "13600000777")
    assert (await _transfer(api, world, bid, "102"))["effect"] == "voter_changed"
    buyer = await api.mp_owner("buyer", "13600000777")
    r = await vote(api, world.owners[2], bid)
    assert r.status_code == 403 and r.json()["error"]["code"] in ("not_on_roll", "not_your_vote")
    assert (await vote(api, buyer, bid, "disagree", "disagree")).status_code == 201
    result = (await close(api, world, clock, bid))["result"]
    assert result["items"][0]["raw"]["PN"] == 1 and result["items"][0]["raw"]["YN"] == 0
    assert result["N"] == 6  # the frozen roll and its totals do not change
    bundle = (await api.get(f"/api/admin/v1/ballots/{bid}/bundle", world.committee)).json()
    assert verify_bundle(bundle).tally_recomputed


async def test_the_sellers_vote_cast_before_the_transfer_stands(api: Api, clock: ManualClock) -> None:
    world = await voting_world(api)
    bid = (await published_ballot(api, world, clock))["id"]
    open_voting(clock)
    assert (await vote(api, world.owners[2], bid, "agree", "agree")).status_code == 201
    await _sell(api, "102", 778, "13600000778")
    assert (await _transfer(api, world, bid, "102"))["effect"] == "vote_stands"
    buyer = await api.mp_owner("buyer", "13600000778")
    r = await vote(api, buyer, bid)
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_on_roll"
    result = (await close(api, world, clock, bid))["result"]
    assert result["items"][0]["raw"]["YN"] == 1
    bundle = (await api.get(f"/api/admin/v1/ballots/{bid}/bundle", world.committee)).json()
    verify_bundle(bundle)
