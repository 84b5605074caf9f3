"""The monthly progress report (推进情况表): the plan's 54 rows, filled from the platform's data.

For a district (or the city) and a month, every row the platform can answer is computed; the
others stay blank for the district to fill in (and may be saved with `save_manual`). Every
figure carries the queries that produced it — collection, operation and filter in MongoDB
Extended JSON — and the value is computed by running exactly those descriptions (`_run`), so
the published query and the figure cannot drift apart. An official can paste a query into
mongosh and get the same number (docs/monthly-report.md).

All figures are "as of the end of the month" (Beijing time): things created before the month
ended; cumulative rows count from 2021-01-01, the start of the campaign (rows 33–34, 43–45).
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from server.audit import actor_of
from server.auth import Principal
from server.clock import Clock, as_utc, iso
from server.disclosures import Disclosures
from server.errors import Conflict, InvalidInput
from server.periods import CST, last_ended_quarter
from server.registry import AreaLevel, Registry

CAMPAIGN_START = datetime(2021, 1, 1, tzinfo=CST)
# Plan item 20's hazards as the complaint categories that record them: 飞线充电 (e-bikes
# upstairs), 违章搭建, 公用设施设备, 占堵消防通道 (parking). No separate inspection ledger exists
# yet; if one is added, rows 43–45 should count it instead.
SAFETY_CATEGORIES = ("ebike_upstairs", "illegal_construction", "common_facilities", "parking")
MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
CELL_MAX = 32000

GROUPS = (
    (1, 11, "业主委员会\n“扩面行动”"), (12, 19, "物业服务企业\n“先锋行动”"),
    (20, 29, "物业服务覆盖\n“提质行动”"), (30, 35, "群众聚焦问题\n“暖心行动”"),
    (36, 38, "物业服务管理\n“阳光行动”"), (39, 42, "物业行业发展\n“助企行动”"),
    (43, 45, "物业安全整治\n“平安行动”"), (46, 48, "建立健全党组织领导物业服务管理的机制"),
    (49, 50, "建立完善物业服务管理综合协调机制"), (51, 54, "建立完善物业服务管理工作督导考核机制"),
)
# 序号 → (工作要求, 纪实材料, 备注) as printed in the plan's attachment.
ITEMS: dict[int, tuple[str, str, str]] = {
    1: ("城市街道（镇）数量", "", ""), 2: ("城市社区数量", "", ""), 3: ("住宅小区数量", "", ""),
    4: ("已备案业委会数量", "", "2021 年达到50%以上"),
    5: ("2021 年以来成立的业委会数量", "", ""),
    6: ("委员中党员比例不低于 60%的业委会数量", "", ""),
    7: ("已成立党组织（包括单独组建、联合组建等形式）的业主委员会数量", "", "2021 年达到50%以上"),
    8: ("将党组织设立情况纳入备案管理内容的业委会数量", "", ""),
    9: ("建立并落实镇街党（工）委和住房城乡建设、政法、市场监管、信访等部门参加的联审把关机制的镇街数量", "", ""),
    10: ("区（市）建立业委会向社区党组织定期报告制度", "", "2021 年"),
    11: ("建立街道社区党组织领导下的业委会纠错和退出机制", "", "2021 年"),
    12: ("已开展物业服务活动的物业企业数量", "", ""),
    13: ("已成立党组织（包括单独组建、联合组建等形式）的物业企业数量", "", "2021 年达到70%以上"),
    14: ("单独成立党组织的物业企业数量", "", ""), 15: ("已选派党建指导员的物业企业数量", "", ""),
    16: ("物业企业（项目）负责人到社区报到的住宅小区数量", "", ""),
    17: ("物业企业党组织认领社区党建服务项目数量", "", ""),
    18: ("培树“红色物业”示范项目数量", "", ""),
    19: ("开展物业服务企业信用评价，每季度公布一次辖区物业服务企业信用评价结果和红、黑榜企业名单", "", ""),
    20: ("已选聘专业化物业服务的小区数量", "", "2021 年达到65%以上"),
    21: ("通过街道社区党组织领办公益性物业企业等方式提供托底物业服务的小区数量", "", ""),
    22: ("业主自管或无物业管理的小区数量", "", ""),
    23: ("已设立环境和物业管理委员会的社区数量", "", "2021 年全面设立"),
    24: ("制定实施社区托底物业服务标准", "", ""),
    25: ("区（市）是否设立专项资金，对街道社区推进老旧小区物业服务覆盖、引入专业化物业服务进行奖补", "", ""),
    26: ("年内已对辖区内物业企业及党组织负责人、业委会委员进行全覆盖培训的街道（镇）数量", "", "10月底前"),
    27: ("2021 年实施改造的老旧小区数量", "", ""),
    28: ("纳入改造的老旧小区成立业委会的数量", "", ""),
    29: ("纳入改造的老旧小区选聘专业化物业服务的数量", "", ""),
    30: ("建立物业服务“吹哨报到”机制的街道（镇）数量", "", ""),
    31: ("镇街党（工）委负责人召集物业管理联席会议次数", "提供会议记录或纪要", "原则上每月召开 1次"),
    32: ("将物业领域投诉咨询、矛盾调解等服务纳入社区党群服务站“一窗受理全科服务”（物业企业、业委会在社区党群服务中心设立办事窗口）的社区数量", "", ""),
    33: ("2021 年以来信访投诉“呼叫事项”件数", "", ""),
    34: ("“呼叫事项”响应和办结件数", "", ""),
    35: ("区（市）结合“我为群众办实事”实践活动，部署开展“大排查、大走访、大提升”活动", "", ""),
    36: ("物业服务企业规范落实“三公开”的住宅小区数量", "", ""),
    37: ("业主委员会规范落实“三公开”的住宅小区数量", "", ""),
    38: ("城市基层党建示范市（滕州）建成智慧物业综合管理平台、实现业主决策事项电子化表决", "", ""),
    39: ("落实减税降费政策的物业服务企业数量", "", ""),
    40: ("落实中小微物业企业吸纳特定就业人员职业培训补贴人数", "", ""),
    41: ("创建“齐鲁红色物业”省级示范企业、示范点数量", "", ""),
    42: ("开展居家社区养老试点的物业企业和小区数量", "", ""),
    43: ("开展安全隐患排查整治活动的住宅小区数量", "", ""),
    44: ("安全隐患排查整治问题条数", "", ""), 45: ("完成隐患问题整改销号条数", "", ""),
    46: ("区（市）物业行业党委建立定期会议制度", "", ""),
    47: ("区（市）物业行业党委建立联系镇街社区工作机制", "", ""),
    48: ("建立镇街党（工）委负责人每月牵头召开物业管理联席会议制度的镇街数量", "", ""),
    49: ("区（市）建立工作领导小组或联席会议等形式的综合协调推进机制", "", ""),
    50: ("建立并落实社区党组织领导下的居民委员会、业主委员会、物业服务企业、驻区单位等参加的议事协调机制的街道（镇）数量", "", ""),
    51: ("区（市）将物业管理工作作为对街道（镇）考核的重要内容", "", ""),
    52: ("区（市）将党建情况纳入物业服务合同备案要求", "", ""),
    53: ("镇街党（工）委将物业管理工作作为社区党组织书记“双述双评”重要内容", "", ""),
    54: ("区（市）每季度组织开展一次全覆盖的住宅小区物业服务质量考核评价", "", ""),
}


def group_of(no: int) -> str:
    return next(name for first, last, name in GROUPS if first <= no <= last)


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """'2026-05' → [2026-05-01 00:00, 2026-06-01 00:00) Beijing time, as aware datetimes."""
    if not re.match(MONTH_PATTERN, month):
        raise InvalidInput(fields={"month": "应为 2026-05 形式"})
    year, m = int(month[:4]), int(month[5:])
    start = datetime(year, m, 1, tzinfo=CST)
    end = datetime(year + m // 12, m % 12 + 1, 1, tzinfo=CST)
    return start, end


def ext_json(value: Any) -> Any:
    """MongoDB Extended JSON (relaxed): what mongosh accepts, so a query can be re-run as is."""
    if isinstance(value, datetime):
        return {"$date": iso(value)}
    if isinstance(value, dict):
        return {k: ext_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [ext_json(v) for v in value]
    return value


def percent(part: int, whole: int) -> str:
    if whole == 0:
        return "—"
    basis_points = (20000 * part + whole) // (2 * whole)
    return f"{basis_points // 100}.{basis_points % 100:02d}%"


@dataclass
class Query:
    """One reproducible query: `count` or `distinct` on a collection with a filter."""

    label: str
    collection: str
    op: str
    filter: dict[str, Any]
    field: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "collection": self.collection, "op": self.op,
                               "filter": ext_json(self.filter)}
        if self.field:
            out["field"] = self.field
        return out


@dataclass
class Row:
    """One line of the table; `auto` rows are computed, the rest are for manual entry."""

    no: int
    auto: bool = False
    value: Any = None
    display: str = ""
    sources: list[Query] = field(default_factory=list)
    rule: str = ""
    material: str = ""
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        item, material, remark = ITEMS[self.no]
        return {"no": self.no, "task": group_of(self.no).replace("\n", ""), "item": item,
                "auto": self.auto, "value": self.value, "progress": self.display,
                "material": self.material or material, "note": self.note or remark,
                "rule": self.rule, "sources": [q.to_json() for q in self.sources]}


class Reports:
    """Computes, stores the manual part of, and renders the monthly progress report."""

    def __init__(self, db: AsyncDatabase, clock: Clock, registry: Registry,
                 disclosures: Disclosures) -> None:
        self.db = db
        self.clock = clock
        self.registry = registry
        self.disclosures = disclosures
        self.manual = db["report_entries"]

    async def _run(self, q: Query) -> Any:
        coll = self.db[q.collection]
        if q.op == "count":
            return await coll.count_documents(q.filter)
        if q.op == "distinct":
            return sorted(v for v in await coll.distinct(q.field, q.filter) if v is not None)
        raise ValueError(q.op)

    async def monthly(self, area_id: str, month: str) -> dict[str, Any]:
        area = await self.registry.area(area_id)
        if area["level"] not in (AreaLevel.CITY, AreaLevel.DISTRICT):
            raise InvalidInput("月报按区（市）或全市生成", code="report_level",
                               fields={"area_id": "应为区（市）或市"})
        start, end = month_bounds(month)
        if start > self.clock.now():
            raise InvalidInput("该月份尚未开始", code="month_not_started",
                               fields={"month": "不能早于当前月份生成"})
        rows = {no: Row(no) for no in ITEMS}
        for row in await self._auto_rows(area, start, end):
            rows[row.no] = row
        manual = await self.manual.find_one({"_id": f"{area_id}:{month}"}) or {}
        for no, entry in manual.get("rows", {}).items():
            row = rows[int(no)]
            if not row.auto:
                row.display = entry.get("progress", "")
            row.material = entry.get("material", "")
            row.note = entry.get("note", "") or row.note
        return {"area": {"id": area["_id"], "name": area["name"], "level": area["level"]},
                "month": month, "from": iso(start), "to": iso(end),
                "generated_at": iso(self.clock.now()),
                "rows": [rows[no].to_json() for no in sorted(rows)]}

    async def save_manual(self, principal: Principal, area_id: str, month: str,
                          entries: dict[str, dict[str, str]]) -> dict[str, Any]:
        """Manual entries of the rows the platform cannot count (progress text, material, note)."""
        month_bounds(month)
        unknown = [no for no in entries if not no.isdigit() or int(no) not in ITEMS]
        if unknown:
            raise InvalidInput(fields={f"rows.{no}": "没有这一行" for no in unknown})
        auto = {r.no for r in await self._auto_rows(await self.registry.area(area_id),
                                                    *month_bounds(month))}
        clash = [no for no, e in entries.items() if int(no) in auto and "progress" in e]
        if clash:
            raise Conflict("自动统计的行不能手工填写进展情况", code="row_automatic",
                           fields={f"rows.{no}.progress": "该行由平台自动统计" for no in clash})
        key = f"{area_id}:{month}"
        update = {f"rows.{no}": entry for no, entry in entries.items()}
        try:
            await self.manual.update_one({"_id": key}, {"$set": {**update, "area_id": area_id,
                                                                 "month": month,
                                                                 "updated_at": self.clock.now(),
                                                                 "updated_by": actor_of(principal)}},
                                         upsert=True)
        except DuplicateKeyError:  # two first saves at once: the second now updates
            await self.manual.update_one({"_id": key}, {"$set": update})
        return await self.monthly(area_id, month)

    # -- the rows the platform can answer ------------------------------------------------------
    async def _auto_rows(self, area: dict[str, Any], start: datetime, end: datetime) -> list[Row]:
        a = area["_id"]
        before_end = {"$lt": end}
        communities = {"area_path": a, "created_at": before_end}
        quarter = last_ended_quarter(end - timedelta(milliseconds=1))
        out: list[Row] = []

        async def simple(no: int, q: Query, display: str = "{v}") -> int:
            value = await self._run(q)
            out.append(Row(no, True, value, display.format(v=value), [q]))
            return int(value)

        await simple(1, Query("街道（镇）", "areas", "count",
                              {"path": a, "level": "street", "created_at": before_end}))
        await simple(2, Query("社区", "areas", "count",
                              {"path": a, "level": "shequ", "created_at": before_end}))
        total = await simple(3, Query("住宅小区", "communities", "count", communities))
        q = Query("有业委会的小区", "communities", "count", {**communities, "has_committee": True})
        v = await self._run(q)
        out.append(Row(4, True, v, f"{v}（占住宅小区 {percent(v, total)}）", [q]))
        q = Query("服务本辖区小区的物业企业", "communities", "distinct",
                  {**communities, "company_id": {"$ne": ""}}, "company_id")
        companies = await self._run(q)
        out.append(Row(12, True, len(companies), str(len(companies)), [q],
                       "物业企业编号去重计数"))
        out.append(await self._credit_row(area, quarter, end))
        q = Query("已选聘物业服务企业的小区", "communities", "count",
                  {**communities, "company_id": {"$ne": ""}})
        served = await self._run(q)
        out.append(Row(20, True, served, f"{served}（占住宅小区 {percent(served, total)}）", [q]))
        await simple(22, Query("无物业服务企业的小区", "communities", "count",
                               {**communities, "company_id": ""}))
        out.extend(await self._complaint_rows(a, start, end))
        out.append(await self._disclosure_row(36, "property", a, communities, quarter, end))
        out.append(await self._disclosure_row(37, "committee", a, communities, quarter, end))
        out.append(await self._voting_row(a, communities, start, end))
        out.extend(await self._safety_rows(a, end))
        out.append(await self._rating_row(a, communities, quarter, total))
        return out

    async def _credit_row(self, area: dict[str, Any], quarter: str, end: datetime) -> Row:
        districts = Query("辖区内的区（市）", "areas", "distinct",
                          {"path": area["_id"], "level": "district"}, "_id")
        ids = await self._run(districts)
        q = Query(f"{quarter} 已发布的区（市）红黑榜", "credit_lists", "distinct",
                  {"area_id": {"$in": ids}, "period": quarter, "published_at": {"$lt": end}},
                  "area_id")
        published = await self._run(q)
        if area["level"] == AreaLevel.DISTRICT:
            display = f"{'是' if published else '否'}：{quarter} 信用评价结果和红黑榜" + (
                "已公布" if published else "未公布")
        else:
            display = f"{len(published)}/{len(ids)} 个区（市）已公布 {quarter} 红黑榜"
        return Row(19, True, len(published), display, [districts, q],
                   "第二个查询的 area_id 取第一个查询的结果")

    async def _complaint_rows(self, a: str, start: datetime, end: datetime) -> list[Row]:
        since = {"area_path": a, "n_received": 1,
                 "filed_at": {"$gte": CAMPAIGN_START, "$lt": end}}
        total = Query("2021 年以来受理的投诉", "complaints", "count", since)
        this_month = Query("本月受理的投诉", "complaints", "count",
                           {"area_path": a, "n_received": 1,
                            "filed_at": {"$gte": start, "$lt": end}})
        responded = Query("已响应", "complaints", "count", {**since, "responded_at": {"$lt": end}})
        completed = Query("已办结", "complaints", "count",
                          {**since, "n_completed": 1, "resolved_at": {"$lt": end}})
        n, m = await self._run(total), await self._run(this_month)
        r, c = await self._run(responded), await self._run(completed)
        return [
            Row(33, True, n, f"{n}（本月 {m}）", [total, this_month]),
            Row(34, True, {"responded": r, "completed": c},
                f"响应 {r} 件，办结 {c} 件（响应率 {percent(r, n)}，办结率 {percent(c, n)}）",
                [responded, completed], "比率的分母为第 33 行的件数"),
        ]

    async def _disclosure_row(self, no: int, publisher: str, a: str, communities: dict[str, Any],
                              quarter: str, end: datetime) -> Row:
        has = {"has_committee": True} if publisher == "committee" else {"company_id": {"$ne": ""}}
        who = "业委会" if publisher == "committee" else "物业服务企业"
        eligible = Query(f"有{who}的小区", "communities", "distinct", {**communities, **has}, "_id")
        base = {"area_path": a, "publisher": publisher, "published_at": {"$lt": end}}
        standards = Query("已公开服务标准（含收费标准）", "disclosures", "distinct",
                          {**base, "kind": "service_standards"}, "community_id")
        channels = Query("已公开投诉渠道", "disclosures", "distinct",
                         {**base, "kind": "complaint_channels"}, "community_id")
        income = Query(f"已公开 {quarter} 公共部位收益", "disclosures", "distinct",
                       {**base, "kind": "common_income", "period": quarter}, "community_id")
        due = self.disclosures.due_at(quarter)
        sources = [eligible, standards, channels]
        current = set(await self._run(eligible)) & set(await self._run(standards)) & set(
            await self._run(channels))
        rule = "前三个查询结果的交集"
        if end > due:
            sources.append(income)
            current &= set(await self._run(income))
            rule = f"四个查询结果的交集（{quarter} 收益公开已于 {iso(due)} 到期）"
        else:
            rule += f"（{quarter} 收益公开 {iso(due)} 到期，月末尚未到期，不计）"
        n = len(await self._run(eligible))
        return Row(no, True, len(current), f"{len(current)}（共 {n} 个有{who}的小区）",
                   sources, rule)

    async def _voting_row(self, a: str, communities: dict[str, Any], start: datetime,
                          end: datetime) -> Row:
        ids_q = Query("辖区小区", "communities", "distinct", communities, "_id")
        ids = await self._run(ids_q)
        published = {"community_id": {"$in": ids}, "status": {"$ne": "draft"},
                     "published_at": {"$lt": end}}
        total = Query("已发起的电子表决", "ballots", "count", published)
        where = Query("发起过电子表决的小区", "ballots", "distinct", published, "community_id")
        month = Query("本月发起的电子表决", "ballots", "count",
                      {**published, "published_at": {"$gte": start, "$lt": end}})
        n, c, m = await self._run(total), len(await self._run(where)), await self._run(month)
        display = (f"是：已建成平台，{c} 个小区累计电子表决 {n} 项（本月 {m} 项）" if n
                   else "否：尚无业主决策事项电子化表决")
        return Row(38, True, {"ballots": n, "communities": c, "this_month": m}, display,
                   [ids_q, total, where, month], "后三个查询的 community_id 取第一个查询的结果")

    async def _safety_rows(self, a: str, end: datetime) -> list[Row]:
        items = {"area_path": a, "n_received": 1, "category": {"$in": list(SAFETY_CATEGORIES)},
                 "filed_at": {"$gte": CAMPAIGN_START, "$lt": end}}
        where = Query("有安全隐患事项的小区", "complaints", "distinct", items, "community_id")
        found = Query("安全隐患事项", "complaints", "count", items)
        fixed = Query("已整改办结的安全隐患事项", "complaints", "count",
                      {**items, "n_completed": 1, "resolved_at": {"$lt": end}})
        basis = "按平台受理的安全类事项统计（电动车上楼/飞线充电、私搭乱建、占用公共设施、车辆乱停乱放）"
        c = len(await self._run(where))
        f, x = await self._run(found), await self._run(fixed)
        return [Row(43, True, c, str(c), [where], basis), Row(44, True, f, str(f), [found], basis),
                Row(45, True, x, f"{x}（销号率 {percent(x, f)}）", [fixed], basis)]

    async def _rating_row(self, a: str, communities: dict[str, Any], quarter: str,
                          total: int) -> Row:
        q = Query(f"{quarter} 开展服务质量评价的小区", "rating_periods", "distinct",
                  {"area_path": a, "quarter": quarter, "created_at": communities["created_at"]},
                  "community_id")
        covered = len(await self._run(q))
        full = total > 0 and covered == total
        return Row(54, True, covered,
                   f"{'是' if full else '否'}：{quarter} 评价覆盖 {covered}/{total} 个小区", [q],
                   "分母为第 3 行的住宅小区数")

    # -- XLSX ---------------------------------------------------------------------------------
    async def xlsx(self, report: dict[str, Any]) -> bytes:
        """The table as in the plan's attachment, plus a sheet with every figure's query."""
        return await asyncio.get_running_loop().run_in_executor(None, render_xlsx, report)


def render_xlsx(report: dict[str, Any]) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Border, Font, Side
    from openpyxl.worksheet.hyperlink import Hyperlink

    wb = Workbook()
    ws = wb.active
    ws.title = "推进情况表"
    thin = Side(style="thin")
    box = Border(left=thin, right=thin, top=thin, bottom=thin)
    wrap = Alignment(wrap_text=True, vertical="center")
    centre = Alignment(wrap_text=True, vertical="center", horizontal="center")
    ws["A1"] = "附件"
    ws.merge_cells("A2:F2")
    ws["A2"] = "枣庄市物业服务质量提升年活动推进情况表"
    ws["A2"].font = Font(size=16, bold=True)
    ws["A2"].alignment = centre
    generated = as_utc(datetime.fromisoformat(report["generated_at"].replace("Z", "+00:00")))
    local = generated.astimezone(CST)
    ws.merge_cells("A3:C3")
    ws["A3"] = f"属地：{report['area']['name']}（{report['month'][:4]} 年 {int(report['month'][5:])} 月）"
    ws.merge_cells("D3:F3")
    ws["D3"] = f"{local.year} 年 {local.month} 月 {local.day} 日"
    ws["D3"].alignment = Alignment(horizontal="right")
    header = ("序号", "工作任务", "工作要求", "工作进展情况", "纪实材料", "备注")
    for col, title in enumerate(header, start=1):
        cell = ws.cell(row=4, column=col, value=title)
        cell.font, cell.alignment, cell.border = Font(bold=True), centre, box
    first_row = 5
    sources = wb.create_sheet("数据来源")
    sources.append(("序号", "工作要求", "取值", "查询说明", "集合", "操作", "字段",
                    "条件（MongoDB Extended JSON）", "合并规则"))
    for r in report["rows"]:
        line = first_row + r["no"] - 1
        material = r["material"]
        if r["auto"]:
            material = (material + "；" if material else "") + "平台自动统计，见“数据来源”"
        values = (r["no"], "", r["item"], r["progress"], material, r["note"])
        for col, value in enumerate(values, start=1):
            cell = ws.cell(row=line, column=col, value=value)
            cell.alignment = centre if col == 1 else wrap
            cell.border = box
        if r["auto"]:
            target = sources.max_row + 1
            link = ws.cell(row=line, column=5)
            link.hyperlink = Hyperlink(ref=link.coordinate, location=f"'数据来源'!A{target}")
            for q in r["sources"]:
                where = json.dumps(q["filter"], ensure_ascii=False)
                if len(where) > CELL_MAX:  # Excel's cell limit; the JSON report has it whole
                    where = where[:CELL_MAX] + "…（过长，完整条件见 JSON 版）"
                sources.append((r["no"], r["item"], json.dumps(r["value"], ensure_ascii=False),
                                q["label"], q["collection"], q["op"], q.get("field", ""),
                                where, r["rule"]))
    for first, last, name in GROUPS:
        top, bottom = first_row + first - 1, first_row + last - 1
        ws.cell(row=top, column=2, value=name).alignment = centre
        if bottom > top:
            ws.merge_cells(start_row=top, start_column=2, end_row=bottom, end_column=2)
    for col, width in zip("ABCDEF", (6, 16, 48, 36, 22, 16), strict=True):
        ws.column_dimensions[col].width = width
    for col, width in zip("ABCDEFGHI", (6, 30, 14, 24, 14, 10, 14, 80, 30), strict=True):
        sources.column_dimensions[col].width = width
    ws.freeze_panes = "A5"
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
