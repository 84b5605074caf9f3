"""Scheduled closing exactly once across processes; corrections; posters; receipt notices."""

from __future__ import annotations

import asyncio

from server.clock import ManualClock
from server.services import build_services
from tests.apiclient import Api
from tests.voting_api.helpers import ballot_body, open_voting, published_ballot, vote, voting_world


async def test_two_schedulers_close_a_due_ballot_exactly_once(api: Api, clock: ManualClock) -> None:
    world = await voting_world(api)
    bid = (await published_ballot(api, world, clock))["id"]
    open_voting(clock)
    await vote(api, world.owners[1], bid)
    clock.advance(days=15)
    # A second process: its own services (own caches, own lease holder) on the same store.
    other = build_services(api.services.settings, api.services.store, clock, api.services.wechat)
    await asyncio.gather(api.services.voting_jobs.tick(), other.voting_jobs.tick(),
                         api.services.voting_jobs.tick())
    db = api.services.store.db
    assert await db["ballot_log"].count_documents({"ballot_id": bid, "type": "close"}) == 1
    assert await db["ballot_log"].count_documents({"ballot_id": bid, "type": "result"}) == 1
    ballot = await db["ballots"].find_one({"_id": bid})
    assert ballot is not None and ballot["status"] == "closed"
    assert ballot["result"]["items"][0]["raw"]["PN"] == 1


async def test_a_correction_withdraws_the_ballot_it_corrects(api: Api, clock: ManualClock) -> None:
    world = await voting_world(api)
    old = (await published_ballot(api, world, clock))["id"]
    body = ballot_body(clock, title="续聘物业服务企业（更正）", supersedes_ballot_id=old)
    new = (await api.post("/api/admin/v1/communities/cm_a/ballots", world.committee, json=body)).json()
    r = await api.post(f"/api/admin/v1/ballots/{new['id']}/publish", world.committee)
    assert r.status_code == 200 and r.json()["supersedes_ballot_id"] == old
    old_view = (await api.get(f"/api/admin/v1/ballots/{old}", world.committee)).json()
    assert old_view["status"] == "withdrawn" and old_view["withdrawn_by"] == new["id"]
    open_voting(clock)
    r = await vote(api, world.owners[1], old)
    assert r.status_code == 409 and r.json()["error"]["code"] == "voting_closed"


async def test_poster_png_uses_the_mini_program_code_and_svg_carries_the_title(api: Api, clock: ManualClock) -> None:
    world = await voting_world(api)
    bid = (await published_ballot(api, world, clock))["id"]
    r = await api.get(f"/api/admin/v1/ballots/{bid}/poster?format=png", world.committee)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png"
    assert r.content.startswith(b"\x89PNG")
    cached = await api.services.store.db["posters"].find_one({"ballot_id": bid})
    assert cached is not None and cached["source"] == "wxacode"
    r = await api.get(f"/api/admin/v1/ballots/{bid}/poster?format=svg", world.committee)
    assert r.headers["Content-Type"].startswith("image/svg+xml")
    assert "续聘物业服务企业" in r.text and "<svg" in r.text


async def test_poster_falls_back_to_a_plain_qr_when_wechat_refuses(api: Api, clock: ManualClock) -> None:
    world = await voting_world(api)
    bid = (await published_ballot(api, world, clock))["id"]
    api.fake.fail_next("/wxa/getwxacodeunlimit", 41030)  # WeChat: invalid page
    r = await api.get(f"/api/admin/v1/ballots/{bid}/poster?format=png", world.committee)
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG")
    cached = await api.services.store.db["posters"].find_one({"ballot_id": bid})
    assert cached is not None and cached["source"] == "qr"


async def test_a_vote_notice_is_sent_where_the_owner_granted_quota(api: Api, clock: ManualClock) -> None:
    world = await voting_world(api)
    api.services.vote_notices.template_id = "tmpl-vote"
    bid = (await published_ballot(api, world, clock))["id"]
    open_voting(clock)
    api.fake.grant_subscribe("owner-1", "tmpl-vote")
    await vote(api, world.owners[1], bid)
    await vote(api, world.owners[2], bid)  # no quota granted: the vote still counts
    await api.services.vote_notices.drain()
    sent = [m.openid for m in api.fake.sent_messages]
    assert sent == ["owner-1"]
    statuses = {d["status"] for d in await api.services.store.db["vote_notices"].find().to_list(None)}
    assert statuses == {"sent", "wechat_subscribe_quota_exhausted"}
