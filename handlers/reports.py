"""Monthly progress reports (JSON and XLSX) and large streamed exports, for officials.

Who: officials of the area (or above it) and platform admins — `access.staff_area`.
"""

from __future__ import annotations

from typing import Any

from handlers.base import Auth, Endpoint, Reply, Request
from server.reports import MONTH_PATTERN
from server.validation import BOOL, ID, TIMESTAMP, array, enum, integer, obj, string

A = "/api/admin/v1/areas/{area_id}"
T = "reports"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
QUERY = obj({"label": string(0), "collection": string(), "op": enum("count", "distinct"),
             "filter": {"type": "object"}}, {"field": string()})
ROW = obj({"no": integer(1, 54), "task": string(), "item": string(), "auto": BOOL,
           "value": {"description": "自动统计的取值（整数或对象）；人工行为 null"},
           "progress": string(0, 2000), "material": string(0, 2000), "note": string(0, 2000),
           "rule": string(0), "sources": array(QUERY, 0, 10)})
REPORT = obj({"area": obj({"id": ID, "name": string(), "level": string()}),
              "month": string(7, 7), "from": TIMESTAMP, "to": TIMESTAMP,
              "generated_at": TIMESTAMP, "rows": array(ROW, 54, 54)})
ENTRY = obj(optional={"progress": string(0, 2000), "material": string(0, 2000),
                      "note": string(0, 2000)})
MONTH = string(7, 7, pattern=MONTH_PATTERN)
FORMAT = enum("csv", "jsonl")


async def monthly(req: Request) -> Any:
    area = await req.services.access.staff_area(req.principal, req.args["area_id"])
    return await req.services.reports.monthly(area["_id"], req.args["month"])


async def monthly_xlsx(req: Request) -> Any:
    area = await req.services.access.staff_area(req.principal, req.args["area_id"])
    report = await req.services.reports.monthly(area["_id"], req.args["month"])
    body = await req.services.reports.xlsx(report)
    name = f"monthly-report-{area['_id']}-{req.args['month']}.xlsx"
    return Reply(body=body, content_type=XLSX,
                 headers={"Content-Disposition": f'attachment; filename="{name}"'})


async def save_manual(req: Request) -> Any:
    area = await req.services.access.staff_area(req.principal, req.args["area_id"])
    report = await req.services.reports.save_manual(req.principal, area["_id"], req.args["month"],
                                                    req.body["rows"])
    await req.services.audit.record(req.principal, "report.manual", community_id="",
                                    target=f"{area['_id']}:{req.args['month']}",
                                    detail={"rows": sorted(req.body["rows"])})
    return report


def _stream(body: Any, name: str, fmt: str) -> Reply:
    content_type = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
    return Reply(body=body, content_type=content_type,
                 headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'})


async def export_complaints(req: Request) -> Any:
    area = await req.services.access.staff_area(req.principal, req.args["area_id"])
    year, fmt = req.query["year"], req.query.get("format", "csv")
    await req.services.audit.record(req.principal, "export.complaints", community_id="",
                                    target=area["_id"], detail={"year": year})
    return _stream(req.services.exports.complaints(area["_id"], year, fmt),
                   f"complaints-{area['_id']}-{year}", fmt)


async def export_ballots(req: Request) -> Any:
    area = await req.services.access.staff_area(req.principal, req.args["area_id"])
    fmt = req.query.get("format", "csv")
    await req.services.audit.record(req.principal, "export.ballots", community_id="",
                                    target=area["_id"])
    return _stream(req.services.exports.ballots(area["_id"], fmt), f"ballots-{area['_id']}", fmt)


endpoints = [
    Endpoint("GET", A + "/monthly-reports/{month}", monthly, Auth.ADMIN,
             "月度推进情况表（自动统计各行并附查询说明；其余行留待填写）", REPORT, tag=T),
    Endpoint("GET", A + "/monthly-reports/{month}/xlsx", monthly_xlsx, Auth.ADMIN,
             "月度推进情况表 XLSX（版式同方案附件，另附“数据来源”表）", raw_response=XLSX, tag=T),
    Endpoint("PUT", A + "/monthly-reports/{month}/manual", save_manual, Auth.ADMIN,
             "填写平台无法统计的行（进展情况、纪实材料、备注）", REPORT,
             body=obj({"rows": {"type": "object", "minProperties": 1, "maxProperties": 54,
                                "propertyNames": {"pattern": "^[0-9]{1,2}$"},
                                "additionalProperties": ENTRY}}), tag=T),
    Endpoint("GET", A + "/exports/complaints", export_complaints, Auth.ADMIN,
             "导出辖区某年全部投诉（流式，CSV 或 JSON Lines）", raw_response="text/csv",
             query=obj({"year": integer(2021, 2100)}, {"format": FORMAT}), tag=T),
    Endpoint("GET", A + "/exports/ballots", export_ballots, Auth.ADMIN,
             "导出辖区全部表决及结果（流式，CSV 或 JSON Lines）", raw_response="text/csv",
             query=obj(optional={"format": FORMAT}), tag=T),
]
