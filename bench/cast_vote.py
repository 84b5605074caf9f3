"""cast_vote: 64 concurrent owners vote over HTTP on one ballot with a 10,000-owner roll.

    ./dev bench cast_vote [--owners 10000] [--votes N] [--concurrency 64] [--servers 1]

--votes bounds how many of the roll's owners vote (default: all of them).

Prints votes/s, p50/p99 latency, errors, the store's raw single-document insert rate from one
Python process with the same driver, their ratio, server RSS, and checks afterwards that
stored votes = acknowledged votes = receipts. Targets (issue 7): ratio >= 0.5, p99 <= 100 ms,
zero errors.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import httpx

from bench.common import (
    BenchEnv,
    LoadResult,
    RssSampler,
    ServerProcess,
    bench_store,
    local_services,
    machine,
    owner_tokens,
    percentile,
    publish_open_ballot,
    run_load,
    seed_community,
    start_server,
    store_pid,
    summary_line,
    verdict,
)
from server.clock import ManualClock
from server.db import Store, ensure_indexes
from datetime import UTC, datetime


async def raw_insert_rate(store: Store, count: int, concurrency: int) -> float:
    """Single-document inserts of a vote-sized document, `concurrency` at a time."""
    coll = store.db[f"bench_raw_{concurrency}"]
    payload = {"ballot_id": "bl_raw", "type": "vote", "leaf": "ab" * 32,
               "entry": {"public": {"pseudonym": "cd" * 32, "round": 0, "channel": "online"},
                         "commitment": "ef" * 32},
               "private": {"salt": "00" * 16, "person_id": "p" * 20,
                           "choices": {"i1": "agree", "i2": "agree"}}}
    queue = list(range(count))

    async def worker() -> None:
        while queue:
            n = queue.pop()
            await coll.insert_one({"_id": f"raw-{n:07d}", "seq": n, **payload})

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    rate = count / (time.perf_counter() - started)
    await coll.drop()
    return rate


def vote_jobs(bases: list[str], ballot_id: str, tokens: list[str]) -> list[Any]:
    def job(i: int, token: str) -> Any:
        body = {"choices": {"i1": "agree" if i % 3 else "disagree",
                            "i2": "abstain" if i % 7 == 0 else "agree"}}
        url = f"{bases[i % len(bases)]}/api/mp/v1/ballots/{ballot_id}/votes"

        def send(http: httpx.AsyncClient) -> Any:
            return http.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
        return send
    return [job(i, t) for i, t in enumerate(tokens)]


def keep_receipt(response: httpx.Response) -> Any:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200]
    return data if response.status_code == 201 else data.get("error", data)


async def check_counts(store: Store, ballot_id: str, result: LoadResult) -> dict[str, int]:
    db = store.db
    acknowledged = [body for status, body in result.bodies if status == 201]
    stored = await db["ballot_log"].count_documents({"ballot_id": ballot_id, "type": "vote"})
    receipts = await db["vote_receipts"].count_documents({"ballot_id": ballot_id})
    indexes = {body["index"] for body in acknowledged}
    found = await db["ballot_log"].count_documents(
        {"ballot_id": ballot_id, "seq": {"$in": sorted(indexes)}, "type": "vote"})
    return {"acknowledged": len(acknowledged), "stored_votes": stored, "receipts": receipts,
            "acknowledged_found_in_log": found}


async def prepare(env: BenchEnv, owners: int) -> tuple[Store, Any, list[str], dict[str, Any]]:
    store = env.connect()
    await ensure_indexes(store.db)
    clock = ManualClock(datetime.now(UTC))
    services = local_services(env, store, clock)
    started = time.perf_counter()
    await seed_community(services, owners)
    seeded = time.perf_counter()
    tokens = await owner_tokens(services)
    ballot = await publish_open_ballot(services, clock)
    print(f"seeding: roster of {owners} owners imported in {seeded - started:.1f} s; users, "
          f"bindings, sessions and the published ballot in {time.perf_counter() - seeded:.1f} s")
    return store, services, tokens, ballot


async def main_async(args: argparse.Namespace) -> int:
    with bench_store("cast") as env:
        print(machine(env.store_label))
        store, _services, tokens, ballot = await prepare(env, args.owners)
        raw_seq = await raw_insert_rate(store, 2000, 1)
        raw_conc = await raw_insert_rate(store, 5000, args.concurrency)
        servers = [start_server(env) for _ in range(args.servers)]
        try:
            voters = tokens[:args.votes] if args.votes else tokens
            result, sampler = await load(env, servers, ballot["_id"], voters, args.concurrency)
        finally:
            for s in servers:
                s.stop()
        counts = await check_counts(store, ballot["_id"], result)
        await store.close()
    errors = len(result.latencies) - counts["acknowledged"]
    ratio = result.rate / raw_conc
    print(f"\ncast_vote: {args.owners}-owner roll, {len(result.latencies)} votes, "
          f"{args.concurrency} connections, "
          f"{args.servers} server process(es)")
    print("  votes: " + summary_line(result))
    print(f"  raw insert_one rate, one Python process, same driver (PyMongo async): "
          f"{raw_conc:.0f}/s with {args.concurrency} in flight, {raw_seq:.0f}/s one at a time")
    print(f"  ratio votes/s : raw inserts/s = {ratio:.2f} (vs one-at-a-time: "
          f"{result.rate / raw_seq:.2f})")
    print("  memory and CPU under load:")
    print("\n".join(sampler.lines()))
    print(f"  after the run: {counts}")
    print("targets:")
    print(verdict("ratio >= 0.5", ratio >= 0.5, f"{ratio:.2f}"))
    p99 = percentile(result.latencies, 99) * 1000
    print(verdict("p99 <= 100 ms", p99 <= 100, f"{p99:.1f} ms"))
    print(verdict("zero errors", errors == 0, f"{errors} errors"))
    same = counts["acknowledged"] == counts["stored_votes"] == counts["receipts"] == counts[
        "acknowledged_found_in_log"]
    print(verdict("stored = acknowledged = receipts", same, str(counts)))
    return 0 if same and errors == 0 else 1


async def load(env: BenchEnv, servers: list[ServerProcess], ballot_id: str, tokens: list[str],
               concurrency: int) -> tuple[LoadResult, RssSampler]:
    bases = [s.base for s in servers]
    async with httpx.AsyncClient() as http:  # warm up: connections, caches, the ballot doc
        for base in bases:
            await http.get(base + "/readyz")
    pids = {f"server {i + 1}": s.pid for i, s in enumerate(servers)}
    if (pid := store_pid(env)) is not None:
        pids["store (ferretdb)"] = pid
    with RssSampler(pids) as sampler:
        result = await run_load(vote_jobs(bases, ballot_id, tokens), concurrency,
                                keep=keep_receipt)
    return result, sampler


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cast_vote", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--owners", type=int, default=10_000)
    parser.add_argument("--votes", type=int, default=0, help="owners who vote (0: all)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--servers", type=int, default=1)
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
