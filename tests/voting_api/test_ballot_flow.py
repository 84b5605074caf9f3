"""A ballot from draft to signed result, over HTTP against the real store."""

from __future__ import annotations

from server.clock import ManualClock
from tests.apiclient import Api
from tests.voting_api.helpers import ballot_body, close, open_voting, published_ballot, vote, voting_world

# cm_a: six single-unit owners (tests/world.py), areas 81.50 … 86.50 m², A = 50100, N = 6.
AREAS = {1: 8150, 2: 8250, 3: 8350, 4: 8450, 5: 8550, 6: 8650}


async def test_published_ballot_freezes_roll_totals(api: Api, clock: ManualClock) -> None:
    world = await voting_world(api)
    ballot = await published_ballot(api, world, clock)
    assert ballot["status"] == "published" and not ballot["is_open"]
    assert ballot["totals"]["A"] == sum(AREAS.values()) and ballot["totals"]["N"] == 6
    roll = (await api.get(f"/api/admin/v1/ballots/{ballot['id']}/roll", world.committee)).json()
    assert len(roll["persons"]) == 6


async def test_full_flow_counts_exactly_and_signs_the_result(api: Api, clock: ManualClock) -> None:
    world = await voting_world(api)
    ballot = await published_ballot(api, world, clock)
    bid = ballot["id"]
    r = await vote(api, world.owners[1], bid)
    assert r.status_code == 409 and r.json()["error"]["code"] == "voting_closed"
    open_voting(clock)
    for i, (c1, c2) in {1: ("agree", "agree"), 2: ("agree", "agree"), 3: ("agree", "disagree"),
                        4: ("disagree", "abstain"), 5: ("abstain", "agree")}.items():
        r = await vote(api, world.owners[i], bid, c1, c2)
        assert r.status_code == 201, r.text
        assert r.json()["index"] >= 2 and len(r.json()["leaf_hash"]) == 64
    turnout = (await api.get(f"/api/mp/v1/ballots/{bid}", world.owners[6])).json()["turnout"]
    assert turnout["headcount"] == {"numerator": 5, "denominator": 6}
    assert "result" not in (await api.get(f"/api/mp/v1/ballots/{bid}", world.owners[6])).json()
    result = (await close(api, world, clock, bid))["result"]
    i1, i2 = result["items"][0]["raw"], result["items"][1]["raw"]
    pa = sum(AREAS[i] for i in range(1, 6))
    assert (i1["PA"], i1["PN"]) == (pa, 5) and i1["quorum_met"]
    assert (i1["YA"], i1["YN"]) == (AREAS[1] + AREAS[2] + AREAS[3], 3)
    assert i1["passed"]  # 2·YA > PA and 2·YN > PN
    assert (i2["YA"], i2["YN"]) == (AREAS[1] + AREAS[2] + AREAS[5], 3)
    assert not i2["passed"]  # special: 4·YN = 12 < 3·PN = 15
    r = await vote(api, world.owners[6], bid)
    assert r.status_code == 409 and r.json()["error"]["code"] == "voting_closed"


async def test_publication_refuses_a_ballot_without_disagree_or_with_bad_times(api: Api, clock: ManualClock) -> None:
    world = await voting_world(api)
    now_body = ballot_body(clock)
    body = {**now_body, "items": [{"item_id": "i1", "title": "x", "kind": "ordinary",
                                   "options": ["agree", "abstain"]}],
            "closes_at": now_body["opens_at"], "scope": {"kind": "buildings", "ids": []}}
    r = await api.post("/api/admin/v1/communities/cm_a/ballots", world.committee, json=body)
    bid = r.json()["id"]
    r = await api.post(f"/api/admin/v1/ballots/{bid}/publish", world.committee)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "ballot_not_publishable"
    assert set(r.json()["error"]["fields"]) == {"items[0].options", "closes_at", "scope.ids"}
    assert await api.services.store.db["ballot_log"].count_documents({"ballot_id": bid}) == 0


async def test_notice_period_of_fifteen_days_is_required(api: Api, clock: ManualClock) -> None:
    world = await voting_world(api)
    from datetime import timedelta

    from server.clock import iso

    body = ballot_body(clock, opens_at=iso(clock.now() + timedelta(days=3)))
    bid = (await api.post("/api/admin/v1/communities/cm_a/ballots", world.committee, json=body)).json()["id"]
    r = await api.post(f"/api/admin/v1/ballots/{bid}/publish", world.committee)
    assert r.status_code == 400 and "opens_at" in r.json()["error"]["fields"]


async def test_non_owner_outsider_and_other_community_are_refused(api: Api, clock: ManualClock) -> None:
    world = await voting_world(api)
    bid = (await published_ballot(api, world, clock))["id"]
    open_voting(clock)
    stranger = await api.mp_login("stranger")
    r = await vote(api, stranger, bid)
    assert r.status_code == 404  # not a resident: the ballot is not even visible
    other = await api.mp_owner("owner-b1", "13900000201")  # owner in cm_b
    assert (await vote(api, other, bid)).status_code == 404
    r = await api.post(f"/api/mp/v1/units/{(await api.get('/api/mp/v1/me', world.owners[1])).json()['bindings'][0]['unit_id']}/invites",
                       world.owners[1], json={"role": "family"})
    family = await api.mp_login("family-1")
    await api.post(f"/api/mp/v1/invites/{r.json()['code']}/accept", family)
    r = await vote(api, family, bid)
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_an_owner"
    r = await api.post(f"/api/mp/v1/ballots/{bid}/votes", world.owners[1],
                       json={"choices": {"i1": "agree", "i9": "agree"}})
    assert r.status_code == 400 and set(r.json()["error"]["fields"]) == {"choices.i9", "choices.i2"}
    assert await api.services.store.db["ballot_log"].count_documents(
        {"ballot_id": bid, "type": "vote"}) == 0


async def test_owner_outside_a_building_scope_is_not_on_the_roll(api: Api, clock: ManualClock) -> None:
    world = await voting_world(api)
    from server.registry import stable_id

    ballot = await published_ballot(api, world, clock,
                                    scope={"kind": "units",
                                           "ids": [stable_id("u", "cm_a", "1号楼", "101")]})
    open_voting(clock)
    assert ballot["totals"]["N"] == 1
    r = await vote(api, world.owners[2], ballot["id"])
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_on_roll"
    assert (await vote(api, world.owners[1], ballot["id"])).status_code == 201


async def test_per_voter_records_are_for_the_committee_only(api: Api, clock: ManualClock) -> None:
    world = await voting_world(api)
    bid = (await published_ballot(api, world, clock))["id"]
    open_voting(clock)
    await vote(api, world.owners[1], bid)
    votes = (await api.get(f"/api/admin/v1/ballots/{bid}/votes", world.committee)).json()["votes"]
    assert len(votes) == 1 and votes[0]["choices"] == {"i1": "agree", "i2": "agree"}
    from server.auth import Grant, Role

    clerk = await api.staff("clerk_a", [Grant(Role.PROPERTY, company_id="")])
    assert (await api.get(f"/api/admin/v1/ballots/{bid}/votes", clerk)).status_code == 403
    public = (await api.get(f"/api/mp/v1/ballots/{bid}/bundle", world.owners[2])).json()
    assert public["variant"] == "public" and public["private"] == {} and public["roll"] is None
    text = str(public)
    assert "agree" not in text.replace('"options"', "") or "choices" not in text
    assert "o_" not in str([e for e in public["entries"] if e["type"] == "vote"])


async def test_option_counts_before_close_only_where_the_rules_allow(api: Api, clock: ManualClock) -> None:
    world = await voting_world(api)
    hidden = (await published_ballot(api, world, clock))["id"]
    shown = (await published_ballot(api, world, clock, rules={"show_counts_before_close": True}))["id"]
    open_voting(clock)
    for bid in (hidden, shown):
        assert (await vote(api, world.owners[1], bid, "agree", "disagree")).status_code == 201
    view = (await api.get(f"/api/mp/v1/ballots/{hidden}", world.owners[2])).json()
    assert "live_counts" not in view and view["turnout"]["headcount"]["numerator"] == 1
    view = (await api.get(f"/api/mp/v1/ballots/{shown}", world.owners[2])).json()
    assert view["live_counts"][0]["raw"]["YN"] == 1 and view["live_counts"][1]["raw"]["YN"] == 0
