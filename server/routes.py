"""The whole HTTP surface on one screen: every endpoint module, in order."""

from __future__ import annotations

from handlers import bindings, health, registry, session
from handlers.base import Endpoint
from handlers import complaints, disclosures, ratings  # issue 5: 三公开, rating, complaints
from handlers import feeorders, fees, paycallback  # issue 4: fees and WeChat Pay
from handlers import voting  # issue 3: owner e-voting
from handlers import integration_admin, open_api, reports  # issue 6: city platform, reports

MODULES = (health, session, registry, bindings)
MODULES = (*MODULES, disclosures, ratings, complaints)
MODULES = (*MODULES, fees, feeorders, paycallback)
MODULES = (*MODULES, voting)
MODULES = (*MODULES, open_api, integration_admin, reports)


def all_endpoints(extra: tuple[Endpoint, ...] = ()) -> list[Endpoint]:
    endpoints = [e for module in MODULES for e in module.endpoints] + list(extra)
    seen: set[tuple[str, str]] = set()
    for e in endpoints:
        key = (e.method, e.path)
        if key in seen:
            raise RuntimeError(f"duplicate route {e.method} {e.path}")
        seen.add(key)
    return endpoints
