"""Roster import from CSV or XLSX: validate every row first, then upsert idempotently."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from server.clock import Clock
from server.errors import InvalidInput
from server.fieldcrypto import FieldCrypto, normalise_id_number, normalise_phone
from server.registry import AreaSource, OwnerKind, UnitKind, stable_id

# Column key → accepted headers (English key or the Chinese header of the template).
COLUMNS: dict[str, tuple[str, ...]] = {
    "building": ("building", "楼栋"),
    "unit": ("unit", "房号"),
    "area_m2": ("area_m2", "建筑面积"),
    "area_source": ("area_source", "面积来源"),
    "unit_kind": ("unit_kind", "房屋类型"),
    "owner_name": ("owner_name", "业主姓名"),
    "owner_kind": ("owner_kind", "业主类型"),
    "id_number": ("id_number", "证件号码"),
    "phone": ("phone", "手机号"),
    "voter": ("voter", "表决人"),
    "developer_held": ("developer_held", "开发商持有"),
}
REQUIRED = ("building", "unit", "area_m2", "area_source", "unit_kind", "owner_name", "owner_kind",
            "id_number")
MAX_ROWS = 20000

_AREA_SOURCES = {"registry": AreaSource.REGISTRY, "登记": AreaSource.REGISTRY,
                 "survey": AreaSource.SURVEY, "实测": AreaSource.SURVEY,
                 "contract": AreaSource.CONTRACT, "合同": AreaSource.CONTRACT}
_UNIT_KINDS = {"residential": UnitKind.RESIDENTIAL, "住宅": UnitKind.RESIDENTIAL,
               "commercial": UnitKind.COMMERCIAL, "商业": UnitKind.COMMERCIAL,
               "parking": UnitKind.PARKING, "车位": UnitKind.PARKING,
               "storage": UnitKind.STORAGE, "储藏室": UnitKind.STORAGE}
_OWNER_KINDS = {"person": OwnerKind.PERSON, "个人": OwnerKind.PERSON,
                "org": OwnerKind.ORG, "单位": OwnerKind.ORG}
_YES = {"y", "yes", "1", "true", "是"}
_NO = {"", "n", "no", "0", "false", "否"}
_AREA = re.compile(r"^\d{1,6}(\.\d{1,2})?$")
_PERSON_ID = re.compile(r"^\d{17}[\dX]$")
_ORG_ID = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$")
_PHONE = re.compile(r"^1\d{10}$")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_checksum_ok(number: str) -> bool:
    """GB 11643-1999 check digit of an 18-character resident ID number."""
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS, strict=True))
    return "10X98765432"[total % 11] == number[17]


def parse_area_centi_m2(text: str) -> int:
    """'89.5' → 8950 (hundredths of a square metre); exact, no float ever involved."""
    whole, _, frac = text.partition(".")
    return int(whole) * 100 + int((frac + "00")[:2])


@dataclass
class RowError:
    """One problem: file line (header is line 1), column key, reason."""

    line: int
    column: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "column": self.column, "reason": self.reason}


@dataclass
class Row:
    """One valid roster row, normalised."""

    line: int
    building: str
    unit: str
    area_centi_m2: int
    area_source: AreaSource
    unit_kind: UnitKind
    owner_name: str
    owner_kind: OwnerKind
    id_number: str
    phone: str
    voter: bool
    developer_held: bool


@dataclass
class Report:
    """What an import found and did."""

    rows: int = 0
    errors: list[RowError] = field(default_factory=list)
    skipped_lines: list[int] = field(default_factory=list)
    units: dict[str, int] = field(default_factory=lambda: {"created": 0, "updated": 0, "unchanged": 0})
    owners: dict[str, int] = field(default_factory=lambda: {"created": 0, "updated": 0, "unchanged": 0})
    imported: bool = False
    file_sha256: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "errors": [e.to_json() for e in self.errors],
                "skipped_lines": self.skipped_lines, "units": self.units, "owners": self.owners,
                "imported": self.imported, "file_sha256": self.file_sha256}


def read_table(content: bytes, file_format: str) -> list[tuple[int, dict[str, str]]]:
    """(line, {column key: text}) for every non-empty data row; raises on a bad header."""
    if file_format == "xlsx":
        raw_rows = _xlsx_rows(content)
    else:
        raw_rows = list(csv.reader(io.StringIO(_decode(content))))
    if not raw_rows:
        raise InvalidInput("文件为空", code="roster_empty", fields={"file": "文件为空"})
    header = [h.strip() for h in raw_rows[0]]
    index: dict[str, int] = {}
    for key, names in COLUMNS.items():
        for i, h in enumerate(header):
            if h in names:
                index[key] = i
    missing = [k for k in REQUIRED if k not in index]
    if missing:
        raise InvalidInput("表头缺少必需的列", code="roster_header",
                           fields={f"header.{k}": "缺少该列" for k in missing})
    if len(raw_rows) - 1 > MAX_ROWS:
        raise InvalidInput(f"单次最多导入 {MAX_ROWS} 行", code="roster_too_large",
                           fields={"file": f"超过 {MAX_ROWS} 行"})
    out = []
    for line, cells in enumerate(raw_rows[1:], start=2):
        if not any(c.strip() for c in cells):
            continue
        out.append((line, {k: (cells[i].strip() if i < len(cells) else "") for k, i in index.items()}))
    return out


def _decode(content: bytes) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return content.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise InvalidInput("文件编码无法识别（请使用 UTF-8）", code="roster_encoding",
                       fields={"file": "编码无法识别"})


def _xlsx_rows(content: bytes) -> list[list[str]]:
    from openpyxl import load_workbook  # imported lazily: only imports need it

    try:
        book = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception:  # openpyxl raises many types for a non-xlsx file
        raise InvalidInput("不是有效的 XLSX 文件", code="roster_not_xlsx",
                           fields={"file": "不是有效的 XLSX 文件"}) from None
    sheet = book.worksheets[0]
    rows = [["" if v is None else str(v) for v in row] for row in sheet.iter_rows(values_only=True)]
    book.close()
    return rows


def validate_rows(table: list[tuple[int, dict[str, str]]]) -> tuple[list[Row], list[RowError]]:
    """Check each row, then the rows of each unit together."""
    rows: list[Row] = []
    errors: list[RowError] = []
    for line, cells in table:
        row, row_errors = _validate_row(line, cells)
        errors.extend(row_errors)
        if row is not None:
            rows.append(row)
    by_unit: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in rows:
        by_unit[(row.building, row.unit)].append(row)
    names_by_id: dict[str, tuple[str, int]] = {}
    for row in rows:
        first = names_by_id.setdefault(row.id_number, (row.owner_name, row.line))
        if first[0] != row.owner_name:
            errors.append(RowError(row.line, "owner_name",
                                   f"同一证件号码在第 {first[1]} 行的姓名为「{first[0]}」"))
    for unit_rows in by_unit.values():
        first = unit_rows[0]
        seen: set[str] = set()
        for row in unit_rows:
            for attr in ("area_centi_m2", "area_source", "unit_kind", "developer_held"):
                if getattr(row, attr) != getattr(first, attr):
                    errors.append(RowError(row.line, _column_of(attr),
                                           f"与第 {first.line} 行同一房屋的值不一致"))
            if row.id_number in seen:
                errors.append(RowError(row.line, "id_number", "同一房屋重复登记该业主"))
            seen.add(row.id_number)
        voters = [r for r in unit_rows if r.voter]
        if len(unit_rows) > 1 and len(voters) != 1:
            errors.append(RowError(unit_rows[-1].line, "voter",
                                   "共有房屋须且仅须指定一名表决人"))
    errors.sort(key=lambda e: (e.line, e.column))
    return rows, errors


def _column_of(attr: str) -> str:
    return {"area_centi_m2": "area_m2"}.get(attr, attr)


def _validate_row(line: int, c: dict[str, str]) -> tuple[Row | None, list[RowError]]:
    errs: list[RowError] = []

    def bad(column: str, reason: str) -> None:
        errs.append(RowError(line, column, reason))

    for key in REQUIRED:
        if not c.get(key):
            bad(key, "必填")
    if errs:
        return None, errs
    if len(c["building"]) > 40:
        bad("building", "楼栋名称过长")
    if len(c["unit"]) > 40:
        bad("unit", "房号过长")
    area = 0
    if not _AREA.match(c["area_m2"]):
        bad("area_m2", "面积应为最多两位小数的正数（平方米）")
    else:
        area = parse_area_centi_m2(c["area_m2"])
        if area <= 0:
            bad("area_m2", "面积必须大于 0")
    source = _AREA_SOURCES.get(c["area_source"].lower())
    if source is None:
        bad("area_source", "应为 registry/survey/contract（登记/实测/合同）")
    unit_kind = _UNIT_KINDS.get(c["unit_kind"].lower())
    if unit_kind is None:
        bad("unit_kind", "应为 residential/commercial/parking/storage（住宅/商业/车位/储藏室）")
    owner_kind = _OWNER_KINDS.get(c["owner_kind"].lower())
    if owner_kind is None:
        bad("owner_kind", "应为 person/org（个人/单位）")
    if len(c["owner_name"]) > 60:
        bad("owner_name", "姓名过长")
    id_number = normalise_id_number(c["id_number"])
    if owner_kind is OwnerKind.PERSON and not (_PERSON_ID.match(id_number) and id_checksum_ok(id_number)):
        bad("id_number", "居民身份证号码无效（18 位，校验位不符）")
    if owner_kind is OwnerKind.ORG and not _ORG_ID.match(id_number):
        bad("id_number", "统一社会信用代码无效")
    phone = normalise_phone(c.get("phone", "")) if c.get("phone") else ""
    if c.get("phone") and not _PHONE.match(phone):
        bad("phone", "手机号应为 11 位数字")
    flags = {}
    for key in ("voter", "developer_held"):
        value = c.get(key, "").lower()
        if value not in _YES and value not in _NO:
            bad(key, "应为 是/否")
        flags[key] = value in _YES
    if flags["developer_held"] and owner_kind is OwnerKind.PERSON:
        bad("developer_held", "开发商持有的房屋业主应为单位")
    if errs:
        return None, errs
    assert source and unit_kind and owner_kind
    return Row(line, c["building"], c["unit"], area, source, unit_kind, c["owner_name"],
               owner_kind, id_number, phone, flags["voter"], flags["developer_held"]), []


class RosterImporter:
    """Applies a validated roster to one community; a second identical import changes nothing."""

    def __init__(self, db: AsyncDatabase, crypto: FieldCrypto, clock: Clock) -> None:
        self.db = db
        self.crypto = crypto
        self.clock = clock

    async def run(self, community_id: str, content: bytes, file_format: str,
                  import_valid_rows: bool = False) -> Report:
        loop = asyncio.get_running_loop()
        # Parsing (openpyxl especially) is CPU work: keep it off the IOLoop.
        table = await loop.run_in_executor(None, read_table, content, file_format)
        rows, errors = await loop.run_in_executor(None, validate_rows, table)
        report = Report(rows=len(table), errors=errors,
                        file_sha256=hashlib.sha256(content).hexdigest())
        if errors and not import_valid_rows:
            return report
        bad_lines = {e.line for e in errors}
        bad_units = {(r.building, r.unit) for r in rows if r.line in bad_lines}
        good = [r for r in rows if (r.building, r.unit) not in bad_units]
        report.skipped_lines = sorted({line for line, _ in table} - {r.line for r in good})
        await self._apply(community_id, good, report)
        report.imported = True
        return report

    async def _apply(self, community_id: str, rows: list[Row], report: Report) -> None:
        now = self.clock.now()
        buildings = {r.building for r in rows}
        for name in sorted(buildings):
            await self.db["buildings"].update_one(
                {"_id": stable_id("b", community_id, name)},
                {"$setOnInsert": {"community_id": community_id, "name": name, "created_at": now}},
                upsert=True)
        owners: dict[str, dict[str, Any]] = {}
        for r in rows:
            id_hash = self.crypto.keyed_hash(r.id_number, "id")
            owners[r.id_number] = {
                "_id": stable_id("o", community_id, id_hash), "community_id": community_id,
                "kind": r.owner_kind.value, "name": r.owner_name, "id_hash": id_hash,
                "id_last4": r.id_number[-4:], "is_developer": r.developer_held,
                "phone_hash": self.crypto.keyed_hash(r.phone, "phone") if r.phone else "",
            }
        existing = {d["_id"]: d for d in await self.db["owners"].find(
            {"community_id": community_id}).to_list(None)}
        ops = []
        for r in rows:
            doc = owners.pop(r.id_number, None)
            if doc is None:
                continue
            old = existing.get(doc["_id"])
            if old is not None and all(old.get(k) == v for k, v in doc.items()):
                report.owners["unchanged"] += 1
                continue
            report.owners["updated" if old else "created"] += 1
            doc["phone_enc"] = self.crypto.encrypt(r.phone, "phone") if r.phone else ""
            ops.append((doc, old is not None))
        await _write(self.db["owners"], ops, now)
        await self._apply_units(community_id, rows, report, now)

    async def _apply_units(self, community_id: str, rows: list[Row], report: Report,
                           now: Any) -> None:
        by_unit: dict[tuple[str, str], list[Row]] = defaultdict(list)
        for r in rows:
            by_unit[(r.building, r.unit)].append(r)
        existing = {d["_id"]: d for d in await self.db["units"].find(
            {"community_id": community_id}).to_list(None)}
        ops = []
        for (building, number), unit_rows in by_unit.items():
            owner_ids = [stable_id("o", community_id, self.crypto.keyed_hash(r.id_number, "id"))
                         for r in unit_rows]
            voter_index = next((i for i, r in enumerate(unit_rows) if r.voter), 0)
            first = unit_rows[0]
            doc = {
                "_id": stable_id("u", community_id, building, number),
                "community_id": community_id, "building_id": stable_id("b", community_id, building),
                "building_name": building, "number": number,
                "area_centi_m2": first.area_centi_m2, "area_source": first.area_source.value,
                "kind": first.unit_kind.value, "owner_ids": owner_ids,
                "voter_owner_id": owner_ids[voter_index], "developer_held": first.developer_held,
            }
            old = existing.get(doc["_id"])
            if old is not None and all(old.get(k) == v for k, v in doc.items()):
                report.units["unchanged"] += 1
                continue
            report.units["updated" if old else "created"] += 1
            if old is not None and old["owner_ids"] != doc["owner_ids"]:
                doc["owners_changed_at"] = now  # a transfer: voting needs to know when
            ops.append((doc, old is not None))
        await _write(self.db["units"], ops, now)


async def _write(collection: Any, docs: list[tuple[dict[str, Any], bool]], now: Any) -> None:
    """New documents in one insert_many (fast on every store), changed ones as guarded upserts."""
    new = [{**d, "created_at": now, "updated_at": now} for d, exists in docs if not exists]
    changed = [d for d, exists in docs if exists]
    if new:
        try:
            await collection.insert_many(new, ordered=False)
        except BulkWriteError as exc:
            # Another import inserted some of them meanwhile: update those instead.
            dup = {e["op"]["_id"] for e in exc.details.get("writeErrors", []) if e.get("code") == 11000}
            changed += [d for d in new if d["_id"] in dup]
    ops = [UpdateOne({"_id": d["_id"]},
                     {"$set": {**{k: v for k, v in d.items() if k not in ("_id", "created_at")},
                               "updated_at": now},
                      "$setOnInsert": {"created_at": now}}, upsert=True) for d in changed]
    if ops:
        await collection.bulk_write(ops, ordered=False)
