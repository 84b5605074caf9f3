"""Shared steps of the voting API tests: a community, a committee, owners, a published ballot."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from server.auth import Grant, Role
from server.clock import ManualClock, iso
from tests.apiclient import Api
from tests.world import build_world


@dataclass
class VotingWorld:
    """A community with a committee, owners 1..6 logged in, and ballot timing."""

    committee: str
    committee2: str
    owners: dict[int, str] = field(default_factory=dict)


async def voting_world(api: Api) -> VotingWorld:
    await build_world(api.services)
    world = VotingWorld(
        committee=await api.staff("c_a1", [Grant(Role.COMMITTEE, community_id="cm_a")]),
        committee2=await api.staff("c_a2", [Grant(Role.COMMITTEE, community_id="cm_a")]))
    for i in range(1, 7):
        world.owners[i] = await api.mp_owner(f"owner-{i}", f"139{100 + i:08d}")
    return world


def ballot_body(clock: ManualClock, **overrides: Any) -> dict[str, Any]:
    now = clock.now()
    body: dict[str, Any] = {
        "title": "续聘物业服务企业", "description": "是否续聘甲物业三年",
        "items": [{"item_id": "i1", "title": "续聘甲物业", "kind": "ordinary"},
                  {"item_id": "i2", "title": "使用维修资金更换电梯", "kind": "special"}],
        "scope": {"kind": "community"},
        "opens_at": iso(now + timedelta(days=16)), "closes_at": iso(now + timedelta(days=30)),
    }
    body.update(overrides)
    return body


async def published_ballot(api: Api, world: VotingWorld, clock: ManualClock,
                           **overrides: Any) -> dict[str, Any]:
    r = await api.post("/api/admin/v1/communities/cm_a/ballots", world.committee,
                       json=ballot_body(clock, **overrides))
    assert r.status_code == 201, r.text
    ballot = r.json()
    r = await api.post(f"/api/admin/v1/ballots/{ballot['id']}/publish", world.committee)
    assert r.status_code == 200, r.text
    return r.json()


def open_voting(clock: ManualClock) -> None:
    clock.advance(days=16, seconds=1)


async def vote(api: Api, token: str, ballot_id: str, i1: str = "agree", i2: str = "agree",
               **extra: Any):  # type: ignore[no-untyped-def]
    return await api.post(f"/api/mp/v1/ballots/{ballot_id}/votes", token,
                          json={"choices": {"i1": i1, "i2": i2}, **extra})


async def close(api: Api, world: VotingWorld, clock: ManualClock, ballot_id: str) -> dict[str, Any]:
    clock.advance(days=15)
    r = await api.post(f"/api/admin/v1/ballots/{ballot_id}/close", world.committee)
    assert r.status_code == 200, r.text
    return r.json()
