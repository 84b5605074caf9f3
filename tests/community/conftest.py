"""Disclosures, ratings, complaints: a world with a 社区-level community and tricky households."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from miniprogram_api.fake_wechat import FakeWeChat
from miniprogram_api.wechat import WeChatClient
from server.auth import Grant, Role
from server.clock import ManualClock
from server.db import Store
from server.demo import DEVELOPER_CODE, roster_csv
from server.registry import AreaLevel
from server.services import Services, build_services
from server.wechat_tokens import StoreTokenCache
from settings import Settings
from tests.apiclient import Api
from tests.conftest import APPID, SECRET, make_env
from tests.world import World, build_world, owner_line

TEMPLATE = "tpl-complaint-progress"
# 2026-04-02 10:00 Beijing time: Q1 has just ended, its rating window is open.
START = datetime(2026, 4, 2, 2, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def services(store: Store, clock: ManualClock,
                   fake_wechat: tuple[FakeWeChat, str]) -> AsyncIterator[Services]:
    settings = Settings.from_env(make_env(WECHAT_API_BASE=fake_wechat[1],
                                          COMPLAINT_TEMPLATE_ID=TEMPLATE,
                                          COMPLAINT_RESPOND_HOURS="24",
                                          COMPLAINT_RESOLVE_HOURS="72"))
    wechat = WeChatClient(appid=APPID, secret=SECRET, token_cache=StoreTokenCache(store.db),
                          api_base=fake_wechat[1], timeout_s=2, clock=clock.now)
    yield build_services(settings, store, clock, wechat)
    await wechat.aclose()


# cm_r (in 社区 ar_q1 under street ar_s1): the households of DOMAIN §3 for rating.
PHONE_X, PHONE_Y, PHONE_Z, PHONE_W, PHONE_V = (f"1370000000{i}" for i in range(1, 6))
R_ROSTER = [
    owner_line("1号楼", "101", "90.00", 501, owner="多套业主", phone=PHONE_X),
    owner_line("1号楼", "102", "70.00", 501, owner="多套业主", phone=PHONE_X),
    owner_line("1号楼", "103", "88.00", 502, owner="共有人甲", phone=PHONE_Y, voter="是"),
    owner_line("1号楼", "103", "88.00", 503, owner="共有人乙", phone=PHONE_Z, voter="否"),
    owner_line("1号楼", "104", "95.00", 504, owner="业主W", phone=PHONE_W),
    owner_line("1号楼", "105", "99.00", 0, owner="开发商", id_number=DEVELOPER_CODE,
               owner_kind="单位", developer_held="是"),
    owner_line("1号楼", "106", "99.00", 0, owner="开发商", id_number=DEVELOPER_CODE,
               owner_kind="单位", developer_held="是"),
    owner_line("1号楼", "107", "60.00", 505, owner="业主V", phone=PHONE_V),
]


STAFF = {
    "property_a": lambda w: [Grant(Role.PROPERTY, company_id=w.company_a)],
    "property_b": lambda w: [Grant(Role.PROPERTY, company_id=w.company_b)],
    "committee_a": lambda w: [Grant(Role.COMMITTEE, community_id="cm_a")],
    "committee_b": lambda w: [Grant(Role.COMMITTEE, community_id="cm_b")],
    "committee_r": lambda w: [Grant(Role.COMMITTEE, community_id="cm_r")],
    "shequ": lambda w: [Grant(Role.OFFICIAL, area_id="ar_q1")],
    "street": lambda w: [Grant(Role.OFFICIAL, area_id="ar_s1")],
    "street_2": lambda w: [Grant(Role.OFFICIAL, area_id="ar_s2")],
    "district": lambda w: [Grant(Role.OFFICIAL, area_id="ar_d1")],
    "district_2": lambda w: [Grant(Role.OFFICIAL, area_id="ar_d2")],
    "city": lambda w: [Grant(Role.OFFICIAL, area_id="ar_city")],
}


@dataclass
class Town:
    """The world plus staff tokens."""

    world: World
    api: Api
    tokens: dict[str, str]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.world, name)

    async def owner(self, openid: str, phone: str) -> str:
        return await self.api.mp_owner(openid, phone)

    async def token(self, who: str) -> str:
        """A staff session (accounts are created on first use: argon2 is slow on purpose)."""
        if who not in self.tokens:
            self.tokens[who] = await self.api.staff(who, STAFF[who](self.world))
        return self.tokens[who]


@pytest.fixture
async def town(api: Api) -> Town:
    services = api.services
    world = await build_world(services)
    await services.registry.create_area("甲社区", AreaLevel.SHEQU, "ar_s1", "ar_q1")
    await services.registry.create_community("融园", "ar_q1", world.company_a, True,
                                             community_id="cm_r")
    report = await services.roster.run("cm_r", roster_csv(R_ROSTER), "csv")
    assert report.imported, report.to_json()
    tokens: dict[str, str] = {}
    return Town(world, api, tokens)
