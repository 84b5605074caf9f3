"""Authorisation, generated from the route table (services.extra["endpoints"]).

Every route that is not public refuses anonymous callers with 401. Every route that names an
object in its path ({community_id}, {ballot_id}, {bill_id}, …) refuses a caller of community A
— its committee, its property company, its owners — asking for a real object of community B,
with 403 or 404. Request bodies are generated valid from the route's own schema, so a refusal
can never hide behind a 400.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import jsonschema
from hypothesis import strategies as st

from handlers.base import Auth, Endpoint
from server.auth import Grant, Role
from server.clock import ManualClock
from tests.apiclient import Api
from tests.fees.conftest import (  # noqa: F401  (fixtures: payments on, against the fake)
    api,
    fake_pay,
    merchant_key,
    services,
)
from tests.voting_api.helpers import ballot_body
from tests.world import build_world, unit_id

ANONYMOUS_REFUSED = {401}
OTHER_COMMUNITY_REFUSED = {403, 404}


def sample(schema: dict[str, Any]) -> Any:
    """A small value that satisfies `schema` (the subset our schema builders produce)."""
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "oneOf" in schema or "anyOf" in schema:
        return sample((schema.get("oneOf") or schema["anyOf"])[0])
    kind = schema.get("type", "string" if {"pattern", "minLength"} & schema.keys() else "object")
    if isinstance(kind, list):
        kind = next(k for k in kind if k != "null")
    if kind == "object":
        props = schema.get("properties", {})
        out = {k: sample(props.get(k, {"type": "string"})) for k in schema.get("required", [])}
        if len(out) < schema.get("minProperties", 0):
            name = sample(schema.get("propertyNames", {"type": "string", "pattern": "^[a-z]{1,8}$"}))
            extra = schema.get("additionalProperties", {"type": "string"})
            out[name] = sample(extra if isinstance(extra, dict) else {"type": "string"})
        return out
    if kind == "array":
        return [sample(schema.get("items", {"type": "string"}))
                for _ in range(schema.get("minItems", 0))]
    if kind == "integer":
        return max(schema.get("minimum", 1), 1) if schema.get("maximum", 2) >= 1 else schema["minimum"]
    if kind == "number":
        return schema.get("minimum", 1)
    if kind == "boolean":
        return True
    if schema.get("format") == "date-time":
        return "2026-01-01T00:00:00Z"
    low, high = schema.get("minLength", 1), schema.get("maxLength", max(schema.get("minLength", 1), 8))
    if "pattern" in schema:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            strategy = st.from_regex(schema["pattern"], fullmatch=True).filter(
                lambda s: low <= len(s) <= high)
            return strategy.example()
    return "x" * max(low, 1)


def valid_body(endpoint: Endpoint) -> Any:
    if endpoint.body is None or endpoint.auth in (Auth.CALLBACK,):
        return None
    for _ in range(20):
        body = sample(dict(endpoint.body))
        if not list(jsonschema.Draft202012Validator(endpoint.body).iter_errors(body)):
            return body
    raise AssertionError(f"cannot generate a valid body for {endpoint.method} {endpoint.path}")


async def _community_b_objects(api: Api, clock: ManualClock) -> dict[str, str]:
    """Real objects of community B (cm_b), created the way their owners would."""
    services = api.services
    committee_b = await api.staff("c_b", [Grant(Role.COMMITTEE, community_id="cm_b")])
    r = await api.post("/api/admin/v1/communities/cm_b/ballots", committee_b, json=ballot_body(clock))
    assert r.status_code == 201, r.text
    ballot_id = r.json()["id"]
    community = await services.registry.community("cm_b")
    item = await services.fees.create_item(None, community, {
        "name": "物业费", "kind": "property", "cycle_months": 1, "price_fen_per_m2_month": 135})
    await services.fees.generate(None, community, "2026-01", [item["id"]])
    bill = await services.store.db["bills"].find_one({"community_id": "cm_b"})
    assert bill is not None
    unit = unit_id("cm_b", "1号楼", "101")
    owner = (await services.registry.unit(unit))["owner_ids"][0]
    building = await services.store.db["buildings"].find_one({"community_id": "cm_b"})
    owner_b = await api.mp_owner("owner-b-1", "13900000201")
    r = await api.post("/api/mp/v1/orders", owner_b, json={"bill_ids": [bill["_id"]]})
    assert r.status_code == 201, r.text
    return {"community_id": "cm_b", "ballot_id": ballot_id, "item_id": item["id"],
            "bill_id": bill["_id"], "unit_id": unit, "owner_id": owner,
            "building_id": building["_id"] if building else "bd_none",
            "order_id": r.json()["order"]["id"],
            # Areas: B's district's street is shared with A; ar_s2 is another district's.
            "area_id": "ar_s2", "publisher": "committee", "period": "2026Q1"}


def _path(endpoint: Endpoint, objects: dict[str, str]) -> str:
    return re.sub(r"{(\w+)}", lambda m: objects.get(m.group(1), "zz_not_there"), endpoint.path)


async def test_every_route_refuses_anonymous_and_other_community_callers(
        api: Api, clock: ManualClock) -> None:
    await build_world(api.services)
    objects = await _community_b_objects(api, clock)
    callers = {
        "committee of A": await api.staff("c_a", [Grant(Role.COMMITTEE, community_id="cm_a")]),
        "property staff of A": await api.staff("p_a", [Grant(Role.PROPERTY, company_id=(
            await api.services.registry.community("cm_a")).company_id)]),
    }
    owner_a = await api.mp_owner("owner-a-1", "13900000101")
    endpoints: list[Endpoint] = api.services.extra["endpoints"]
    problems: list[str] = []
    checked = 0
    for e in endpoints:
        if e.auth in (Auth.PUBLIC, Auth.CALLBACK):
            continue
        path = _path(e, objects)
        body = valid_body(e)
        query = sample(dict(e.query)) if e.query is not None else None
        r = await api.call(e.method, path, None, json=body, params=query)
        if r.status_code not in ANONYMOUS_REFUSED:
            problems.append(f"anonymous {e.method} {e.path}: {r.status_code} {r.text[:120]}")
        checked += 1
        if not e.path_params or e.auth is Auth.OPEN:
            continue
        tokens = callers if e.auth is Auth.ADMIN else {"owner of A": owner_a}
        for who, token in tokens.items():
            r = await api.call(e.method, path, token, json=body, params=query)
            if r.status_code not in OTHER_COMMUNITY_REFUSED:
                problems.append(f"{who} {e.method} {e.path} on B: {r.status_code} {r.text[:160]}")
            checked += 1
    assert checked > 50
    assert not problems, "\n".join(problems)
