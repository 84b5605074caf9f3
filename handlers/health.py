"""Liveness, readiness and the API description."""

from __future__ import annotations

from typing import Any

from handlers.base import Auth, Endpoint, Reply, Request
from server.errors import StoreUnavailable
from server.validation import obj, string


async def healthz(req: Request) -> Any:
    return {"status": "alive"}


async def readyz(req: Request) -> Any:
    # The ping has its own 1.5 s limit, so the answer comes within 2 s either way.
    try:
        await req.services.store.ping(timeout=1.5)
    except StoreUnavailable as exc:
        return Reply(body=exc.to_json(), status=503)
    return {"status": "ready"}


async def openapi(req: Request) -> Any:
    return req.services.extra["openapi"]


STATUS = obj({"status": string()})

endpoints = [
    Endpoint("GET", "/healthz", healthz, Auth.PUBLIC, "进程存活检查", STATUS, tag="ops"),
    Endpoint("GET", "/readyz", readyz, Auth.PUBLIC, "就绪检查（存储可达）", STATUS, tag="ops"),
    Endpoint("GET", "/openapi.json", openapi, Auth.PUBLIC, "OpenAPI 3.1 接口描述",
             {"type": "object"}, tag="ops"),
]
