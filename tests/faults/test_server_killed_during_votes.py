"""A server process is SIGKILLed in the middle of a vote load while another one keeps serving.

Voters whose request died with the process retry against the survivor; every vote that was
acknowledged with a receipt — by either process — is in the log, and nobody is counted twice.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import httpx

from bench.common import owner_tokens, publish_open_ballot, seed_community
from server.clock import ManualClock
from tests.apiclient import Api
from tests.conftest import KEYS_FILE
from tests.server.test_process import start_server

VOTERS = 40


async def _voter(http: httpx.AsyncClient, bases: list[str], ballot_id: str, token: str,
                 n: int, deadline: float) -> dict[str, Any]:
    body = {"choices": {"i1": "agree" if n % 2 else "disagree", "i2": "agree"}}
    attempt = n
    while time.monotonic() < deadline:
        base = bases[attempt % len(bases)]
        attempt += 1
        try:
            r = await http.post(f"{base}/api/mp/v1/ballots/{ballot_id}/votes", json=body,
                                headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError:
            await asyncio.sleep(0.1)  # that process is gone: the proxy would route elsewhere
            continue
        if r.status_code == 201:
            return {"receipt": r.json(), "base": base}
        assert r.status_code == 409, r.text  # a retry of a vote whose answer was lost
        return {"settled": r.json()["error"]["code"]}
    return {"gave_up": True}


async def test_no_acknowledged_vote_is_lost_when_one_of_two_processes_is_killed(
        api: Api, clock: ManualClock, store_uri: str) -> None:
    services = api.services
    await seed_community(services, VOTERS)
    tokens = await owner_tokens(services)
    ballot = await publish_open_ballot(services, clock)
    env = {"MONGODB_DB": services.store.db.name, "SIGNING_KEYS_FILE": str(KEYS_FILE),
           "ID_HASH_KEY": services.settings.id_hash_key.reveal(),
           "FIELD_ENC_KEY": services.settings.field_enc_key.reveal(), "LOG_LEVEL": "WARNING"}
    procs = [start_server(store_uri, **env) for _ in range(2)]
    bases = [base for _, base in procs]
    try:
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(timeout=15) as http:
            tasks = [asyncio.create_task(_voter(http, bases, ballot["_id"], t, n, deadline))
                     for n, t in enumerate(tokens)]
            await asyncio.sleep(0.3)
            procs[0][0].send_signal(signal.SIGKILL)  # mid-load, no goodbye
            outcomes = await asyncio.gather(*tasks)
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(timeout=20)
    assert not any(o.get("gave_up") for o in outcomes), outcomes
    receipts = [o["receipt"] for o in outcomes if "receipt" in o]
    assert {o["base"] for o in outcomes if "receipt" in o} >= {bases[1]}
    log = {d["seq"]: d for d in await services.store.db["ballot_log"].find(
        {"ballot_id": ballot["_id"]}).to_list(None)}
    for receipt in receipts:
        assert receipt["index"] in log and log[receipt["index"]]["leaf"] == receipt["leaf_hash"]
    persons = [d["private"]["person_id"] for d in log.values() if d["type"] == "vote"]
    assert len(persons) == len(set(persons)) and len(persons) >= len(receipts)
