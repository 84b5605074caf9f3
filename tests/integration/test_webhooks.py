"""Webhooks: signed, retried with back-off, ordered per subject, dead-lettered, replayed once."""

from __future__ import annotations

import asyncio
from typing import Any

from server.clock import ManualClock
from server.outbox import EventType, emit
from server.webhooks import Webhooks
from tests.integration.conftest import City, Receiver

A = "/api/admin/v1/integration"


async def subscribe(city: City, receiver: Receiver, *events: str) -> dict[str, Any]:
    receiver.secret = city.client.secret
    r = await city.api.post(f"{A}/clients/{city.client.key_id}/webhooks", city.admin,
                            json={"url": receiver.url, "events": list(events)})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def escalation(city: City, complaint: str, step: int, community: str = "cm_a") -> str:
    services = city.api.services
    eid = await emit(services.store.db, services.clock, EventType.COMPLAINT_ESCALATED,
                     f"complaint:{complaint}", f"{complaint}#{step}",
                     {"complaint_id": complaint, "level": ["shequ", "street"][step % 2]},
                     community)
    assert eid
    return eid


async def test_a_receiver_failing_three_times_gets_the_event_on_the_fourth(
        city: City, receiver: Receiver, clock: ManualClock) -> None:
    hooks = city.api.services.webhooks
    await subscribe(city, receiver, "complaint.escalated")
    receiver.fail_first = 3
    event = await escalation(city, "cp_1", 1)
    assert (await hooks.tick())["failed"] == 1
    assert (await hooks.tick())["failed"] == 0            # not due yet: back-off holds
    for wait, outcome in ((1, "failed"), (5, "failed"), (30, "delivered")):
        clock.advance(seconds=wait - 0.001)
        assert (await hooks.tick())[outcome] == 0          # a moment early: nothing
        clock.advance(seconds=0.001)
        assert (await hooks.tick())[outcome] == 1
    assert [r["headers"]["X-Webhook-Attempt"] for r in receiver.requests] == ["1", "2", "3", "4"]
    assert {r["headers"]["X-Webhook-Id"] for r in receiver.requests} == {event}
    assert receiver.processed[event]["count"] == 1
    clock.advance(hours=1)
    await hooks.tick()
    assert len(receiver.requests) == 4                     # delivered: never sent again
    d = await city.api.services.store.db["webhook_deliveries"].find_one({"event_id": event})
    assert d["state"] == "delivered" and d["attempts"] == 4


async def test_a_receiver_down_for_good_leaves_a_dead_letter_that_replays_once(
        city: City, receiver: Receiver, clock: ManualClock) -> None:
    hooks = city.api.services.webhooks
    await subscribe(city, receiver, "complaint.escalated")
    receiver.down = True
    event = await escalation(city, "cp_2", 1)
    for wait in (0, 1, 5, 30):
        clock.advance(seconds=wait)
        await hooks.tick()
    assert len(receiver.requests) == 4
    clock.advance(days=1)
    await hooks.tick()
    assert len(receiver.requests) == 4                     # no fifth attempt
    r = await city.api.get(f"{A}/dead-letters?client_id={city.client.key_id}", city.admin)
    assert r.status_code == 200, r.text
    [dead] = r.json()["items"]
    assert dead["event_id"] == event and dead["state"] == "dead"
    assert dead["attempts"] == 4 and dead["last_error"] == "HTTP 503"

    receiver.down = False
    replays = await asyncio.gather(*(city.api.post(f"{A}/deliveries/{dead['id']}/replay",
                                                   city.admin) for _ in range(3)))
    assert sorted(r.status_code for r in replays) == [200, 409, 409]
    assert {r.json()["error"]["code"] for r in replays if r.status_code == 409} == {
        "delivery_not_dead"}
    await hooks.tick()
    await hooks.tick()
    clock.advance(hours=1)
    await hooks.tick()
    assert receiver.processed[event]["count"] == 1 and len(receiver.requests) == 5
    r = await city.api.get(f"{A}/dead-letters?client_id={city.client.key_id}", city.admin)
    assert r.json()["items"] == []
    r = await city.api.post(f"{A}/deliveries/{dead['id']}/replay", city.admin)
    assert r.status_code == 409


async def test_events_of_one_subject_arrive_in_order(
        city: City, receiver: Receiver, clock: ManualClock) -> None:
    hooks = city.api.services.webhooks
    await subscribe(city, receiver, "complaint.escalated")
    receiver.fail_first = 1
    first = await escalation(city, "cp_3", 1)
    second = await escalation(city, "cp_3", 2)
    other = await escalation(city, "cp_4", 1)
    await hooks.tick()   # first fails; second must wait for it; other subject goes
    sent = [r["headers"]["X-Webhook-Id"] for r in receiver.requests]
    assert second not in sent and first in sent and other in sent
    clock.advance(seconds=1)
    await hooks.tick()   # first delivered; second still behind it in this pass
    await hooks.tick()
    ok = [r["headers"]["X-Webhook-Id"] for r in receiver.requests]
    assert ok.index(second) > max(i for i, e in enumerate(ok) if e == first)
    assert set(receiver.processed) == {first, second, other}


async def test_a_dead_event_does_not_hold_its_subject_for_ever(
        city: City, receiver: Receiver, clock: ManualClock) -> None:
    hooks = city.api.services.webhooks
    await subscribe(city, receiver, "complaint.escalated")
    receiver.fail_first = 4
    first = await escalation(city, "cp_5", 1)
    second = await escalation(city, "cp_5", 2)
    for wait in (0, 1, 5, 30):
        clock.advance(seconds=wait)
        await hooks.tick()
    assert second not in {r["headers"]["X-Webhook-Id"] for r in receiver.requests}
    await hooks.tick()
    assert set(receiver.processed) == {second}
    d = await city.api.services.store.db["webhook_deliveries"].find_one({"event_id": first})
    assert d["state"] == "dead"


async def test_two_processes_delivering_together_send_each_event_once(
        city: City, receiver: Receiver, clock: ManualClock) -> None:
    services = city.api.services
    await subscribe(city, receiver, "complaint.escalated")
    events = [await escalation(city, f"cp_p{i}", 1) for i in range(20)]
    other = Webhooks(services.store.db, clock, services.integration, services.audit,
                     services.settings.webhook_retry_schedule, 2, True)
    try:
        await asyncio.gather(services.webhooks.tick(), other.tick(), services.webhooks.tick())
    finally:
        await other.aclose()
    assert len(receiver.requests) == 20
    assert {e: receiver.processed[e]["count"] for e in events} == {e: 1 for e in events}


async def test_only_events_in_the_clients_scope_and_subscription_are_sent(
        city: City, receiver: Receiver) -> None:
    hooks = city.api.services.webhooks
    await subscribe(city, receiver, "complaint.escalated")
    mine = await escalation(city, "cp_6", 1, "cm_b")
    await escalation(city, "cp_7", 1, "cm_c")   # the other district
    services = city.api.services
    await emit(services.store.db, services.clock, EventType.BALLOT_PUBLISHED, "ballot:bl_x",
               "bl_x", {"ballot_id": "bl_x"}, "cm_a")  # not subscribed
    await hooks.tick()
    assert set(receiver.processed) == {mine}


async def test_a_real_domain_event_is_delivered_with_its_data(
        city: City, receiver: Receiver) -> None:
    from server.auth import Grant, Role, StaffUser
    from server.disclosures import Kind, Publisher

    services = city.api.services
    await subscribe(city, receiver, "disclosure.published")
    community = await services.registry.community("cm_a")
    staff = StaffUser("st_x", "pa", "pa", (Grant(Role.PROPERTY, company_id=community.company_id),))
    published = await services.duties.disclosures.publish(
        staff, community, Publisher.PROPERTY, Kind.COMPLAINT_CHANNELS, "",
        {"channels": [{"kind": "phone", "value": "0632-5550000"}]}, [], None, "")
    await services.webhooks.tick()
    [(event_id, got)] = receiver.processed.items()
    import json

    body = json.loads(got["body"])
    assert body["id"] == event_id and body["type"] == "disclosure.published" and body["seq"] == 1
    assert body["data"]["id"] == published["id"] and body["data"]["signature"]
