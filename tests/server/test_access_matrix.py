"""Users of community A cannot read or change community B; officials see only their area."""

from __future__ import annotations

import pytest

from server.auth import Grant, Role
from tests.apiclient import Api
from tests.world import build_world, unit_id

READS_B = [
    "/api/admin/v1/communities/cm_b",
    "/api/admin/v1/communities/cm_b/units",
    "/api/admin/v1/communities/cm_b/owners",
    "/api/admin/v1/communities/cm_b/buildings",
    "/api/admin/v1/communities/cm_b/audit",
    "/api/admin/v1/communities/cm_b/binding-requests",
]


@pytest.mark.parametrize("grant", [
    Grant(Role.COMMITTEE, community_id="cm_a"),
    Grant(Role.OFFICIAL, area_id="ar_d2"),  # the other district
], ids=["committee_of_a", "official_of_other_district"])
async def test_staff_of_a_cannot_read_or_change_b(api: Api, grant: Grant) -> None:
    world = await build_world(api.services)
    token = await api.staff("staff_a", [grant])
    for path in READS_B:
        r = await api.get(path, token)
        assert r.status_code == 403, (path, r.text)
        assert r.json()["error"]["code"] == "out_of_scope"
    r = await api.post("/api/admin/v1/communities/cm_b/roster", token,
                       json={"format": "csv", "content_base64": "eA=="})
    assert r.status_code == 403
    r = await api.call("PUT", "/api/admin/v1/communities/cm_b/company", token,
                       json={"company_id": world.company_a, "reason": "x"})
    assert r.status_code == 403
    listed = (await api.get("/api/admin/v1/communities", token)).json()["communities"]
    assert "cm_b" not in {c["id"] for c in listed}


async def test_property_staff_see_only_the_communities_their_company_serves(api: Api) -> None:
    world = await build_world(api.services)
    token = await api.staff("clerk_a", [Grant(Role.PROPERTY, company_id=world.company_a)])
    listed = (await api.get("/api/admin/v1/communities", token)).json()["communities"]
    assert [c["id"] for c in listed] == ["cm_a"]
    assert (await api.get("/api/admin/v1/communities/cm_a/units", token)).status_code == 200
    assert (await api.get("/api/admin/v1/communities/cm_b/units", token)).status_code == 403


async def test_official_sees_only_their_area(api: Api) -> None:
    await build_world(api.services)
    token = await api.staff("district1", [Grant(Role.OFFICIAL, area_id="ar_d1")])
    listed = (await api.get("/api/admin/v1/communities", token)).json()["communities"]
    assert sorted(c["id"] for c in listed) == ["cm_a", "cm_b"]
    assert (await api.get("/api/admin/v1/communities/cm_c", token)).status_code == 403
    assert (await api.get("/api/admin/v1/areas/ar_d1", token)).status_code == 200
    assert (await api.get("/api/admin/v1/areas/ar_d2", token)).status_code == 403
    assert (await api.get("/api/admin/v1/areas/ar_city", token)).status_code == 403


async def test_owner_cannot_see_another_owners_unit_or_act_for_it(api: Api) -> None:
    await build_world(api.services)
    alice = await api.mp_owner("alice", "13900000101")   # owner of cm_a 1号楼 101
    bob = await api.mp_owner("bob", "13900000102")       # owner of cm_a 1号楼 102
    alice_unit, bob_unit = unit_id("cm_a", "1号楼", "101"), unit_id("cm_a", "1号楼", "102")
    assert (await api.get(f"/api/mp/v1/units/{alice_unit}", alice)).status_code == 200
    r = await api.get(f"/api/mp/v1/units/{bob_unit}", alice)
    assert r.status_code == 404
    r = await api.post(f"/api/mp/v1/units/{bob_unit}/invites", alice, json={"role": "family"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_unit_owner"
    me = (await api.get("/api/mp/v1/me", bob)).json()
    assert [b["unit_id"] for b in me["bindings"]] == [bob_unit]


async def test_owners_cannot_use_the_admin_api_and_staff_cannot_use_the_mp_api(api: Api) -> None:
    await build_world(api.services)
    owner = await api.mp_owner("alice", "13900000101")
    staff = await api.staff("c_a", [Grant(Role.COMMITTEE, community_id="cm_a")])
    assert (await api.get("/api/admin/v1/communities/cm_a", owner)).status_code == 401
    assert (await api.get("/api/mp/v1/me", staff)).status_code == 401
