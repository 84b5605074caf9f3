"""Server memory while exporting 100,000 complaints (issue 6): the export streams, RSS stays flat.

    .venv/bin/python bench/export_memory.py [--rows 100000] [--small 10000]

Starts an embedded FerretDB (or uses MONGODB_URI), writes `--rows` complaints filed in 2026
and `--small` filed in 2025 into one district, starts the real server (`python -m server`) as
a separate process, then downloads the yearly export(s)
(GET /api/admin/v1/areas/{area}/exports/complaints?year=…) while sampling the server's
resident set size (VmRSS in /proc/<pid>/status) every 20 ms, and noting it at every tenth of
the rows received. If the export buffered its rows, RSS would climb with the rows received
(and the peak with the row count); streamed, it stays flat from the first tenth to the last.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from server.auth import Grant, Role, StaffAccounts, SessionStore  # noqa: E402
from server.clock import SystemClock  # noqa: E402
from server.db import connect, ensure_indexes  # noqa: E402
from server.embedded import EmbeddedStore, ferretdb_binary  # noqa: E402
from server.keys import write_new_keyring  # noqa: E402
from server.registry import AreaLevel, Registry  # noqa: E402

PASSWORD = "Bench-export-2026"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def complaint(i: int, filed_at: datetime) -> dict[str, Any]:
    return {"_id": f"cp_{i:08d}", "community_id": "cm_bench", "company_id": "co_bench",
            "area_path": ["ar_city", "ar_dist", "ar_street"], "quarter": "2026Q2",
            "category": "service", "text": f"第 {i} 号投诉：楼道灯不亮，电梯异响，请尽快维修处理。",
            "text_check": "pass", "photos": [], "unit_id": "", "filed_by": "us_bench",
            "filed_at": filed_at, "state": "closed", "level": "property", "handler_area_id": "",
            "version": 4, "due_at": None, "first_respond_by": filed_at + timedelta(hours=24),
            "responded_at": filed_at + timedelta(hours=2),
            "resolved_at": filed_at + timedelta(hours=30),
            "closed_at": filed_at + timedelta(hours=40), "departments": [], "satisfaction": 5,
            "n_received": 1, "n_responded": 1, "n_on_time": 1, "n_completed": 1, "n_rated": 1,
            "n_escalated": 0, "events": [{"at": filed_at, "action": "file", "note": ""}] * 4}


async def seed(uri: str, db_name: str, rows: int, small: int) -> None:
    store = connect(uri, db_name)
    await ensure_indexes(store.db)
    clock = SystemClock()
    reg = Registry(store.db, clock)
    await reg.create_area("市", AreaLevel.CITY, None, "ar_city")
    await reg.create_area("区", AreaLevel.DISTRICT, "ar_city", "ar_dist")
    await reg.create_area("街道", AreaLevel.STREET, "ar_dist", "ar_street")
    await reg.create_community("基准小区", "ar_street", community_id="cm_bench")
    sessions = SessionStore(store.db, clock)
    await StaffAccounts(store.db, clock, sessions, 5, 60, 3600).create(
        "bench", PASSWORD, "bench", [Grant(Role.OFFICIAL, area_id="ar_dist")])
    started = time.monotonic()
    for year, count, offset in ((2026, rows, 0), (2025, small, rows)):
        base = datetime(year, 3, 1, tzinfo=UTC)
        for first in range(0, count, 5000):
            batch = [complaint(offset + i, base + timedelta(seconds=i))
                     for i in range(first, min(first + 5000, count))]
            await store.db["complaints"].insert_many(batch, ordered=False)
    print(f"seeded {rows + small} complaints in {time.monotonic() - started:.1f} s", flush=True)
    await store.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def measure(base: str, pid: int, token: str, year: int, expected: int) -> dict[str, Any]:
    samples: list[int] = []
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            samples.append(rss_kib(pid))
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    before = rss_kib(pid)
    size = lines = chunks = 0
    progress: list[tuple[int, float]] = []
    step = max(expected // 10, 1)
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=base, timeout=600) as http:
        async with http.stream("GET", f"/api/admin/v1/areas/ar_dist/exports/complaints?year={year}",
                               headers={"Authorization": f"Bearer {token}",
                                        "Accept-Encoding": "identity"}) as r:
            r.raise_for_status()
            async for chunk in r.aiter_raw():
                size += len(chunk)
                lines += chunk.count(b"\n")
                chunks += 1
                if lines >= step * (len(progress) + 1):
                    progress.append((lines - 1, round(rss_kib(pid) / 1024, 1)))
    elapsed = time.monotonic() - started
    done.set()
    await sampler
    after = rss_kib(pid)
    return {"year": year, "rows": lines - 1, "bytes": size, "chunks": chunks,
            "seconds": round(elapsed, 2), "rss_before_mib": round(before / 1024, 1),
            "rss_peak_mib": round(max(samples + [after]) / 1024, 1),
            "rss_after_mib": round(after / 1024, 1),
            "rss_mib_by_rows_received": progress}


async def run(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-export-"))
    embedded = None
    uri = os.environ.get("MONGODB_URI", "")
    if not uri:
        embedded = EmbeddedStore(ferretdb_binary(os.environ.get("FERRETDB_BIN", "")), tmp / "store")
        embedded.start()
        uri = embedded.uri
    db_name = "bench_" + secrets.token_hex(4)
    server = None
    try:
        await seed(uri, db_name, args.rows, args.small)
        keys = tmp / "keys.json"
        write_new_keyring(keys)
        port = free_port()
        env = {**os.environ, "MONGODB_URI": uri, "MONGODB_DB": db_name, "PORT": str(port),
               "WECHAT_APPID": "wxbench", "WECHAT_SECRET": "bench",
               "ID_HASH_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
               "FIELD_ENC_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
               "SIGNING_KEYS_FILE": str(keys), "LOG_LEVEL": "WARNING"}
        server = subprocess.Popen([sys.executable, "-m", "server"], cwd=ROOT, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert server.stdout is not None
        server.stdout.readline()  # "listening on …"
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            r = await http.post("/api/admin/v1/session",
                                json={"username": "bench", "password": PASSWORD})
            r.raise_for_status()
            token = r.json()["token"]
        results = []
        if args.small:
            results.append(await measure(base, server.pid, token, 2025, args.small))
        results.append(await measure(base, server.pid, token, 2026, args.rows))
        print(json.dumps(results, indent=2), flush=True)
        for r in results:
            print(f"{r['rows']:>7} rows, {r['bytes'] / 1e6:.1f} MB in {r['seconds']} s "
                  f"({r['chunks']} chunks): RSS before {r['rss_before_mib']} MiB, "
                  f"peak {r['rss_peak_mib']} MiB, after {r['rss_after_mib']} MiB")
            print("  RSS (MiB) as rows arrived: " + ", ".join(
                f"{n}: {m}" for n, m in r["rss_mib_by_rows_received"]))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        if embedded is not None:
            embedded.stop()


def main() -> None:
    # `timeout` and Ctrl-C alike: leave through `finally`, stopping the server and the store.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=0,
                        help="also export this many 2025 complaints first (compare peaks)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
