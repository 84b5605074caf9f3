"""Every error is JSON with a stable code, a Chinese message and field paths; nothing leaks."""

from __future__ import annotations

import json

from server.auth import Grant, Role
from tests.apiclient import Api
from tests.world import build_world


async def _admin(api: Api) -> str:
    return await api.staff("root", [Grant(Role.PLATFORM_ADMIN)])


async def test_malformed_json_is_refused_with_a_stable_code(api: Api) -> None:
    token = await _admin(api)
    r = await api.call("POST", "/api/admin/v1/companies", token, content=b'{"name": "x",')
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "malformed_json"
    assert r.json()["error"]["fields"]["$"]


async def test_wrong_types_and_unknown_fields_name_every_field_path(api: Api) -> None:
    token = await _admin(api)
    r = await api.post("/api/admin/v1/communities", token,
                       json={"name": 5, "area_id": "ar_x", "colour": "red",
                             "rules": {"count_parking": "yes"}})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "invalid_input"
    assert error["message"]
    assert error["fields"] == {"name": "类型应为字符串", "colour": "不允许的字段",
                               "rules.count_parking": "类型应为布尔值"}
    assert await api.services.store.db["communities"].count_documents({}) == 0


async def test_missing_required_field_is_named(api: Api) -> None:
    token = await _admin(api)
    r = await api.post("/api/admin/v1/companies", token, json={"name": "甲物业"})
    assert r.status_code == 400
    assert r.json()["error"]["fields"] == {"credit_code": "必填"}


async def test_oversize_body_is_refused_with_413_and_nothing_written(api: Api) -> None:
    token = await _admin(api)
    big = {"name": "x" * 70_000, "credit_code": "91370481MA3CAAAAA1"}
    r = await api.post("/api/admin/v1/companies", token, json=big)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"
    assert await api.services.store.db["companies"].count_documents({}) == 0


async def test_chunked_oversize_body_is_refused_with_413(api: Api) -> None:
    token = await _admin(api)

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b"x" * 8192

    r = await api.call("POST", "/api/admin/v1/companies", token, content=chunks())
    assert r.status_code == 413


async def test_unknown_route_and_wrong_method_answer_json(api: Api) -> None:
    r = await api.get("/api/mp/v1/no-such-thing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "route_not_found"
    r = await api.call("PATCH", "/healthz")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


async def test_request_id_is_echoed_or_generated(api: Api) -> None:
    r = await api.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert r.headers["X-Request-Id"] == "abc-123"
    r = await api.get("/healthz", headers={"X-Request-Id": "bad id with spaces"})
    assert r.headers["X-Request-Id"] != "bad id with spaces" and len(r.headers["X-Request-Id"]) == 16


async def test_unexpected_query_parameters_are_refused(api: Api) -> None:
    r = await api.get("/healthz?debug=1")
    assert r.status_code == 400 and r.json()["error"]["fields"] == {"debug": "不允许的参数"}


async def test_every_route_is_documented_in_openapi(api: Api) -> None:
    doc = (await api.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    routed = {(e.method, e.path) for e in api.services.extra["endpoints"]}
    assert routed == documented
    for path in doc["paths"]:
        assert path.startswith(("/api/mp/v1/", "/api/admin/v1/", "/api/open/v1/", "/api/pay/v1/",
                                "/healthz", "/readyz", "/openapi.json")), path


async def test_openapi_request_schemas_are_the_validating_ones(api: Api) -> None:
    doc = (await api.get("/openapi.json")).json()
    op = doc["paths"]["/api/admin/v1/companies"]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    endpoint = next(e for e in api.services.extra["endpoints"]
                    if e.path == "/api/admin/v1/companies" and e.method == "POST")
    assert schema == json.loads(json.dumps(endpoint.body))


async def test_internal_errors_never_leak_a_traceback(api: Api, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    await build_world(api.services)
    token = await _admin(api)

    async def boom(*a, **k):  # type: ignore[no-untyped-def]
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(api.services.registry, "counts", boom)
    r = await api.get("/api/admin/v1/communities/cm_a", token)
    assert r.status_code == 500
    assert r.json() == {"error": {"code": "internal_error", "message": "服务器内部错误，请稍后再试"}}
    assert "passwd" not in r.text
