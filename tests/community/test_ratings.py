"""Quarterly rating: one rating per voting person, changeable until close, exact results."""

from __future__ import annotations

from typing import Any

from server.clock import ManualClock
from tests.community.conftest import PHONE_W, PHONE_X, PHONE_Y, PHONE_Z, Town

R = "/api/mp/v1/communities/cm_r"
DIMS = ("cleaning", "security", "greening", "repairs", "attitude", "overall")


def scores(default: int, **some: int) -> dict[str, int]:
    return {d: some.get(d, default) for d in DIMS}


async def rate(town: Town, token: str, body: dict[str, Any], quarter: str = "2026Q1") -> Any:
    return await town.api.call("PUT", f"{R}/ratings/{quarter}", token, json=body)


async def test_one_rating_per_household_changeable_until_close_with_exact_results(
        town: Town, clock: ManualClock) -> None:
    api, db = town.api, town.api.services.store.db
    x1 = await town.owner("x-husband", PHONE_X)     # owner of 101 and 102: one person
    x2 = await town.owner("x-wife", PHONE_X)        # the same owner, another WeChat account
    y = await town.owner("y-voter", PHONE_Y)        # designated voter of co-owned 103
    z = await town.owner("z-coowner", PHONE_Z)      # the other co-owner
    w = await town.owner("w", PHONE_W)

    form = (await api.get(f"{R}/rating", x1)).json()
    assert form["period"]["quarter"] == "2026Q1" and form["period"]["is_open"]
    assert form["period"]["eligible_persons"] == 4  # X, Y+Z, W, V; the developer does not rate
    assert len(form["persons"]) == 1 and len(form["persons"][0]["unit_ids"]) == 2  # 101, 102

    assert (await rate(town, x1, {"scores": scores(4, overall=5)})).status_code == 200
    r = await rate(town, x2, {"scores": scores(1)})
    assert r.status_code == 409 and r.json()["error"]["code"] == "person_already_rated"
    r = await rate(town, z, {"scores": scores(1)})
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_a_rating_person"
    # X changes their mind before the close: the rating is replaced, not added.
    r = await rate(town, x1, {"scores": scores(4, cleaning=2, overall=3)})
    assert r.status_code == 200 and r.json()["scores"]["overall"] == 3
    assert (await rate(town, y, {"scores": scores(5, overall=4)})).status_code == 200
    town.api.fake.flag_word_for_review("物业费")
    r = await rate(town, w, {"scores": scores(3, overall=2), "comment": "物业费太贵，保洁一般"})
    assert r.status_code == 200 and r.json()["comment_status"] == "review"
    assert await db["ratings"].count_documents({}) == 3

    mp = await api.get(f"{R}/ratings/2026Q1/results", x1)
    assert mp.status_code == 403 and mp.json()["error"]["code"] == "rating_results_not_yet"

    clock.advance(days=14)  # 2026-04-16 10:00 Beijing time: the window closed at midnight
    x1 = await town.owner("x-husband", PHONE_X)
    r = await rate(town, x1, {"scores": scores(5)})
    assert r.status_code == 409 and r.json()["error"]["code"] == "rating_closed"

    results = (await api.get("/api/admin/v1/communities/cm_r/ratings/2026Q1/results",
                             await town.token("committee_r"))).json()
    assert results["participation"] == {"rated": 3, "eligible": 4, "percent": "75.00"}
    by_key = {d["key"]: d for d in results["dimensions"]}
    assert by_key["overall"]["sum"] == 3 + 4 + 2 and by_key["overall"]["count"] == 3
    assert by_key["overall"]["average"] == "3.00"
    assert by_key["cleaning"]["sum"] == 2 + 5 + 3 and by_key["cleaning"]["average"] == "3.33"
    assert by_key["cleaning"]["distribution"] == {"1": 0, "2": 1, "3": 1, "4": 0, "5": 1}
    assert by_key["security"]["distribution"] == {"1": 0, "2": 0, "3": 1, "4": 1, "5": 1}
    mp = await api.get(f"{R}/ratings/2026Q1/results", x1)
    assert mp.status_code == 200 and mp.json()["participation"]["rated"] == 3


async def test_risky_comment_and_bad_scores_are_refused_and_nothing_is_written(town: Town) -> None:
    w = await town.owner("w", PHONE_W)
    town.api.fake.ban_word("暴力")
    r = await rate(town, w, {"scores": scores(3), "comment": "要用暴力解决"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "content_risky"
    assert r.json()["error"]["fields"] == {"comment": "内容未通过安全检测"}
    bad = scores(3, cleaning=6)
    del bad["overall"]
    r = await rate(town, w, {"scores": {**bad, "parking": 3}})
    assert r.status_code == 400
    assert r.json()["error"]["fields"] == {"scores.cleaning": "应不大于 5"}
    r = await rate(town, w, {"scores": {**scores(3), "parking": 3, "overall": 3}})
    assert r.json()["error"]["fields"] == {"scores.parking": "不允许的字段"}
    del bad["cleaning"]
    r = await rate(town, w, {"scores": bad})
    assert r.json()["error"]["fields"] == {"scores.cleaning": "必填", "scores.overall": "必填"}
    r = await rate(town, w, {"scores": scores(3)}, quarter="2026Q2")
    assert r.status_code == 409 and r.json()["error"]["code"] == "rating_not_open"
    assert await town.api.services.store.db["ratings"].count_documents({}) == 0


async def test_an_owner_of_another_community_cannot_rate_or_read(town: Town) -> None:
    stranger = await town.owner("a-owner", "13900000101")
    assert (await rate(town, stranger, {"scores": scores(1)})).status_code == 403
    assert (await town.api.get(f"{R}/rating", stranger)).status_code == 403
    r = await town.api.get("/api/admin/v1/communities/cm_r/ratings/2026Q1/results",
                           await town.token("committee_a"))
    assert r.status_code == 403


async def test_the_sweep_opens_each_community_period_once(town: Town) -> None:
    duties = town.api.services.duties
    first = await duties.sweep()
    assert first["rating_periods_opened"] == 4  # cm_a, cm_b, cm_c, cm_r
    assert (await duties.sweep())["rating_periods_opened"] == 0
    db = town.api.services.store.db
    assert await db["rating_periods"].count_documents({"quarter": "2026Q1"}) == 4
