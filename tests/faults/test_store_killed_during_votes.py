"""The store is killed in the middle of a vote load and restarted, the service is not.

Every vote acknowledged with a receipt is still in the log and verifies after the close; no
person is counted twice; while the store was down voters got 503 `store_unavailable`; once it
is back the same service records the remaining votes.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.common import owner_tokens, publish_open_ballot, seed_community
from server.app import make_app
from server.clock import ManualClock, as_utc
from server.db import connect, ensure_indexes
from server.embedded import EmbeddedStore, ferretdb_binary
from server.services import build_services
from settings import Settings
from tests.conftest import make_env, serve_app
from voting.verify import check_receipt_in_bundle, verify_bundle

pytestmark = pytest.mark.skipif(bool(os.environ.get("TEST_MONGODB_URI")),
                                reason="needs an embedded store it can kill and restart")

VOTERS = 30
SETTLED = {"already_voted", "vote_in_progress"}  # a retry after a lost answer


async def _voter(http: httpx.AsyncClient, url: str, token: str, n: int,
                 seen: list[tuple[float, int, str]], deadline: float) -> dict[str, Any]:
    """Vote, retrying after 503 like the mini-program does, until recorded or told why not."""
    body = {"choices": {"i1": "agree" if n % 3 else "disagree", "i2": "abstain"}}
    while time.monotonic() < deadline:
        try:
            r = await http.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError:
            await asyncio.sleep(0.2)
            continue
        code = r.json().get("error", {}).get("code", "") if r.status_code >= 400 else ""
        seen.append((time.monotonic(), r.status_code, code))
        if r.status_code == 201:
            return {"receipt": r.json()}
        if r.status_code == 409 and code in SETTLED:
            return {"settled": code}
        assert r.status_code == 503, r.text
        await asyncio.sleep(0.3)
    return {"gave_up": True}


async def test_votes_survive_a_store_crash_and_the_service_recovers_without_restart(
        tmp_path: Path, clock: ManualClock, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    embedded = EmbeddedStore(ferretdb_binary(os.environ.get("FERRETDB_BIN", "")), tmp_path / "db")
    embedded.start()
    store = connect(embedded.uri, "votes_outage")
    server = None
    try:
        await ensure_indexes(store.db)
        services = build_services(Settings.from_env(make_env()), store, clock, fake_wechat[0])
        await seed_community(services, VOTERS)
        tokens = await owner_tokens(services)
        ballot = await publish_open_ballot(services, clock)
        server, base = await serve_app(make_app(services))
        url = f"{base}/api/mp/v1/ballots/{ballot['_id']}/votes"
        seen: list[tuple[float, int, str]] = []
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(timeout=15) as http:
            first = [asyncio.create_task(_voter(http, url, t, n, seen, deadline))
                     for n, t in enumerate(tokens[:10])]
            await asyncio.wait(first, timeout=20)   # some votes are in before the crash
            rest = [asyncio.create_task(_voter(http, url, t, n + 10, seen, deadline))
                    for n, t in enumerate(tokens[10:])]
            await asyncio.sleep(0.05)               # ... and some are in flight
            embedded.kill()
            killed_at = time.monotonic()
            await asyncio.sleep(3)
            embedded.start()                        # same port and data; the app keeps running
            restarted_at = time.monotonic()
            outcomes = await asyncio.gather(*first, *rest)

        # Answers received while the store was certainly down (a vote acknowledged just before
        # the kill, or just after the restart, may land at the window's edges).
        down = [(s, c) for t, s, c in seen if killed_at + 0.5 <= t <= restarted_at]
        assert (503, "store_unavailable") in down, down
        assert all(s == 503 for s, _ in down), down
        assert not any(o.get("gave_up") for o in outcomes), outcomes
        receipts = [o["receipt"] for o in outcomes if "receipt" in o]
        assert len(receipts) >= VOTERS - 5, outcomes  # only votes cut off mid-write may stall

        # Every acknowledged vote is in the log at the receipt's position, with its leaf hash.
        log = {d["seq"]: d for d in await store.db["ballot_log"].find(
            {"ballot_id": ballot["_id"]}).to_list(None)}
        for receipt in receipts:
            assert log[receipt["index"]]["leaf"] == receipt["leaf_hash"]
        # Nobody is counted twice (revote "never": one vote entry per person).
        persons = [d["private"]["person_id"] for d in log.values() if d["type"] == "vote"]
        assert len(persons) == len(set(persons))

        clock.set(as_utc(ballot["closes_at"]) + timedelta(seconds=1))
        closed = await services.ballots.close(ballot["_id"])
        assert closed is not None and closed["status"] == "closed"
        bundle = await services.ballots.bundle(ballot["_id"], "auditor")
        summary = verify_bundle(bundle)
        assert summary.tally_recomputed
        counted = closed["result"]["items"][0]
        assert counted["raw"]["PN"] == len(persons), counted
        for receipt in receipts:
            check_receipt_in_bundle(receipt, bundle)
    finally:
        if server is not None:
            server.stop()
            await server.close_all_connections()
        await store.close()
        embedded.stop()
