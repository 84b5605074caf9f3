"""The platform's everyday duties — disclosures, ratings, credit, complaints — and their sweep.

Built once per process (`build_duties`) and reached from handlers as `services.duties`.

The sweep is safe to run in every process at once, with no lease: opening a rating period is
an idempotent upsert of a deterministic id, and each escalation is a guarded transition (state,
level and version in the filter), so two processes sweeping together still change each thing
exactly once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from server.attachments import Attachments
from server.audit import Audit
from server.clock import Clock
from server.complaints import Complaints
from server.credit import Credit, make_formula
from server.disclosures import Disclosures, Signer, disclosure_keyring
from server.ratings import Ratings
from server.registry import Registry
from settings import Settings

log = logging.getLogger("server.duties")
SWEEP_SECONDS = 60


@dataclass
class Duties:
    """Disclosures, ratings, credit and complaints of one process."""

    attachments: Attachments
    signer: Signer
    disclosures: Disclosures
    ratings: Ratings
    complaints: Complaints
    credit: Credit
    registry: Registry

    async def sweep(self) -> dict[str, int]:
        """One scheduled pass: open due rating periods, escalate overdue complaints."""
        opened = await self.ratings.open_due_periods(await self.registry.communities({}))
        escalated = await self.complaints.escalate_overdue()
        if opened or escalated:
            log.info("sweep", extra={"rating_periods_opened": opened, "escalated": escalated})
        return {"rating_periods_opened": opened, "escalated": escalated}

    async def sweep_forever(self, interval: float = SWEEP_SECONDS) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:  # the next pass retries; one failure must not stop the loop
                log.exception("sweep failed")
            await asyncio.sleep(interval)


def build_duties(settings: Settings, db: AsyncDatabase, clock: Clock, registry: Registry,
                 audit: Audit, wechat: Any) -> Duties:
    if not settings.disclosure_signing_key:
        log.warning("DISCLOSURE_SIGNING_KEY not set: signing with a key generated for this run")
    signer = Signer(disclosure_keyring(settings.disclosure_signing_key.reveal()))
    attachments = Attachments(db, clock)
    disclosures = Disclosures(db, clock, audit, attachments, signer,
                              settings.disclosure_deadline_days)
    ratings = Ratings(db, clock, registry, audit, wechat, settings.rating_window_days,
                      settings.rating_dimensions)
    complaints = Complaints(db, clock, registry, audit, attachments, wechat,
                            settings.complaint_respond_hours, settings.complaint_resolve_hours,
                            settings.complaint_template_id)
    formula = make_formula(settings.credit_weights, settings.credit_red_min,
                           settings.credit_black_below)
    credit = Credit(db, clock, registry, ratings, complaints, disclosures, audit, signer, formula,
                    settings.rating_window_days)
    return Duties(attachments, signer, disclosures, ratings, complaints, credit, registry)
