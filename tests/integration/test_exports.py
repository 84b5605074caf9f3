"""Large exports are streamed in chunks (chunked transfer), scoped to the official's area."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from server.auth import Grant, Role
from tests.apiclient import Api
from tests.world import build_world


def complaint_doc(i: int, community: str, area_path: list[str], filed_at: datetime) -> dict[str, Any]:
    """A complaint as Complaints.file writes it (store shape), for volume."""
    return {"_id": f"cp_{i:08d}", "community_id": community, "company_id": "co_x",
            "area_path": area_path, "quarter": "2026Q2", "category": "service",
            "text": f"=第 {i} 号投诉：电梯停运", "text_check": "pass", "photos": [], "unit_id": "",
            "filed_by": "us_x", "filed_at": filed_at, "state": "open", "level": "property",
            "handler_area_id": "", "version": 1, "due_at": filed_at + timedelta(hours=24),
            "first_respond_by": filed_at + timedelta(hours=24), "departments": [],
            "satisfaction": 0, "n_received": 1, "n_responded": 0, "n_on_time": 0,
            "n_completed": 0, "n_rated": 0, "n_escalated": 0, "events": []}


async def test_all_complaints_of_a_year_stream_in_chunks(api: Api) -> None:
    await build_world(api.services)
    db = api.services.store.db
    may = datetime(2026, 5, 1, tzinfo=UTC)
    docs = [complaint_doc(i, "cm_a", ["ar_city", "ar_d1", "ar_s1"], may) for i in range(2500)]
    docs.append(complaint_doc(9001, "cm_c", ["ar_city", "ar_d2", "ar_s2"], may))        # elsewhere
    docs.append(complaint_doc(9002, "cm_a", ["ar_city", "ar_d1", "ar_s1"],
                              datetime(2025, 12, 31, 15, 59, tzinfo=UTC)))           # 2025 in CST
    await db["complaints"].insert_many(docs)
    token = await api.staff("d1", [Grant(Role.OFFICIAL, area_id="ar_d1")])
    chunks = 0
    raw = b""
    async with api.http.stream("GET", "/api/admin/v1/areas/ar_d1/exports/complaints?year=2026",
                               headers={"Authorization": f"Bearer {token}",
                                        "Accept-Encoding": "identity"}) as r:
        assert r.status_code == 200
        assert r.headers["transfer-encoding"] == "chunked"
        assert r.headers["content-type"].startswith("text/csv")
        async for chunk in r.aiter_raw():
            chunks += 1
            raw += chunk
    assert raw.startswith("\ufeff".encode()) and chunks >= 3
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][:3] == ["id", "community_id", "company_id"]
    assert len(rows) == 1 + 2500
    assert {r[1] for r in rows[1:]} == {"cm_a"}
    assert rows[1][-1].startswith("'=")  # a formula-looking cell is neutralised

    r = await api.get("/api/admin/v1/areas/ar_d2/exports/complaints?year=2026", token)
    assert r.status_code == 403 and r.json()["error"]["code"] == "out_of_scope"


async def test_ballots_of_a_district_export_as_json_lines(api: Api) -> None:
    from tests.voting_api.helpers import published_ballot, voting_world

    world = await voting_world(api)
    ballot = await published_ballot(api, world, api.services.clock)  # type: ignore[arg-type]
    token = await api.staff("d1", [Grant(Role.OFFICIAL, area_id="ar_d1")])
    r = await api.get("/api/admin/v1/areas/ar_d1/exports/ballots?format=jsonl", token)
    assert r.status_code == 200
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [line["id"] for line in lines] == [ballot["id"]]
    assert lines[0]["status"] == "published" and lines[0]["persons"] == 6
