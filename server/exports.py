"""Large exports streamed chunk by chunk: all complaints of a year, all ballots of an area.

Each export is an async generator of byte chunks read from a store cursor in batches; the
handler writes and flushes one chunk before the next is produced (handlers/base.py `_stream`),
so the process holds one batch at a time however many rows there are (bench/export_memory.py
measures it). Rows are in natural store order, with no sort: a sort over a filtered range
could make the store buffer the whole result.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from server.clock import iso
from server.periods import CST

BATCH = 1000
BOM = "\ufeff".encode()  # so Excel opens UTF-8 CSV with Chinese text correctly

COMPLAINT_COLUMNS = ("id", "community_id", "company_id", "category", "state", "level",
                     "handler_area_id", "filed_at", "responded_at", "resolved_at", "closed_at",
                     "responded", "responded_on_time", "completed", "escalated", "satisfaction",
                     "text")
BALLOT_COLUMNS = ("id", "community_id", "community_name", "title", "status", "published_at",
                  "opens_at", "closes_at", "area_total_centi_m2", "headcount_total", "persons",
                  "items", "result")


def year_bounds(year: int) -> tuple[datetime, datetime]:
    """A calendar year in Beijing time, as aware UTC bounds [start, end)."""
    return (datetime(year, 1, 1, tzinfo=CST), datetime(year + 1, 1, 1, tzinfo=CST))


def _time(value: Any) -> str:
    return iso(value) if isinstance(value, datetime) else ""


def complaint_row(doc: Mapping[str, Any]) -> list[Any]:
    return [doc["_id"], doc["community_id"], doc.get("company_id", ""), doc["category"],
            doc["state"], doc["level"], doc.get("handler_area_id", ""), _time(doc["filed_at"]),
            _time(doc.get("responded_at")), _time(doc.get("resolved_at")),
            _time(doc.get("closed_at")), doc.get("n_responded", 0), doc.get("n_on_time", 0),
            doc.get("n_completed", 0), doc.get("n_escalated", 0), doc.get("satisfaction", 0),
            doc.get("text", "")]


def ballot_row(doc: Mapping[str, Any]) -> list[Any]:
    totals = doc.get("totals") or {}
    return [doc["_id"], doc["community_id"], doc.get("community_name", ""), doc["title"],
            doc["status"], _time(doc.get("published_at")), _time(doc["opens_at"]),
            _time(doc["closes_at"]), totals.get("A", ""), totals.get("N", ""),
            totals.get("persons", ""),
            json.dumps(doc["items"], ensure_ascii=False, separators=(",", ":")),
            json.dumps(doc.get("result") or None, ensure_ascii=False, separators=(",", ":"))]


class Exports:
    """Streams exports as CSV (UTF-8 with BOM) or JSON lines."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.db = db

    def complaints(self, area_id: str, year: int, fmt: str) -> AsyncIterator[bytes]:
        start, end = year_bounds(year)
        query = {"area_path": area_id, "filed_at": {"$gte": start, "$lt": end}}
        projection = {"events": 0, "photos": 0, "filed_by": 0, "text_check": 0}
        cursor = self.db["complaints"].find(query, projection, batch_size=BATCH)
        return _encode(cursor, COMPLAINT_COLUMNS, complaint_row, fmt)

    async def ballots(self, area_id: str, fmt: str) -> AsyncIterator[bytes]:
        ids = await self.db["communities"].distinct("_id", {"area_path": area_id})
        cursor = self.db["ballots"].find({"community_id": {"$in": ids}, "status": {"$ne": "draft"}},
                                         {"pseudonym_key": 0}, batch_size=200)
        async for chunk in _encode(cursor, BALLOT_COLUMNS, ballot_row, fmt):
            yield chunk


async def _encode(cursor: Any, columns: Iterable[str], row: Any, fmt: str) -> AsyncIterator[bytes]:
    """One chunk per batch of documents; never more than a batch in memory."""
    names = list(columns)
    if fmt == "csv":
        yield BOM + _csv_lines([names])
    batch: list[list[Any]] = []
    async for doc in cursor:
        batch.append(row(doc))
        if len(batch) >= BATCH:
            yield _chunk(batch, names, fmt)
            batch = []
    if batch:
        yield _chunk(batch, names, fmt)


def _chunk(rows: list[list[Any]], names: list[str], fmt: str) -> bytes:
    if fmt == "csv":
        return _csv_lines(rows)
    return "".join(json.dumps(dict(zip(names, r, strict=True)), ensure_ascii=False,
                              separators=(",", ":")) + "\n" for r in rows).encode()


def _csv_lines(rows: list[list[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    # Cells starting with = + - @ are neutralised so a spreadsheet never runs them as formulas.
    writer.writerows([[f"'{c}" if isinstance(c, str) and c[:1] in ("=", "+", "-", "@") else c
                       for c in r] for r in rows])
    return out.getvalue().encode()
