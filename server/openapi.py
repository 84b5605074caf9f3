"""/openapi.json built from the endpoint table: the schemas that validate are the ones documented."""

from __future__ import annotations

import re
from typing import Any

from handlers.base import Auth, Endpoint

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {
            "code": {"type": "string", "description": "稳定的错误码"},
            "message": {"type": "string", "description": "面向用户的中文说明"},
            "fields": {"type": "object", "additionalProperties": {"type": "string"},
                       "description": "字段路径 → 原因"},
        },
    }},
}

_SECURITY = {
    Auth.MP: [{"mpSession": []}],
    Auth.ADMIN: [{"adminSession": []}],
    Auth.OPEN: [{"openSignature": []}],
    Auth.CALLBACK: [{"wechatpaySignature": []}],
    Auth.PUBLIC: [],
}
_ERRORS = {
    Auth.PUBLIC: ("400", "413", "503"),
    Auth.MP: ("400", "401", "403", "404", "409", "413", "503"),
    Auth.ADMIN: ("400", "401", "403", "404", "409", "413", "503"),
    Auth.OPEN: ("400", "401", "403", "404", "429", "503"),
    Auth.CALLBACK: ("400", "401", "500"),
}


def _operation_id(e: Endpoint) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", e.path.replace("{", "").replace("}", "")).strip("_")
    return f"{e.method.lower()}_{words}"


def _operation(e: Endpoint) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": p, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for p in e.path_params
    ]
    if e.query:
        required = set(e.query.get("required", []))
        params += [{"name": name, "in": "query", "required": name in required, "schema": schema}
                   for name, schema in e.query.get("properties", {}).items()]
    op: dict[str, Any] = {
        "operationId": _operation_id(e),
        "summary": e.summary,
        "tags": [e.tag] if e.tag else [],
        "security": _SECURITY[e.auth],
        "responses": {},
    }
    if params:
        op["parameters"] = params
    if e.body is not None:
        op["requestBody"] = {"required": True,
                             "content": {"application/json": {"schema": dict(e.body)}}}
    if e.status == 204:
        op["responses"]["204"] = {"description": "成功，无内容"}
    elif e.raw_response:
        op["responses"][str(e.status)] = {"description": "成功",
                                          "content": {e.raw_response: {"schema": {}}}}
    else:
        op["responses"][str(e.status)] = {
            "description": "成功",
            "content": {"application/json": {"schema": dict(e.response or {"type": "object"})}}}
    for status in _ERRORS[e.auth]:
        op["responses"][status] = {"$ref": "#/components/responses/Error"}
    return op


def build_openapi(endpoints: list[Endpoint], version: str = "1.0.0") -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        paths.setdefault(e.path, {})[e.method.lower()] = _operation(e)
    return {
        "openapi": "3.1.0",
        "info": {"title": "智慧物业综合管理平台 API", "version": version,
                 "description": "小程序 /api/mp/v1，管理端 /api/admin/v1，"
                                "城市平台 /api/open/v1，支付回调 /api/pay/v1"},
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "responses": {"Error": {"description": "错误",
                                    "content": {"application/json": {
                                        "schema": {"$ref": "#/components/schemas/Error"}}}}},
            "securitySchemes": {
                "mpSession": {"type": "http", "scheme": "bearer",
                              "description": "POST /api/mp/v1/session 返回的令牌"},
                "adminSession": {"type": "http", "scheme": "bearer",
                                 "description": "POST /api/admin/v1/session 返回的令牌"},
                "openSignature": {"type": "apiKey", "in": "header", "name": "X-Open-Signature",
                                  "description": "HMAC-SHA256 签名，见 docs/integration.md"},
                "wechatpaySignature": {"type": "apiKey", "in": "header",
                                       "name": "Wechatpay-Signature"},
            },
        },
    }
