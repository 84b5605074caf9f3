"""A small world for tests: two districts, communities A and B, rosters, staff."""

from __future__ import annotations

from dataclasses import dataclass

from server.demo import RosterLine, make_id_number, roster_csv
from server.registry import AreaLevel, stable_id
from server.services import Services


@dataclass
class World:
    """Ids of what build_world created."""

    community_a: str = "cm_a"
    community_b: str = "cm_b"
    community_c: str = "cm_c"   # in another district
    company_a: str = ""
    company_b: str = ""


def owner_line(building: str, unit: str, area: str, serial: int, **kw: str) -> RosterLine:
    return RosterLine(building, unit, area, kw.pop("owner", f"业主{serial}"),
                      kw.pop("id_number", make_id_number(serial)), kw.pop("phone", ""), **kw)


def simple_roster(offset: int, count: int = 6) -> list[RosterLine]:
    return [owner_line("1号楼", f"{100 + i}", f"{80 + i}.50", offset + i,
                       phone=f"139{offset + i:08d}") for i in range(1, count + 1)]


async def build_world(services: Services) -> World:
    reg = services.registry
    await reg.create_area("测试市", AreaLevel.CITY, None, "ar_city")
    await reg.create_area("甲区", AreaLevel.DISTRICT, "ar_city", "ar_d1")
    await reg.create_area("乙区", AreaLevel.DISTRICT, "ar_city", "ar_d2")
    await reg.create_area("甲街道", AreaLevel.STREET, "ar_d1", "ar_s1")
    await reg.create_area("乙街道", AreaLevel.STREET, "ar_d2", "ar_s2")
    world = World()
    world.company_a = (await reg.create_company("甲物业", "91370481MA3CAAAAA1"))["id"]
    world.company_b = (await reg.create_company("乙物业", "91370481MA3CBBBBB2"))["id"]
    await reg.create_community("甲小区", "ar_s1", world.company_a, True, community_id="cm_a")
    await reg.create_community("乙小区", "ar_s1", world.company_b, True, community_id="cm_b")
    await reg.create_community("丙小区", "ar_s2", world.company_b, False, community_id="cm_c")
    for cid, offset in (("cm_a", 100), ("cm_b", 200), ("cm_c", 300)):
        report = await services.roster.run(cid, roster_csv(simple_roster(offset)), "csv")
        assert report.imported and not report.errors, report.to_json()
    return world


def unit_id(community_id: str, building: str, number: str) -> str:
    return stable_id("u", community_id, building, number)
