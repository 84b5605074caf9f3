"""Quarterly service rating by owners, and the credit red/black lists built from it."""

from __future__ import annotations

from typing import Any

from handlers.base import Auth, Endpoint, Reply, Request
from server.access import require_mp, require_staff
from server.auth import Role
from server.credit import evaluate
from server.errors import Forbidden
from server.periods import PERIOD_PATTERN, QUARTER_PATTERN, last_ended_quarter, period
from server.ratings import is_open, period_to_json
from server.validation import BOOL, ID, TIMESTAMP, array, integer, obj, string

QUARTER = string(6, 6, pattern=QUARTER_PATTERN)
SCORE = integer(1, 5)
PERIOD = obj({"id": ID, "community_id": ID, "quarter": string(), "company_id": string(0, 64),
              "opens_at": TIMESTAMP, "closes_at": TIMESTAMP, "is_open": BOOL,
              "dimensions": array(obj({"key": string(), "name": string()})),
              "eligible_persons": integer(0)})
RATING = obj({"quarter": string(), "person_key": string(), "scores": {"type": "object"},
              "comment": string(0, 500), "comment_status": string(0), "rated_at": TIMESTAMP})
FRACTION = {"sum": integer(0), "count": integer(0), "average": {"type": ["string", "null"]}}
RESULTS = obj({"period": PERIOD,
               "participation": obj({"rated": integer(0), "eligible": integer(0),
                                     "percent": {"type": ["string", "null"]}}),
               "dimensions": array(obj({"key": string(), "name": string(),
                                        "distribution": {"type": "object"}, **FRACTION}))})


def _quarter(req: Request) -> str:
    label = req.args.get("quarter") or req.query.get("quarter") or ""
    return period(label, "quarter").label if label else last_ended_quarter(
        req.services.clock.now())


async def my_rating_form(req: Request) -> Any:
    user = require_mp(req.principal)
    community = await req.services.access.mp_community(user, req.args["community_id"], ("owner",))
    ratings = req.services.duties.ratings
    doc = await ratings.ensure_period(community, _quarter(req))
    persons = await ratings.my_persons(user, community, doc)
    return {"period": period_to_json(doc, req.services.clock.now()),
            "persons": [{"person_key": p.person_id, "unit_ids": list(p.unit_ids)}
                        for p in persons],
            "my_ratings": await ratings.my_rating(user, doc["_id"])}


async def rate(req: Request) -> Any:
    user = require_mp(req.principal)
    community = await req.services.access.mp_community(user, req.args["community_id"], ("owner",))
    ratings = req.services.duties.ratings
    await ratings.ensure_period(community, _quarter(req))
    return await ratings.rate(user, community, _quarter(req), req.body["scores"],
                              req.body.get("comment", ""), req.body.get("person_key"))


async def mp_results(req: Request) -> Any:
    community = await req.services.access.mp_community(req.principal, req.args["community_id"])
    ratings = req.services.duties.ratings
    doc = await ratings.period(community.id, _quarter(req))
    if is_open(doc, req.services.clock.now()):
        raise Forbidden("评价截止后公布结果", code="rating_results_not_yet")
    return await ratings.results(doc)


async def admin_results(req: Request) -> Any:
    community = await req.services.access.staff_community(req.principal, req.args["community_id"])
    ratings = req.services.duties.ratings
    return await ratings.results(await ratings.period(community.id, _quarter(req)))


# -- credit -----------------------------------------------------------------------------------
def _period(req: Request) -> str:
    return period(req.args.get("period") or req.body["period"], "period").label


async def credit_inputs(req: Request) -> Any:
    area = await req.services.access.staff_area(req.principal, req.args["area_id"])
    credit = req.services.duties.credit
    inputs = await credit.inputs(area["_id"], _period(req))
    return {"area_id": area["_id"], "period": _period(req), "formula": credit.formula,
            "inputs": inputs, **evaluate(inputs, credit.formula)}


async def publish_list(req: Request) -> Any:
    area = await req.services.access.staff_area(req.principal, req.args["area_id"])
    staff = require_staff(req.principal)
    if not staff.has_role(Role.OFFICIAL, Role.PLATFORM_ADMIN):
        raise Forbidden("仅主管部门可发布榜单", code="official_only")
    result = await req.services.duties.credit.publish(staff, area, _period(req))
    return Reply(status=201, body=result)


async def get_list(req: Request) -> Any:
    # Published lists are public information: any signed-in staff or owner may read them.
    return await req.services.duties.credit.get(req.args["area_id"], _period(req))


async def company_credit(req: Request) -> Any:
    staff = require_staff(req.principal)
    company_id = req.args["company_id"]
    own = any(g.role is Role.PROPERTY and g.company_id == company_id for g in staff.grants)
    if not (own or staff.has_role(Role.OFFICIAL, Role.PLATFORM_ADMIN)):
        raise Forbidden("只能查看本企业的信用评价", code="out_of_scope")
    await req.services.registry.company(company_id)
    return {"company_id": company_id,
            "evaluations": await req.services.duties.credit.of_company(company_id)}


FORMULA = obj({"weights": {"type": "object"}, "red_min": integer(0, 100),
               "black_below": integer(0, 100)})
RESULT = obj({"rank": integer(1), "company_id": ID, "list": string(0),
              "score": obj({"num": integer(), "den": integer(1), "display": string()}),
              "components": {"type": "object"}})
EVALUATION = {"formula": FORMULA, "inputs": array({"type": "object"}), "results": array(RESULT),
              "red": array(ID), "black": array(ID)}
LIST = obj({"id": ID, "area_id": ID, "area_level": string(), "period": string(),
            "published_at": TIMESTAMP, "payload_sha256": string(64, 64),
            "signature": obj({"alg": string(), "kid": string(), "sig": string()}), **EVALUATION})
C = "/api/mp/v1/communities/{community_id}"
AREA = "/api/admin/v1/areas/{area_id}"
PERIOD_ARG = string(6, 6, pattern=PERIOD_PATTERN)

endpoints = [
    Endpoint("GET", C + "/rating", my_rating_form, Auth.MP,
             "本季度服务质量评价：评价期、可评价的户与我的评价",
             obj({"period": PERIOD, "persons": array(obj({"person_key": string(),
                                                           "unit_ids": array(ID)})),
                  "my_ratings": array(RATING)}),
             query=obj(optional={"quarter": QUARTER}), tag="mp"),
    Endpoint("PUT", C + "/ratings/{quarter}", rate, Auth.MP,
             "提交或修改本户评价（每户一份，截止前可改；评语经内容安全检测）", RATING,
             body=obj({"scores": {"type": "object", "additionalProperties": SCORE,
                                  "maxProperties": 20}},
                      {"comment": string(1, 500), "person_key": string(1, 300)}), tag="mp"),
    Endpoint("GET", C + "/ratings/{quarter}/results", mp_results, Auth.MP,
             "评价结果（截止后公布）", RESULTS, tag="mp"),
    Endpoint("GET", "/api/admin/v1/communities/{community_id}/ratings/{quarter}/results",
             admin_results, Auth.ADMIN, "评价结果：各维度精确合计、参与率、分布", RESULTS,
             tag="ratings"),
    Endpoint("GET", AREA + "/credit-inputs/{period}", credit_inputs, Auth.ADMIN,
             "信用评价输入与试算（未发布）",
             obj({"area_id": ID, "period": string(), **EVALUATION}), tag="ratings"),
    Endpoint("POST", AREA + "/credit-lists", publish_list, Auth.ADMIN,
             "发布红黑榜（季度按区，半年按市），连同输入与公式签名公开", LIST,
             body=obj({"period": PERIOD_ARG}), status=201, tag="ratings"),
    Endpoint("GET", AREA + "/credit-lists/{period}", get_list, Auth.ADMIN, "已发布的红黑榜",
             LIST, tag="ratings"),
    Endpoint("GET", "/api/mp/v1/areas/{area_id}/credit-lists/{period}", get_list, Auth.MP,
             "已发布的红黑榜（业主查看）", LIST, tag="mp"),
    Endpoint("GET", "/api/admin/v1/companies/{company_id}/credit", company_credit, Auth.ADMIN,
             "本企业在各期榜单中的输入、得分与名次",
             obj({"company_id": ID, "evaluations": array({"type": "object"})}), tag="ratings"),
]
