"""Roster import: every bad row reported, nothing imported on error, re-import changes nothing."""

from __future__ import annotations

import base64
import io

from openpyxl import Workbook

from server.auth import Grant, Role
from server.demo import HEADER, RosterLine, make_id_number, roster_csv
from server.roster import parse_area_centi_m2
from tests.apiclient import Api
from tests.world import build_world


def thousand_rows() -> list[RosterLine]:
    rows = []
    for i in range(1000):
        building, floor, door = f"{i // 100 + 1}号楼", (i % 100) // 4 + 1, i % 4 + 1
        rows.append(RosterLine(building, f"{floor}0{door}", f"{70 + i % 50}.{i % 100:02d}",
                               f"业主{i}", make_id_number(i), f"137{i:08d}"))
    return rows


async def _import(api: Api, token: str, content: bytes, fmt: str = "csv", **extra: object):  # type: ignore[no-untyped-def]
    return await api.post("/api/admin/v1/communities/cm_a/roster", token,
                          json={"format": fmt, "content_base64": base64.b64encode(content).decode(),
                                **extra})


async def test_thousand_rows_with_three_bad_rows_reports_exactly_those_and_imports_nothing(api: Api) -> None:
    await build_world(api.services)
    await api.services.store.db["units"].delete_many({"community_id": "cm_a"})
    token = await api.staff("clerk", [Grant(Role.COMMITTEE, community_id="cm_a")])
    rows = thousand_rows()
    good = list(rows)
    rows[9] = RosterLine(**{**rows[9].__dict__, "area": "八十"})                   # line 11
    rows[499] = RosterLine(**{**rows[499].__dict__, "id_number": "370481198001010000"})  # line 501
    rows[997] = RosterLine(**{**rows[997].__dict__, "area_source": "估计"})         # line 999
    r = await _import(api, token, roster_csv(rows))
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "roster_invalid"
    assert error["fields"] == {
        "rows[11].area_m2": "面积应为最多两位小数的正数（平方米）",
        "rows[501].id_number": "居民身份证号码无效（18 位，校验位不符）",
        "rows[999].area_source": "应为 registry/survey/contract（登记/实测/合同）",
    }
    assert await api.services.store.db["units"].count_documents({"community_id": "cm_a"}) == 0

    r = await _import(api, token, roster_csv(good))
    assert r.status_code == 200, r.text
    assert r.json()["units"] == {"created": 1000, "updated": 0, "unchanged": 0}
    assert await api.services.store.db["units"].count_documents({"community_id": "cm_a"}) == 1000

    r = await _import(api, token, roster_csv(good))
    assert r.json()["units"] == {"created": 0, "updated": 0, "unchanged": 1000}
    assert r.json()["owners"] == {"created": 0, "updated": 0, "unchanged": 1000}


async def test_good_rows_import_when_asked_and_bad_ones_are_skipped(api: Api) -> None:
    await build_world(api.services)
    token = await api.staff("clerk", [Grant(Role.COMMITTEE, community_id="cm_a")])
    rows = [RosterLine("9号楼", "101", "90.00", "甲", make_id_number(501)),
            RosterLine("9号楼", "102", "-3", "乙", make_id_number(502))]
    r = await _import(api, token, roster_csv(rows), import_valid_rows=True)
    assert r.status_code == 200
    assert r.json()["skipped_lines"] == [3] and r.json()["units"]["created"] == 1


async def test_xlsx_roster_imports_like_csv(api: Api) -> None:
    await build_world(api.services)
    token = await api.staff("clerk", [Grant(Role.COMMITTEE, community_id="cm_a")])
    book = Workbook()
    sheet = book.active
    sheet.append(HEADER)
    sheet.append(RosterLine("8号楼", "201", "100.25", "丙", make_id_number(601),
                            "13911112222").cells())
    buf = io.BytesIO()
    book.save(buf)
    r = await _import(api, token, buf.getvalue(), "xlsx")
    assert r.status_code == 200, r.text
    unit = await api.services.store.db["units"].find_one({"building_name": "8号楼"})
    assert unit is not None and unit["area_centi_m2"] == 10025 and unit["area_source"] == "registry"


async def test_co_owners_need_exactly_one_designated_voter(api: Api) -> None:
    await build_world(api.services)
    token = await api.staff("clerk", [Grant(Role.COMMITTEE, community_id="cm_a")])
    rows = [RosterLine("9号楼", "101", "90.00", "甲", make_id_number(701)),
            RosterLine("9号楼", "101", "90.00", "乙", make_id_number(702))]
    r = await _import(api, token, roster_csv(rows))
    assert r.json()["error"]["fields"] == {"rows[3].voter": "共有房屋须且仅须指定一名表决人"}


async def test_id_numbers_are_stored_only_as_keyed_hash_and_last_four(api: Api) -> None:
    await build_world(api.services)
    owner = await api.services.store.db["owners"].find_one({"community_id": "cm_a"})
    assert owner is not None
    assert make_id_number(101) not in str(owner)
    assert owner["id_last4"] == make_id_number(101)[-4:]
    assert "139" not in owner["phone_enc"]


def test_area_is_parsed_exactly_to_hundredths() -> None:
    assert parse_area_centi_m2("89.5") == 8950
    assert parse_area_centi_m2("89.05") == 8905
    assert parse_area_centi_m2("120") == 12000
