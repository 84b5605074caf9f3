"""Signed requests: the guide's code is accepted; replays, stale times, bad signatures, scope and
rate are refused with their own codes."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from server.clock import ManualClock
from tests.integration.conftest import City, OpenClient, guide_sample, nonce

P = "/api/open/v1"


def code(r) -> str:  # type: ignore[no-untyped-def]
    return str(r.json()["error"]["code"])


async def test_a_request_signed_with_the_guides_python_code_is_accepted(city: City) -> None:
    r = await city.client.get(P + "/communities", {"area_id": "ar_d1", "limit": 50})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [c["id"] for c in items] == ["cm_a", "cm_b"]  # cm_c lies in the other district
    assert items[0]["counts"] == {"buildings": 1, "units": 6, "owners": 6}
    assert r.json()["next_cursor"] is None


async def test_the_guides_curl_recipe_produces_the_same_signature(city: City) -> None:
    """Run the guide's bash/openssl lines (without the curl call) and compare with Python's."""
    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    script = guide_sample("curl-sign").split("curl -sS")[0]
    script += 'printf "%s %s %s" "$TS" "$NONCE" "$SIG"\n'
    out = subprocess.run(["bash", "-c", script.replace('SECRET="sk_..."', 'SECRET="sk_demo"')],
                         capture_output=True, text=True, check=True).stdout.split()
    ts, n, sig = out
    _, headers = city.client.sign("ok_3f2a9c0d1e2b4a5c", "sk_demo", "GET",
                                  "/api/open/v1/communities",
                                  {"area_id": "ar_tengzhou", "limit": 50}, timestamp=ts, nonce=n)
    assert headers["X-Open-Signature"] == sig


async def test_a_replayed_request_is_refused_with_nonce_reused(city: City) -> None:
    n = nonce()
    first = await city.client.get(P + "/communities", nonce=n)
    assert first.status_code == 200
    again = await city.client.get(P + "/communities", nonce=n)
    assert again.status_code == 401 and code(again) == "nonce_reused"
    assert again.json()["error"]["message"] == "随机串已使用（疑似重放请求）"


async def test_stale_timestamps_are_refused_either_way(city: City, clock: ManualClock) -> None:
    now = clock.now().timestamp()
    for ts in (now - 301, now + 301):
        r = await city.client.get(P + "/communities", timestamp=ts)
        assert r.status_code == 401 and code(r) == "timestamp_stale", r.text
    r = await city.client.get(P + "/communities", timestamp=now - 299)
    assert r.status_code == 200


async def test_a_replay_after_the_window_is_stale(city: City, clock: ManualClock) -> None:
    ts, n = clock.now().timestamp(), nonce()
    assert (await city.client.get(P + "/communities", timestamp=ts, nonce=n)).status_code == 200
    clock.advance(seconds=601)
    await city.api.services.integration.sweep()  # the nonce is forgotten...
    r = await city.client.get(P + "/communities", timestamp=ts, nonce=n)
    assert code(r) == "timestamp_stale"  # ...but its timestamp no longer passes


async def test_tampering_unknown_clients_and_missing_headers_have_their_own_codes(
        city: City) -> None:
    query, headers = city.client.sign(city.client.key_id, city.client.secret, "GET",
                                      P + "/communities", {"area_id": "ar_d1"},
                                      timestamp=city.client.clock.now().timestamp())
    r = await city.api.http.get(P + "/communities?area_id=ar_d2", headers=headers)
    assert r.status_code == 401 and code(r) == "signature_invalid"
    wrong = OpenClient(city.api, city.client.key_id, "sk_wrong", city.client.clock)
    assert code(await wrong.get(P + "/communities")) == "signature_invalid"
    stranger = OpenClient(city.api, "ok_0000000000000000", "sk_x", city.client.clock)
    r = await stranger.get(P + "/communities")
    assert r.status_code == 401 and code(r) == "client_unknown"
    r = await city.api.get(P + "/communities")
    assert r.status_code == 401 and code(r) == "signature_missing"
    assert set(r.json()["error"]["fields"]) == {"X-Open-Key", "X-Open-Timestamp",
                                                "X-Open-Nonce", "X-Open-Signature"}


async def test_requests_outside_the_clients_scope_are_refused(city: City) -> None:
    r = await city.client.get(P + "/communities/cm_c")
    assert r.status_code == 403 and code(r) == "out_of_scope"
    r = await city.client.get(P + "/communities", {"area_id": "ar_d2"})
    assert r.status_code == 403 and code(r) == "out_of_scope"
    r = await city.client.get(P + "/complaint-stats", {"area_id": "ar_city"})
    assert r.status_code == 403 and code(r) == "out_of_scope"
    one = await city.client_for(community_ids=["cm_b"])
    r = await one.get(P + "/communities")
    assert [c["id"] for c in r.json()["items"]] == ["cm_b"]
    assert code(await one.get(P + "/communities/cm_a")) == "out_of_scope"
    assert code(await one.get(P + "/fee-stats", {"area_id": "ar_s1", "period": "2026-05"})) \
        == "out_of_scope"


async def test_a_disabled_client_is_refused(city: City) -> None:
    r = await city.api.call("PUT", f"/api/admin/v1/integration/clients/{city.client.key_id}/status",
                            city.admin, json={"status": "disabled"})
    assert r.status_code == 200, r.text
    assert code(await city.client.get(P + "/communities")) == "client_disabled"


async def test_rate_limit_is_per_client_per_minute(city: City, clock: ManualClock) -> None:
    clock.set(clock.now().replace(second=5))
    slow = await city.client_for(area_ids=["ar_d1"], rate_per_minute=3)
    for _ in range(3):
        assert (await slow.get(P + "/communities")).status_code == 200
    r = await slow.get(P + "/communities")
    assert r.status_code == 429 and code(r) == "rate_limited"
    assert r.json()["error"]["fields"] == {"retry_after_seconds": "55"}
    assert (await city.client.get(P + "/communities")).status_code == 200  # others unaffected
    clock.advance(seconds=60)
    assert (await slow.get(P + "/communities")).status_code == 200


async def test_the_secret_is_shown_once_and_stored_encrypted(city: City) -> None:
    doc = await city.api.services.store.db["open_clients"].find_one({"_id": city.client.key_id})
    assert city.client.secret not in str(doc)
    r = await city.api.get("/api/admin/v1/integration/clients", city.admin)
    assert city.client.secret not in r.text and "secret" not in r.json()["clients"][0]
    r = await city.api.post(f"/api/admin/v1/integration/clients/{city.client.key_id}/secret",
                            city.admin)
    new = r.json()["secret"]
    assert code(await city.client.get(P + "/communities")) == "signature_invalid"
    rotated = OpenClient(city.api, city.client.key_id, new, city.client.clock)
    assert (await rotated.get(P + "/communities")).status_code == 200


async def test_an_official_registers_clients_only_inside_their_area(city: City) -> None:
    from server.auth import Grant, Role

    official = await city.api.staff("d1", [Grant(Role.OFFICIAL, area_id="ar_d1")])
    r = await city.api.post("/api/admin/v1/integration/clients", official,
                            json={"name": "区平台", "area_ids": ["ar_d2"]})
    assert r.status_code == 403 and code(r) == "out_of_scope"
    r = await city.api.post("/api/admin/v1/integration/clients", official,
                            json={"name": "区平台", "area_ids": ["ar_s1"]})
    assert r.status_code == 201
    committee = await city.api.staff("c", [Grant(Role.COMMITTEE, community_id="cm_a")])
    r = await city.api.post("/api/admin/v1/integration/clients", committee,
                            json={"name": "x", "community_ids": ["cm_a"]})
    assert r.status_code == 403
