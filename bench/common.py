"""Shared parts of the benchmarks: the machine, a private store, server processes, seeding, load.

Seeding shortcuts (documented in docs/benchmarks.md): owners come in through the real roster
importer, but their mini-program users, bindings and session tokens are inserted directly in
bulk (what 10,000 WeChat logins and phone checks would leave behind), and the ballot is
drafted and published through the ballot service with a clock set back 20 days, so that
voting is open now without waiting out the 15-day notice period.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil

from server.auth import Grant, Role, hash_token
from server.clock import ManualClock, iso
from server.db import Store, connect, ensure_indexes
from server.demo import RosterLine, make_id_number, roster_csv
from server.embedded import FERRETDB_VERSION, EmbeddedStore, ferretdb_binary
from server.keys import write_new_keyring
from server.registry import AreaLevel
from server.services import Services, build_services
from settings import Settings

ROOT = Path(__file__).resolve().parent.parent
APPID = "wxbench000000001"
COMMUNITY = "cm_bench"
UNITS_PER_BUILDING = 100


# -- the machine ---------------------------------------------------------------------------------
def machine(store: str) -> str:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = psutil.virtual_memory().total / 2**30
    return (f"machine: {cpu or 'unknown CPU'}, {os.cpu_count()} cores, {ram:.1f} GiB RAM, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
            f"store {store}")


# -- a private store and its secrets --------------------------------------------------------------
@dataclass
class BenchEnv:
    """One store, one database, and the secrets every process of a run shares."""

    uri: str
    db_name: str
    keys_file: Path
    tmp: Path
    store_label: str
    embedded: EmbeddedStore | None = None
    id_hash_key: str = field(default_factory=lambda: base64.b64encode(secrets.token_bytes(32)).decode())
    field_enc_key: str = field(default_factory=lambda: base64.b64encode(secrets.token_bytes(32)).decode())
    wechat_secret: str = field(default_factory=lambda: secrets.token_hex(16))

    def settings_env(self, **extra: str) -> dict[str, str]:
        env = {
            "MONGODB_URI": self.uri, "MONGODB_DB": self.db_name, "PORT": "0",
            "WECHAT_APPID": APPID, "WECHAT_SECRET": self.wechat_secret,
            "WECHAT_API_BASE": "http://127.0.0.1:9", "WECHAT_TIMEOUT_SECONDS": "2",
            "ID_HASH_KEY": self.id_hash_key, "FIELD_ENC_KEY": self.field_enc_key,
            "SIGNING_KEYS_FILE": str(self.keys_file), "LOG_LEVEL": "WARNING",
            "SESSION_TTL_SECONDS": str(60 * 86400), "ADMIN_SESSION_TTL_SECONDS": str(60 * 86400),
        }
        env.update(extra)
        return env

    def connect(self) -> Store:
        return connect(self.uri, self.db_name)


@contextlib.contextmanager
def bench_store(name: str) -> Iterator[BenchEnv]:
    """A fresh embedded FerretDB in a temporary directory (or BENCH_MONGODB_URI if set)."""
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    keys = tmp / "keys.json"
    write_new_keyring(keys)
    db_name = f"bench_{name}_{secrets.token_hex(3)}"
    external = os.environ.get("BENCH_MONGODB_URI", "")
    embedded = None
    try:
        if external:
            env = BenchEnv(external, db_name, keys, tmp, "MongoDB at BENCH_MONGODB_URI")
        else:
            embedded = EmbeddedStore(ferretdb_binary(os.environ.get("FERRETDB_BIN", "")),
                                     tmp / "store")
            embedded.start()
            env = BenchEnv(embedded.uri, db_name, keys, tmp,
                           f"FerretDB {FERRETDB_VERSION} (SQLite backend, embedded, same machine)",
                           embedded=embedded)
        yield env
    finally:
        if embedded is not None:
            embedded.stop()
        if os.environ.get("BENCH_KEEP"):
            print(f"kept: {tmp} (store data, server logs)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def store_pid(env: BenchEnv) -> int | None:
    if env.embedded is not None and env.embedded.process is not None:
        return env.embedded.process.pid
    return None


# -- server processes ----------------------------------------------------------------------------
@dataclass
class ServerProcess:
    """A real `python -m server` (or another module with the same start-up line)."""

    proc: subprocess.Popen[str]
    base: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_mib(self) -> float:
        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


def start_server(env: BenchEnv, module: str = "server", **extra: str) -> ServerProcess:
    """Start a server process on a free port; its log goes to a file (a pipe would fill up)."""
    proc_env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT", "MONGODB"))}
    proc_env.update(env.settings_env(**extra))
    log_path = env.tmp / f"server-{secrets.token_hex(3)}.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=proc_env,
                            stdout=subprocess.PIPE, stderr=log, text=True)
    log.close()
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"http://([\d.]+):(\d+)", line)
    if not match:
        proc.wait(timeout=10)
        raise RuntimeError(f"server did not start: {line!r}\n{log_path.read_text()[-3000:]}")
    return ServerProcess(proc, f"http://{match.group(1)}:{match.group(2)}", log_path)


# -- in-process services for seeding ---------------------------------------------------------------
def local_services(env: BenchEnv, store: Store, clock: ManualClock, pay: Any = None,
                   **extra: str) -> Services:
    settings = Settings.from_env(env.settings_env(**extra))
    return build_services(settings, store, clock, wechat=None, pay=pay)  # type: ignore[arg-type]


@dataclass(frozen=True)
class SeededOwner:
    """One roster owner and the unit it owns."""

    serial: int
    phone: str


def owner_lines(count: int, offset: int = 0) -> list[RosterLine]:
    """`count` owners, one unit each, 100 units per building, distinct valid ID numbers."""
    lines = []
    for i in range(count):
        serial = offset + i
        building = f"{1 + i // UNITS_PER_BUILDING}号楼"
        unit = f"{1 + (i % UNITS_PER_BUILDING) // 4:02d}{1 + i % 4:02d}"
        birth = f"{1940 + serial // 1000:04d}0101"
        lines.append(RosterLine(building, unit, f"{60 + i % 90}.{i % 100:02d}", f"业主{serial}",
                                make_id_number(serial, birth=birth), f"13{serial:09d}"))
    return lines


async def seed_community(services: Services, owners: int, community_id: str = COMMUNITY,
                         area_suffix: str = "") -> None:
    """Areas, a company, one community and its roster (through the real importer)."""
    reg = services.registry
    city, street = "ar_bcity" + area_suffix, "ar_bstreet" + area_suffix
    with contextlib.suppress(Exception):
        await reg.create_area("基准市", AreaLevel.CITY, None, city)
        await reg.create_area("基准区", AreaLevel.DISTRICT, city, "ar_bdist" + area_suffix)
        await reg.create_area("基准街道", AreaLevel.STREET, "ar_bdist" + area_suffix, street)
    company = await reg.create_company("基准物业" + area_suffix, f"91370481MA3CBENCH{len(area_suffix)}")
    await reg.create_community("基准小区" + area_suffix, street, company["id"], True,
                               community_id=community_id)
    report = await services.roster.run(community_id, roster_csv(owner_lines(owners)), "csv")
    if report.errors:
        raise RuntimeError(f"roster import failed: {report.to_json()}")


async def owner_tokens(services: Services, community_id: str = COMMUNITY) -> list[str]:
    """One logged-in, bound mini-program user per owner of the community (bulk inserts)."""
    db = services.store.db
    now = services.clock.now()
    owners: dict[str, list[str]] = {}
    async for unit in db["units"].find({"community_id": community_id}, {"owner_ids": 1}):
        for owner_id in unit["owner_ids"]:
            owners.setdefault(owner_id, []).append(unit["_id"])
    users, bindings, sessions, tokens = [], [], [], []
    for n, (owner_id, unit_ids) in enumerate(sorted(owners.items())):
        user_id = f"us_b{community_id[-4:]}{n:06d}"
        users.append({"_id": user_id, "openid": f"o-bench-{community_id}-{n}", "created_at": now,
                      "phone_hash": "", "phone_enc": "", "unionid": "", "last_login_at": now})
        mine = [{"_id": f"bd_{user_id}_{unit_id}", "user_id": user_id,
                 "unit_id": unit_id, "community_id": community_id, "role": "owner",
                 "status": "active", "owner_id": owner_id, "via": "phone_match",
                 "created_at": now, "decided_by": "", "reason": "", "can_pay": True}
                for unit_id in unit_ids]
        bindings += mine
        users[-1]["active_bindings"] = mine  # as server.accounts keeps them on the user
        token = f"mp_{secrets.token_urlsafe(32)}"
        tokens.append(token)
        sessions.append({"_id": hash_token(token), "kind": "mp", "subject": user_id,
                         "created_at": now, "expires_at": now + timedelta(days=60),
                         "revoked_at": None})
    for name, docs in (("users", users), ("bindings", bindings), ("sessions", sessions)):
        for start in range(0, len(docs), 1000):
            await db[name].insert_many(docs[start:start + 1000], ordered=False)
    return tokens


async def staff_token(services: Services, username: str, grants: list[Grant]) -> str:
    staff_id = await services.staff_accounts.create(username, "Bench-pass-2026", username, grants)
    token, _ = await services.sessions.issue("admin", staff_id, 86400)
    return token


async def publish_open_ballot(services: Services, clock: ManualClock,
                              community_id: str = COMMUNITY, hours_open: float = 24.0,
                              revote: str = "never") -> dict[str, Any]:
    """Draft and publish with the clock 20 days back, so voting is open now (real time)."""
    real_now = datetime.now(UTC)
    clock.set(real_now - timedelta(days=20))
    community = await services.registry.community(community_id)
    body = {"title": "续聘物业服务企业", "description": "基准测试",
            "items": [{"item_id": "i1", "title": "续聘物业", "kind": "ordinary"},
                      {"item_id": "i2", "title": "使用维修资金", "kind": "special"}],
            "scope": {"kind": "community"}, "rules": {"revote": revote},
            "opens_at": iso(real_now - timedelta(hours=1)),
            "closes_at": iso(real_now + timedelta(hours=hours_open))}
    draft = await services.ballots.create(community, "st_bench", body)
    published = await services.ballots.publish(draft["_id"], "st_bench")
    clock.set(datetime.now(UTC))
    return published


# -- load ---------------------------------------------------------------------------------------
@dataclass
class LoadResult:
    """Latencies (seconds) and statuses of one load run."""

    latencies: list[float]
    statuses: Counter[int | str]
    elapsed: float
    bodies: list[tuple[int, Any]]

    @property
    def ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if isinstance(s, int) and s < 400)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def pct_ms(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000


Job = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


async def run_load(jobs: Sequence[Job], concurrency: int = 64, timeout: float = 300.0,
                   keep: Callable[[httpx.Response], Any] | None = None) -> LoadResult:
    """Run every job with `concurrency` workers over as many keep-alive connections."""
    queue: asyncio.Queue[Job] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    latencies: list[float] = []
    statuses: Counter[int | str] = Counter()
    bodies: list[tuple[int, Any]] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as http:
        async def worker() -> None:
            while not queue.empty():
                job = queue.get_nowait()
                started = time.perf_counter()
                try:
                    response = await job(http)
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                    latencies.append(time.perf_counter() - started)
                    continue
                latencies.append(time.perf_counter() - started)
                statuses[response.status_code] += 1
                if keep is not None:
                    bodies.append((response.status_code, keep(response)))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return LoadResult(latencies, statuses, elapsed, bodies)


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class RssSampler:
    """Samples the resident memory of some processes every 100 ms in a thread."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak: dict[str, float] = dict.fromkeys(pids, 0.0)
        self.cpu: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self._cpu0 = {name: sum(p.cpu_times()[:2]) for name, p in self._procs.items()}
        self._t0 = time.perf_counter()

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, proc in self._procs.items():
                with contextlib.suppress(psutil.Error):
                    self.peak[name] = max(self.peak[name], proc.memory_info().rss / 2**20)
            self._stop.wait(0.1)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        wall = time.perf_counter() - self._t0
        for name, proc in self._procs.items():
            with contextlib.suppress(psutil.Error):
                used = sum(proc.cpu_times()[:2]) - self._cpu0[name]
                self.cpu[name] = used / wall if wall else 0.0

    def lines(self) -> list[str]:
        return [f"  {name}: peak RSS {self.peak[name]:.0f} MiB, CPU {self.cpu.get(name, 0) * 100:.0f}%"
                for name in self.pids]


def verdict(name: str, ok: bool, detail: str) -> str:
    return f"  [{'MET' if ok else 'NOT MET'}] {name}: {detail}"


def summary_line(result: LoadResult) -> str:
    return (f"{len(result.latencies)} requests in {result.elapsed:.2f} s = {result.rate:.0f}/s; "
            f"p50 {result.pct_ms(50):.1f} ms, p99 {result.pct_ms(99):.1f} ms, "
            f"max {max(result.latencies) * 1000:.1f} ms; statuses {dict(result.statuses)}")


def committee_grants(community_id: str = COMMUNITY) -> list[Grant]:
    return [Grant(Role.COMMITTEE, community_id=community_id)]


def prepare_store(store: Store) -> Awaitable[None]:
    return ensure_indexes(store.db)
