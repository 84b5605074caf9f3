"""Staff sign-in with lock-out; binding requests decided with audited reasons; invites."""

from __future__ import annotations

from server.auth import Grant, Role
from server.clock import ManualClock
from tests.apiclient import Api
from tests.world import build_world, unit_id


async def test_password_is_argon2id_and_lockout_after_repeated_failures(api: Api, clock: ManualClock) -> None:
    await api.staff("clerk", [Grant(Role.COMMITTEE, community_id="cm_a")], password="Right-pass-123")
    doc = await api.services.store.db["staff"].find_one({"username": "clerk"})
    assert doc is not None and doc["password_hash"].startswith("$argon2id$")
    for _ in range(3):  # LOGIN_MAX_FAILURES=3 in tests
        r = await api.post("/api/admin/v1/session", json={"username": "clerk", "password": "wrong"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_credentials"
    r = await api.post("/api/admin/v1/session", json={"username": "clerk", "password": "Right-pass-123"})
    assert r.status_code == 423 and r.json()["error"]["code"] == "account_locked"
    clock.advance(seconds=api.services.settings.login_lock_seconds + 1)
    r = await api.post("/api/admin/v1/session", json={"username": "clerk", "password": "Right-pass-123"})
    assert r.status_code == 201


async def test_unknown_user_gets_the_same_answer_as_a_wrong_password(api: Api) -> None:
    r = await api.post("/api/admin/v1/session", json={"username": "nobody", "password": "x"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_credentials"


async def test_binding_request_is_approved_by_the_committee_with_an_audited_reason(api: Api) -> None:
    await build_world(api.services)
    user = await api.mp_login("newcomer")
    lookup = await api.get("/api/mp/v1/communities/cm_a/unit-lookup?building=1号楼&number=103", user)
    assert lookup.status_code == 200
    unit = lookup.json()["unit_id"]
    r = await api.post("/api/mp/v1/binding-requests", user,
                       json={"unit_id": unit, "owner_name": "业主103", "id_last4": "1039"[:4],
                             "evidence_sha256": "ab" * 32, "note": "房产证照片"})
    assert r.status_code == 201 and r.json()["status"] == "pending"
    binding_id = r.json()["id"]
    other = await api.staff("c_b", [Grant(Role.COMMITTEE, community_id="cm_b")])
    r = await api.post(f"/api/admin/v1/binding-requests/{binding_id}/decision", other,
                       json={"approve": True, "reason": "核验无误"})
    assert r.status_code == 403
    committee = await api.staff("c_a", [Grant(Role.COMMITTEE, community_id="cm_a")])
    pending = (await api.get("/api/admin/v1/communities/cm_a/binding-requests", committee)).json()
    assert [p["id"] for p in pending["requests"]] == [binding_id]
    owner_id = (await api.services.registry.unit(unit))["owner_ids"][0]
    r = await api.post(f"/api/admin/v1/binding-requests/{binding_id}/decision", committee,
                       json={"approve": True, "reason": "已核验房产证", "owner_id": owner_id})
    assert r.status_code == 200 and r.json()["status"] == "active"
    r = await api.post(f"/api/admin/v1/binding-requests/{binding_id}/decision", committee,
                       json={"approve": False, "reason": "again"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "binding_already_decided"
    audit = (await api.get("/api/admin/v1/communities/cm_a/audit", committee)).json()["entries"]
    approve = next(e for e in audit if e["action"] == "binding.approve")
    assert approve["reason"] == "已核验房产证" and approve["actor"]["name"] == "c_a"


async def test_rejection_needs_a_reason_and_is_recorded(api: Api) -> None:
    await build_world(api.services)
    user = await api.mp_login("claimant")
    r = await api.post("/api/mp/v1/binding-requests", user,
                       json={"unit_id": unit_id("cm_a", "1号楼", "104"), "owner_name": "冒名",
                             "id_last4": "0000"})
    committee = await api.staff("c_a", [Grant(Role.COMMITTEE, community_id="cm_a")])
    path = f"/api/admin/v1/binding-requests/{r.json()['id']}/decision"
    bad = await api.post(path, committee, json={"approve": False})
    assert bad.status_code == 400 and bad.json()["error"]["fields"] == {"reason": "必填"}
    r = await api.post(path, committee, json={"approve": False, "reason": "与名册不符"})
    assert r.json()["status"] == "rejected" and r.json()["reason"] == "与名册不符"


async def test_family_member_joins_by_invite_without_voting_rights(api: Api) -> None:
    await build_world(api.services)
    owner = await api.mp_owner("alice", "13900000101")
    unit = unit_id("cm_a", "1号楼", "101")
    r = await api.post(f"/api/mp/v1/units/{unit}/invites", owner, json={"role": "tenant"})
    assert r.status_code == 201
    tenant = await api.mp_login("tenant")
    r = await api.post(f"/api/mp/v1/invites/{r.json()['code']}/accept", tenant)
    assert r.status_code == 201
    assert r.json()["role"] == "tenant" and r.json()["can_pay"] is False
    again = await api.post(f"/api/mp/v1/invites/{r.json()['id']}/accept", tenant)
    assert again.status_code == 404


async def test_concurrent_password_guesses_cannot_slip_past_the_lockout(api: Api) -> None:
    import asyncio

    await api.staff("target", [Grant(Role.COMMITTEE, community_id="cm_a")], password="Right-pass-123")
    guesses = await asyncio.gather(*[
        api.post("/api/admin/v1/session", json={"username": "target", "password": f"guess-{i}"})
        for i in range(12)])
    assert {r.status_code for r in guesses} <= {401, 423}
    r = await api.post("/api/admin/v1/session", json={"username": "target", "password": "Right-pass-123"})
    assert r.status_code == 423  # 12 failures against a limit of 3: locked
