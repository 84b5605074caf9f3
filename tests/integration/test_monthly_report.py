"""The monthly progress report for district ar_d1, May 2026, against values computed by hand."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from bson import json_util
from openpyxl import load_workbook

from server.auth import Grant, Role, StaffUser
from server.clock import ManualClock
from server.disclosures import Kind, Publisher
from server.registry import AreaLevel
from tests.apiclient import Api
from tests.voting_api.helpers import ballot_body
from tests.world import build_world

CST_10AM = 2  # 10:00 in Beijing is 02:00 UTC


def at(month: int, day: int) -> datetime:
    return datetime(2026, month, day, CST_10AM, 0, tzinfo=UTC)


INCOME = {"income_lines": [{"item": "电梯广告", "category": "advertising", "amount_fen": 120000}],
          "cost_lines": [], "total_income_fen": 120000, "total_cost_fen": 0,
          "balance_fen": 120000, "carried_over_fen": 0, "closing_balance_fen": 120000}


class May:
    """Builds the month; every line says what it contributes to which row."""

    def __init__(self, api: Api, clock: ManualClock) -> None:
        self.api, self.clock = api, clock
        self.s = api.services
        self.tokens: dict[str, str] = {}

    async def owner(self, n: int, community_offset: int) -> str:
        """Log in again at the current time (WeChat's text check wants a recent openid)."""
        openid = f"o{community_offset + n}"
        if openid not in self.tokens:
            self.tokens[openid] = await self.api.mp_owner(openid, f"139{community_offset + n:08d}")
        else:
            self.tokens[openid] = await self.api.mp_login(openid)
        return self.tokens[openid]

    async def complaint(self, when: datetime, community: str, offset: int, category: str,
                        respond: datetime | None = None, resolve: datetime | None = None) -> str:
        self.clock.set(when)
        r = await self.api.post(f"/api/mp/v1/communities/{community}/complaints",
                                await self.owner(1, offset),
                                json={"category": category, "text": "请尽快处理这个问题"})
        assert r.status_code == 201, r.text
        cid = str(r.json()["id"])
        company = (await self.s.registry.community(community)).company_id
        staff = await self.api.staff(f"p_{company}", [Grant(Role.PROPERTY, company_id=company)])
        for step, moment in (("response", respond), ("resolution", resolve)):
            if moment is not None:
                self.clock.set(moment)
                r = await self.api.post(f"/api/admin/v1/complaints/{cid}/{step}", staff,
                                        json={"note": "已处理"})
                assert r.status_code == 200, r.text
        return cid

    async def disclose(self, when: datetime, community: str, publisher: Publisher, kind: Kind,
                       period: str = "") -> None:
        self.clock.set(when)
        c = await self.s.registry.community(community)
        staff = StaffUser("st_t", "t", "t", (Grant(Role.PLATFORM_ADMIN),))
        content = INCOME if kind is Kind.COMMON_INCOME else {"text": "公开内容"}
        await self.s.duties.disclosures.publish(staff, c, publisher, kind, period, content, [],
                                                None, "")

    async def ballot(self, when: datetime, community: str, publish: bool = True) -> None:
        self.clock.set(when)
        c = await self.s.registry.community(community)
        doc = await self.s.ballots.create(c, "st_t", ballot_body(self.clock))
        if publish:
            await self.s.ballots.publish(doc["_id"], "st_t")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(at(4, 10))


async def build_may(api: Api, clock: ManualClock) -> None:
    m = May(api, clock)
    reg = m.s.registry
    await build_world(m.s)                                  # Apr 10: cm_a, cm_b (ar_s1), cm_c (d2)
    await reg.create_area("甲社区", AreaLevel.SHEQU, "ar_s1", "ar_q1")       # row 2
    await m.ballot(at(4, 12), "cm_b")                                       # row 38 (earlier)
    await m.disclose(at(4, 10), "cm_a", Publisher.PROPERTY, Kind.SERVICE_STANDARDS)
    await m.disclose(at(4, 10), "cm_a", Publisher.PROPERTY, Kind.COMPLAINT_CHANNELS)
    await m.disclose(at(4, 10), "cm_a", Publisher.PROPERTY, Kind.COMMON_INCOME, "2026Q1")
    await m.disclose(at(4, 11), "cm_b", Publisher.PROPERTY, Kind.SERVICE_STANDARDS)
    await m.disclose(at(4, 11), "cm_b", Publisher.PROPERTY, Kind.COMPLAINT_CHANNELS)
    await m.disclose(at(4, 11), "cm_b", Publisher.COMMITTEE, Kind.SERVICE_STANDARDS)
    await m.disclose(at(4, 11), "cm_b", Publisher.COMMITTEE, Kind.COMPLAINT_CHANNELS)
    await m.disclose(at(4, 11), "cm_a", Publisher.COMMITTEE, Kind.SERVICE_STANDARDS)
    for cid in ("cm_a", "cm_b"):                                            # row 54: 2 of 3
        await m.s.duties.ratings.ensure_period(await reg.community(cid), "2026Q1")
    await m.complaint(at(4, 20), "cm_a", 100, "ebike_upstairs", at(4, 20), at(4, 21))  # c1
    clock.set(at(5, 2))
    await reg.create_community("丁小区", "ar_s1", community_id="cm_d")       # no company/committee
    await m.disclose(at(5, 3), "cm_b", Publisher.COMMITTEE, Kind.COMMON_INCOME, "2026Q1")  # late
    await m.ballot(at(5, 5), "cm_a")                                        # row 38 (this month)
    await m.ballot(at(5, 5), "cm_a", publish=False)                         # a draft: not counted
    await m.ballot(at(5, 5), "cm_c")                                        # other district
    c2 = await m.complaint(at(5, 5), "cm_a", 100, "service", at(5, 5))      # c2, resolved in June
    await m.complaint(at(5, 10), "cm_b", 200, "illegal_construction")       # c3, untouched
    await m.complaint(at(5, 20), "cm_b", 200, "parking", at(5, 20), at(5, 21))  # c4
    await m.complaint(at(5, 6), "cm_c", 300, "service", at(5, 6), at(5, 6))     # other district
    clock.set(at(5, 10))
    admin = StaffUser("st_t", "t", "t", (Grant(Role.PLATFORM_ADMIN),))
    await m.s.duties.credit.publish(admin, await reg.area("ar_d1"), "2026Q1")  # row 19
    # June: none of this counts for May.
    clock.set(at(6, 1))
    await reg.create_area("丙街道", AreaLevel.STREET, "ar_d1", "ar_s3")
    await reg.create_community("戊小区", "ar_s1", "", True, community_id="cm_e")
    await m.complaint(at(6, 1), "cm_a", 100, "ebike_upstairs")
    await m.disclose(at(6, 1), "cm_b", Publisher.PROPERTY, Kind.COMMON_INCOME, "2026Q1")
    staff = await api.staff("p_a2", [Grant(Role.PROPERTY,
                                           company_id=(await reg.community("cm_a")).company_id)])
    r = await api.post(f"/api/admin/v1/complaints/{c2}/resolution", staff, json={"note": "好了"})
    assert r.status_code == 200, r.text
    clock.set(at(6, 2))


EXPECTED: dict[int, tuple[Any, str]] = {
    1: (1, "1"),
    2: (1, "1"),
    3: (3, "3"),
    4: (2, "2（占住宅小区 66.67%）"),
    12: (2, "2"),
    19: (1, "是：2026Q1 信用评价结果和红黑榜已公布"),
    20: (2, "2（占住宅小区 66.67%）"),
    22: (1, "1"),
    33: (4, "4（本月 3）"),
    34: ({"responded": 3, "completed": 2}, "响应 3 件，办结 2 件（响应率 75.00%，办结率 50.00%）"),
    36: (1, "1（共 2 个有物业服务企业的小区）"),
    37: (1, "1（共 2 个有业委会的小区）"),
    38: ({"ballots": 2, "communities": 2, "this_month": 1},
         "是：已建成平台，2 个小区累计电子表决 2 项（本月 1 项）"),
    43: (2, "2"),
    44: (3, "3"),
    45: (2, "2（销号率 66.67%）"),
    54: (2, "否：2026Q1 评价覆盖 2/3 个小区"),
}


async def test_the_district_report_matches_hand_computed_values_row_by_row(
        api: Api, clock: ManualClock) -> None:
    await build_may(api, clock)
    district = await api.staff("d1", [Grant(Role.OFFICIAL, area_id="ar_d1")])
    r = await api.get("/api/admin/v1/areas/ar_d1/monthly-reports/2026-05", district)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["from"] == "2026-04-30T16:00:00.000Z" and report["to"] == "2026-05-31T16:00:00.000Z"
    rows = {row["no"]: row for row in report["rows"]}
    assert sorted(rows) == list(range(1, 55))
    for no in range(1, 55):
        row = rows[no]
        if no in EXPECTED:
            assert row["auto"], no
            assert (row["value"], row["progress"]) == EXPECTED[no], no
            assert row["sources"], no
        else:
            assert (row["auto"], row["value"], row["progress"]) == (False, None, ""), no
    assert rows[4]["note"] == "2021 年达到50%以上"  # the plan's own remark stays
    assert rows[31]["material"] == "提供会议记录或纪要"

    # Every single-query figure is reproduced by running its published query as printed.
    db = api.services.store.db
    for row in report["rows"]:
        if row["auto"] and len(row["sources"]) == 1 and isinstance(row["value"], int):
            q = row["sources"][0]
            where = json_util.loads(json.dumps(q["filter"]))
            got = (await db[q["collection"]].count_documents(where) if q["op"] == "count"
                   else len(await db[q["collection"]].distinct(q["field"], where)))
            assert got == row["value"], row["no"]


async def test_the_city_report_and_the_xlsx_laid_out_like_the_plan(
        api: Api, clock: ManualClock) -> None:
    await build_may(api, clock)
    city = await api.staff("city", [Grant(Role.OFFICIAL, area_id="ar_city")])
    r = await api.get("/api/admin/v1/areas/ar_city/monthly-reports/2026-05", city)
    rows = {row["no"]: row for row in r.json()["rows"]}
    assert rows[3]["value"] == 4 and rows[19]["progress"] == "1/2 个区（市）已公布 2026Q1 红黑榜"
    assert rows[33]["value"] == 5  # plus the one in cm_c

    r = await api.get("/api/admin/v1/areas/ar_d1/monthly-reports/2026-05/xlsx", city)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/vnd.openxmlformats")
    book = load_workbook(io.BytesIO(r.content))
    sheet = book["推进情况表"]
    assert sheet["A2"].value == "枣庄市物业服务质量提升年活动推进情况表"
    assert sheet["A3"].value.startswith("属地：甲区")
    assert [c.value for c in sheet[4]] == ["序号", "工作任务", "工作要求", "工作进展情况",
                                          "纪实材料", "备注"]
    assert sheet["A5"].value == 1 and sheet["C5"].value == "城市街道（镇）数量"
    assert sheet["B5"].value == "业主委员会\n“扩面行动”" and "B5:B15" in sheet.merged_cells
    assert sheet["A58"].value == 54 and "B55:B58" in sheet.merged_cells
    assert sheet["D37"].value == EXPECTED[33][1]                          # row 33
    assert sheet["D9"].value is None and sheet["F8"].value == "2021 年达到50%以上"
    assert sheet["E37"].hyperlink.location.startswith("'数据来源'!A")
    sources = book["数据来源"]
    assert sources["A1"].value == "序号"
    assert {r[0].value for r in sources.iter_rows(min_row=2)} == set(EXPECTED)


async def test_manual_rows_are_saved_and_automatic_rows_refuse_manual_progress(
        api: Api, clock: ManualClock) -> None:
    await build_world(api.services)
    clock.set(at(6, 2))
    district = await api.staff("d1", [Grant(Role.OFFICIAL, area_id="ar_d1")])
    url = "/api/admin/v1/areas/ar_d1/monthly-reports/2026-05"
    r = await api.call("PUT", url + "/manual", district,
                       json={"rows": {"5": {"progress": "新成立 2 个", "material": "备案表"},
                                      "3": {"material": "名册"}}})
    assert r.status_code == 200, r.text
    rows = {row["no"]: row for row in r.json()["rows"]}
    assert rows[5]["progress"] == "新成立 2 个" and rows[5]["material"] == "备案表"
    assert rows[3]["material"] == "名册" and rows[3]["auto"]
    r = await api.call("PUT", url + "/manual", district, json={"rows": {"3": {"progress": "9"}}})
    assert r.status_code == 409 and r.json()["error"]["code"] == "row_automatic"
    street = await api.staff("s1", [Grant(Role.OFFICIAL, area_id="ar_s1")])
    assert (await api.get(url, street)).status_code == 403
    r = await api.get("/api/admin/v1/areas/ar_s1/monthly-reports/2026-05", street)
    assert r.status_code == 400 and r.json()["error"]["code"] == "report_level"
    r = await api.get("/api/admin/v1/areas/ar_d1/monthly-reports/2026-07", district)
    assert r.status_code == 400 and r.json()["error"]["code"] == "month_not_started"
