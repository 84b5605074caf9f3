"""A second (and third) server process for the escalation test: one sweep at a given instant.

    python -m tests.community.sweeper_process MONGODB_URI DB_NAME ISO_TIME
prints how many complaints this process escalated.
"""

from __future__ import annotations

import asyncio
import sys

from server.attachments import Attachments
from server.audit import Audit
from server.clock import ManualClock, parse_time
from server.complaints import Complaints
from server.db import connect
from server.registry import Registry


async def main(uri: str, db_name: str, at: str) -> int:
    store = connect(uri, db_name)
    clock = ManualClock(parse_time(at))
    registry = Registry(store.db, clock)
    audit = Audit(store.db, clock)
    complaints = Complaints(store.db, clock, registry, audit, Attachments(store.db, clock),
                            wechat=None, respond_hours=24, resolve_hours=72, template_id="")
    try:
        return await complaints.escalate_overdue()
    finally:
        await store.close()


if __name__ == "__main__":
    print(asyncio.run(main(*sys.argv[1:4])), flush=True)
