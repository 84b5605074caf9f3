"""The open API for the city platform (/api/open/v1): signed requests, scoped, cursor-paginated.

Authentication is `Auth.OPEN` (server/integration.py checks the HMAC signature, timestamp, nonce
and rate before any of these functions runs); each function checks the place asked for against
the client's scope through `services.open_data`.
"""

from __future__ import annotations

from typing import Any

from handlers.base import Auth, Endpoint, Request
from server.integration import require_client
from server.periods import QUARTER_PATTERN
from server.validation import BOOL, ID, TIMESTAMP, array, enum, integer, obj, string

P = "/api/open/v1"
T = "open"
CURSOR = string(1, 400, pattern="^[A-Za-z0-9_-]+$")
LIMIT = integer(1, 200)
NULL_STR = {"type": ["string", "null"]}
PAGE_QUERY = {"cursor": CURSOR, "limit": LIMIT}
QUARTER = string(6, 6, pattern=QUARTER_PATTERN)
MONTH = string(7, 7, pattern=r"^\d{4}-(0[1-9]|1[0-2])$")
SIGNATURE = obj({"alg": string(), "kid": string(), "sig": string()})

COUNTS = obj({"buildings": integer(0), "units": integer(0), "owners": integer(0)})
COMMUNITY = obj({"id": ID, "name": string(), "area_id": ID, "area_path": array(ID),
                 "company_id": string(0), "has_committee": BOOL,
                 "rules": obj({"count_parking": BOOL, "count_storage": BOOL}), "counts": COUNTS})
BALLOT = {"type": "object", "required": ["id", "community_id", "title", "status", "items",
                                         "result", "result_signature"],
          "properties": {"id": ID, "community_id": ID, "title": string(), "status": string(),
                         "is_open": BOOL, "opens_at": TIMESTAMP, "closes_at": TIMESTAMP,
                         "items": {"type": "array"}, "totals": {"type": ["object", "null"]},
                         "result": {"type": ["object", "null"],
                                    "description": "签名的计票结果（表决结束后）"},
                         "result_signature": {"type": ["object", "null"]}}}
BUNDLE = {"type": "object", "required": ["format", "variant", "ballot_id", "entries", "keys"],
          "description": "公开核验包：日志条目、检查点、公钥与结果签名（不含任何人的选择）",
          "properties": {"format": string(), "variant": enum("public"), "ballot_id": ID,
                         "origin": string(), "entries": {"type": "array"},
                         "keys": {"type": ["object", "array"]}, "checkpoints": array(string(1, 10000), 0, 100000),
                         "result_signature": {"type": ["object", "null"]}}}
DISCLOSURE = {"type": "object",
              "required": ["id", "community_id", "publisher", "kind", "version", "content",
                           "published_at", "payload_sha256", "signature", "signature_valid"],
              "properties": {"id": ID, "community_id": ID, "company_id": string(0),
                             "publisher": enum("property", "committee"),
                             "kind": enum("service_standards", "complaint_channels",
                                          "common_income"),
                             "period": NULL_STR, "version": integer(1),
                             "content": {"type": "object"}, "published_at": TIMESTAMP,
                             "payload_sha256": string(64, 64), "signature": SIGNATURE,
                             "signature_valid": BOOL}}
RATING = {"type": "object", "required": ["community_id", "quarter", "participation", "dimensions"],
          "properties": {"community_id": ID, "company_id": string(0), "quarter": string(),
                         "period": {"type": "object"}, "participation": {"type": "object"},
                         "dimensions": {"type": "array"}}}
CREDIT_LIST = {"type": "object",
               "required": ["id", "area_id", "period", "results", "red", "black", "signature"],
               "properties": {"id": ID, "area_id": ID, "area_level": string(), "period": string(),
                              "formula": {"type": "object"}, "inputs": {"type": "array"},
                              "results": {"type": "array"}, "red": array(ID), "black": array(ID),
                              "published_at": TIMESTAMP, "payload_sha256": string(64, 64),
                              "signature": SIGNATURE}}
STATS_ROW = {"type": "object", "properties": {
    "community_id": ID, "company_id": string(0), "received": integer(0), "responded": integer(0),
    "responded_on_time": integer(0), "completed": integer(0), "escalated": integer(0),
    "rated": integer(0), "satisfaction_sum": integer(0)}}
FEE_ROW = {"type": "object", "properties": {
    "community_id": ID, "due_fen": integer(0), "paid_fen": integer(0), "unpaid_fen": integer(0),
    "bills": integer(0), "paid_bills": integer(0), "waived_bills": integer(0),
    "rate_bp": integer(0, 10000)}}


def paged(item: dict[str, Any]) -> dict[str, Any]:
    return obj({"items": array(item, 0, 200), "next_cursor": NULL_STR})


def _limit(req: Request) -> int:
    return int(req.query.get("limit", 50))


async def communities(req: Request) -> Any:
    return await req.services.open_data.communities(
        require_client(req.principal), req.query.get("area_id"), req.query.get("cursor"),
        _limit(req))


async def community(req: Request) -> Any:
    return await req.services.open_data.community_detail(require_client(req.principal),
                                                         req.args["community_id"])


async def ballots(req: Request) -> Any:
    q = req.query
    return await req.services.open_data.ballot_list(
        require_client(req.principal), q.get("community_id"), q.get("area_id"), q.get("status"),
        q.get("cursor"), _limit(req))


async def ballot(req: Request) -> Any:
    return await req.services.open_data.ballot(require_client(req.principal), req.args["ballot_id"])


async def ballot_bundle(req: Request) -> Any:
    return await req.services.open_data.ballot_bundle(require_client(req.principal),
                                                      req.args["ballot_id"])


async def disclosures(req: Request) -> Any:
    q = req.query
    return await req.services.open_data.disclosure_list(
        require_client(req.principal), q.get("community_id"), q.get("area_id"), q.get("kind"),
        q.get("cursor"), _limit(req))


async def disclosure(req: Request) -> Any:
    return await req.services.open_data.disclosure(require_client(req.principal),
                                                   req.args["disclosure_id"])


async def rating_results(req: Request) -> Any:
    q = req.query
    return await req.services.open_data.rating_results(
        require_client(req.principal), q.get("quarter"), q.get("community_id"), q.get("area_id"),
        q.get("cursor"), _limit(req))


async def credit_lists(req: Request) -> Any:
    return await req.services.open_data.credit_lists(
        require_client(req.principal), req.query.get("area_id"), req.query.get("cursor"),
        _limit(req))


async def credit_list(req: Request) -> Any:
    return await req.services.open_data.credit_list(require_client(req.principal),
                                                    req.args["area_id"], req.args["period"])


async def complaint_stats(req: Request) -> Any:
    q = req.query
    return await req.services.open_data.complaint_stats(
        require_client(req.principal), q.get("community_id"), q.get("area_id"), q.get("quarter"))


async def fee_stats(req: Request) -> Any:
    q = req.query
    return await req.services.open_data.fee_stats(
        require_client(req.principal), q.get("community_id"), q.get("area_id"), q["period"])


PLACE = {"community_id": ID, "area_id": ID}

endpoints = [
    Endpoint("GET", P + "/communities", communities, Auth.OPEN,
             "授权范围内的小区及名册统计（游标分页）", paged(COMMUNITY),
             query=obj(optional={"area_id": ID, **PAGE_QUERY}), tag=T),
    Endpoint("GET", P + "/communities/{community_id}", community, Auth.OPEN,
             "小区详情与名册统计", COMMUNITY, tag=T),
    Endpoint("GET", P + "/ballots", ballots, Auth.OPEN,
             "已发布的表决及签名结果（游标分页）", paged(BALLOT),
             query=obj(optional={**PLACE, "status": enum("published", "closing", "closed",
                                                         "withdrawn"), **PAGE_QUERY}), tag=T),
    Endpoint("GET", P + "/ballots/{ballot_id}", ballot, Auth.OPEN, "表决详情与签名结果", BALLOT,
             tag=T),
    Endpoint("GET", P + "/ballots/{ballot_id}/bundle", ballot_bundle, Auth.OPEN,
             "表决公开核验包（可离线核验）", BUNDLE, tag=T),
    Endpoint("GET", P + "/disclosures", disclosures, Auth.OPEN,
             "三公开信息（全部版本，含签名与校验结果，游标分页）", paged(DISCLOSURE),
             query=obj(optional={**PLACE, "kind": enum("service_standards", "complaint_channels",
                                                       "common_income"), **PAGE_QUERY}), tag=T),
    Endpoint("GET", P + "/disclosures/{disclosure_id}", disclosure, Auth.OPEN,
             "一条公开信息（含签名校验结果）", DISCLOSURE, tag=T),
    Endpoint("GET", P + "/rating-results", rating_results, Auth.OPEN,
             "物业服务质量评价结果（按小区与季度，游标分页）", paged(RATING),
             query=obj(optional={**PLACE, "quarter": QUARTER, **PAGE_QUERY}), tag=T),
    Endpoint("GET", P + "/credit-lists", credit_lists, Auth.OPEN,
             "已发布的信用评价与红黑榜（游标分页）", paged(CREDIT_LIST),
             query=obj(optional={"area_id": ID, **PAGE_QUERY}), tag=T),
    Endpoint("GET", P + "/credit-lists/{area_id}/{period}", credit_list, Auth.OPEN,
             "某区域某期的红黑榜（签名）", CREDIT_LIST, tag=T),
    Endpoint("GET", P + "/complaint-stats", complaint_stats, Auth.OPEN,
             "投诉受理、响应、办结统计（按季度；小区或区域二选一）",
             obj({"quarter": string(), "by_community": array(STATS_ROW, 0, 10000),
                  "by_company": array(STATS_ROW, 0, 10000)}),
             query=obj(optional={**PLACE, "quarter": QUARTER}), tag=T),
    Endpoint("GET", P + "/fee-stats", fee_stats, Auth.OPEN,
             "物业费收缴统计（按账期；小区或区域二选一）",
             obj({"period": string(), "by_community": array(FEE_ROW, 0, 10000),
                  "total": obj({"due_fen": integer(0), "paid_fen": integer(0),
                                "unpaid_fen": integer(0)})}),
             query=obj({"period": MONTH}, PLACE), tag=T),
]
