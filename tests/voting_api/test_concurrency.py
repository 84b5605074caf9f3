"""One counted ballot per person, enforced by the store, with one and with two server processes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx

from server.clock import ManualClock, iso
from tests.apiclient import Api
from tests.conftest import KEYS_FILE
from tests.server.test_process import start_server
from tests.voting_api.helpers import open_voting, published_ballot, voting_world


async def _hundred_casts(bases: list[str], token: str, ballot_id: str) -> list[int]:
    async with httpx.AsyncClient(timeout=60) as http:
        requests = [http.post(f"{bases[i % len(bases)]}/api/mp/v1/ballots/{ballot_id}/votes",
                              headers={"Authorization": f"Bearer {token}"},
                              json={"choices": {"i1": "agree" if i % 2 else "disagree",
                                                "i2": "abstain"}})
                    for i in range(100)]
        return [r.status_code for r in await asyncio.gather(*requests)]


async def _counted(api: Api, ballot_id: str) -> int:
    return await api.services.store.db["ballot_log"].count_documents(
        {"ballot_id": ballot_id, "type": "vote"})


async def test_hundred_concurrent_casts_by_one_owner_count_once(api: Api, clock: ManualClock) -> None:
    world = await voting_world(api)
    bid = (await published_ballot(api, world, clock))["id"]
    open_voting(clock)
    statuses = await _hundred_casts([api.base], world.owners[1], bid)
    assert statuses.count(201) == 1, statuses
    assert set(statuses) == {201, 409}
    assert await _counted(api, bid) == 1
    assert await api.services.store.db["vote_receipts"].count_documents({"ballot_id": bid}) == 1


async def test_hundred_concurrent_casts_across_two_server_processes_count_once(
        api: Api, clock: ManualClock, store_uri: str) -> None:
    real_now = datetime.now(UTC)
    clock.set(real_now - timedelta(days=20))
    world = await voting_world(api)
    bid = (await published_ballot(api, world, clock,
                                  opens_at=iso(real_now - timedelta(days=1)),
                                  closes_at=iso(real_now + timedelta(days=1))))["id"]
    clock.set(real_now)
    env = {"MONGODB_DB": api.services.store.db.name, "SIGNING_KEYS_FILE": str(KEYS_FILE),
           "ID_HASH_KEY": api.services.settings.id_hash_key.reveal(),
           "FIELD_ENC_KEY": api.services.settings.field_enc_key.reveal()}
    procs = [start_server(store_uri, **env) for _ in range(2)]
    try:
        statuses = await _hundred_casts([base for _, base in procs], world.owners[1], bid)
    finally:
        for proc, _ in procs:
            proc.terminate()
            proc.wait(timeout=20)
    assert statuses.count(201) == 1, statuses
    assert set(statuses) == {201, 409}
    assert await _counted(api, bid) == 1


async def test_concurrent_revotes_under_last_policy_make_one_round_each(api: Api, clock: ManualClock) -> None:
    world = await voting_world(api)
    bid = (await published_ballot(api, world, clock, rules={"revote": "last"}))["id"]
    open_voting(clock)
    statuses = await _hundred_casts([api.base], world.owners[1], bid)
    # Each round has exactly one winner; losers of a round get 409 and may try again.
    docs = await api.services.store.db["ballot_log"].find(
        {"ballot_id": bid, "type": "vote"}).to_list(None)
    rounds = sorted(d["entry"]["public"]["round"] for d in docs)
    assert rounds == list(range(len(rounds))) and statuses.count(201) == len(rounds)
