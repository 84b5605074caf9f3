"""Demo data: a district, two communities with rosters, staff accounts and owners to try."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from pymongo.errors import DuplicateKeyError

from server.auth import Grant, Role
from server.errors import Conflict
from server.registry import AreaLevel, stable_id
from server.services import Services

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def make_id_number(serial: int, region: str = "370481", birth: str = "19800101") -> str:
    """A syntactically valid 18-digit resident ID (correct GB 11643 check digit); fake person."""
    body = f"{region}{birth}{serial % 1000:03d}"
    total = sum(int(d) * w for d, w in zip(body, _ID_WEIGHTS, strict=True))
    return body + "10X98765432"[total % 11]


HEADER = ["楼栋", "房号", "建筑面积", "面积来源", "房屋类型", "业主姓名", "业主类型", "证件号码",
          "手机号", "表决人", "开发商持有"]
DEVELOPER_CODE = "91370481MA3C00000X"


@dataclass(frozen=True)
class RosterLine:
    """One roster row as written in a file (tests and the demo build files from these)."""

    building: str
    unit: str
    area: str
    owner: str
    id_number: str
    phone: str = ""
    area_source: str = "登记"
    unit_kind: str = "住宅"
    owner_kind: str = "个人"
    voter: str = ""
    developer_held: str = ""

    def cells(self) -> list[str]:
        return [self.building, self.unit, self.area, self.area_source, self.unit_kind, self.owner,
                self.owner_kind, self.id_number, self.phone, self.voter, self.developer_held]


def roster_csv(lines: list[RosterLine]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    for line in lines:
        writer.writerow(line.cells())
    return out.getvalue().encode("utf-8")


def demo_roster(prefix: int, buildings: int = 3, floors: int = 6, per_floor: int = 2,
                id_offset: int = 0) -> list[RosterLine]:
    """Units of a demo community, with the tricky cases of DOMAIN §3 built in."""
    lines: list[RosterLine] = []
    serial = id_offset
    for b in range(1, buildings + 1):
        for f in range(1, floors + 1):
            for u in range(1, per_floor + 1):
                serial += 1
                number = f"{f}0{u}"
                area = f"{85 + (serial * 7) % 60}.{(serial * 13) % 100:02d}"
                if b == buildings and f == floors:
                    # The developer still holds the top floor of the last building.
                    lines.append(RosterLine(f"{b}号楼", number, area, "滕州示例置业有限公司",
                                            DEVELOPER_CODE, owner_kind="单位",
                                            developer_held="是"))
                    continue
                phone = f"13{prefix}{serial:07d}"
                lines.append(RosterLine(f"{b}号楼", number, area, f"业主{prefix}-{serial:03d}",
                                        make_id_number(serial), phone))
    # Co-owners: the second owner of 1号楼 101 (the first is the designated voter).
    first = lines[0]
    lines[0] = RosterLine(first.building, first.unit, first.area, first.owner, first.id_number,
                          first.phone, voter="是")
    lines.insert(1, RosterLine(first.building, first.unit, first.area, f"共有人{prefix}",
                               make_id_number(900 + prefix), voter="否"))
    # One owner of several units: the owner of 1号楼 102 also owns a parking space.
    second = lines[2]
    lines.append(RosterLine("车库", "P-001", "12.50", second.owner, second.id_number,
                            second.phone, unit_kind="车位"))
    return lines


STAFF = (
    ("admin", "Demo-admin-2026", "平台管理员", [Grant(Role.PLATFORM_ADMIN)]),
    ("tengzhou", "Demo-official-2026", "滕州市住建局", [Grant(Role.OFFICIAL, area_id="ar_tengzhou")]),
    ("jinghe", "Demo-street-2026", "荆河街道", [Grant(Role.OFFICIAL, area_id="ar_jinghe")]),
    ("sg_committee", "Demo-committee-2026", "善国花园业委会",
     [Grant(Role.COMMITTEE, community_id="cm_shanguo")]),
    ("sg_clerk", "Demo-clerk-2026", "示例物业（善国花园）",
     [Grant(Role.PROPERTY, company_id="")]),  # company id filled in at seeding
    ("lq_committee", "Demo-committee-2026", "龙泉小区业委会",
     [Grant(Role.COMMITTEE, community_id="cm_longquan")]),
)


async def seed(services: Services) -> dict[str, object]:
    """Create the demo data once; running it again changes nothing."""
    reg = services.registry
    for area_id, name, level, parent in (
        ("ar_zaozhuang", "枣庄市", AreaLevel.CITY, None),
        ("ar_tengzhou", "滕州市", AreaLevel.DISTRICT, "ar_zaozhuang"),
        ("ar_jinghe", "荆河街道", AreaLevel.STREET, "ar_tengzhou"),
        ("ar_shanguo", "善国社区", AreaLevel.SHEQU, "ar_jinghe"),
    ):
        try:
            await reg.create_area(name, level, parent, area_id)
        except Conflict:
            pass
    companies = []
    for name, code in (("示例物业服务有限公司", "91370481MA3C11111A"),
                       ("龙泉物业管理有限公司", "91370481MA3C22222B")):
        try:
            companies.append((await reg.create_company(name, code))["id"])
        except Conflict:
            companies.append(stable_id("co", code))
    for cid, name, company, committee in (("cm_shanguo", "善国花园", companies[0], True),
                                          ("cm_longquan", "龙泉小区", companies[1], True)):
        try:
            await reg.create_community(name, "ar_shanguo", company, committee,
                                       community_id=cid)
        except Conflict:
            pass
    await services.roster.run("cm_shanguo", roster_csv(demo_roster(80)), "csv")
    await services.roster.run("cm_longquan", roster_csv(demo_roster(81, buildings=2, id_offset=100)),
                              "csv")
    for username, password, name, grants in STAFF:
        if username == "sg_clerk":
            grants = [Grant(Role.PROPERTY, company_id=companies[0])]
        try:
            await services.staff_accounts.create(username, password, name, grants)
        except DuplicateKeyError:
            pass  # the account exists from an earlier run
    from server.fees_demo import seed_fees  # issue 4: property fees billed for this month

    fees = await seed_fees(services, ["cm_shanguo", "cm_longquan"])
    return {"communities": ["cm_shanguo", "cm_longquan"], "companies": companies, "fees": fees}
