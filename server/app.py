"""make_app: the Tornado application for given settings, store and outside parties."""

from __future__ import annotations

from typing import Any

import tornado.web

from handlers.base import Endpoint, EndpointHandler, NotFoundHandler
from server.openapi import build_openapi
from server.routes import all_endpoints
from server.services import Services
from server.validation import Schema


def make_app(services: Services, extra_endpoints: tuple[Endpoint, ...] = ()) -> tornado.web.Application:
    """Build the application; nothing connects here (the store client is lazy)."""
    endpoints = all_endpoints(extra_endpoints)
    services.extra["openapi"] = build_openapi(endpoints)
    services.extra["endpoints"] = endpoints
    by_path: dict[str, dict[str, Endpoint]] = {}
    schemas: dict[int, tuple[Schema | None, Schema | None]] = {}
    for e in endpoints:
        by_path.setdefault(e.path, {})[e.method] = e
        schemas[id(e)] = (Schema(e.body) if e.body is not None else None,
                          Schema(e.query) if e.query is not None else None)
    handlers: list[Any] = []
    # Literal paths first, so /units/lookup never falls into /units/{unit_id}.
    for path in sorted(by_path, key=lambda p: (p.count("{"), p)):
        pattern = by_path[path][next(iter(by_path[path]))].pattern
        handlers.append((pattern, EndpointHandler,
                         {"endpoints": by_path[path], "services": services, "schemas": schemas}))
    return tornado.web.Application(
        handlers,
        default_handler_class=NotFoundHandler,
        default_handler_args={"services": services},
        compress_response=True,
        xheaders=True,
        services=services,
    )
