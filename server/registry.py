"""The registry: administrative areas, communities, companies, buildings, units and owners."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from server.clock import Clock
from server.errors import Conflict, InvalidInput, NotFound


class AreaLevel(StrEnum):
    """Administrative levels above a residential community (city → district → street → 社区)."""

    CITY = "city"
    DISTRICT = "district"   # 区(市)
    STREET = "street"       # 街道(镇)
    SHEQU = "shequ"         # 社区 (the neighbourhood committee's area)


_PARENT_LEVEL = {AreaLevel.DISTRICT: AreaLevel.CITY, AreaLevel.STREET: AreaLevel.DISTRICT,
                 AreaLevel.SHEQU: AreaLevel.STREET}


class AreaSource(StrEnum):
    """Where a unit's floor area comes from, in order of precedence (DOMAIN §3.2)."""

    REGISTRY = "registry"   # 不动产登记簿
    SURVEY = "survey"       # 实测
    CONTRACT = "contract"   # 购房合同


class UnitKind(StrEnum):
    """What a unit is; whether parking and storage count is a community rule."""

    RESIDENTIAL = "residential"
    COMMERCIAL = "commercial"
    PARKING = "parking"
    STORAGE = "storage"


class OwnerKind(StrEnum):
    """A natural person or an organisation (e.g. the developer)."""

    PERSON = "person"
    ORG = "org"


def stable_id(prefix: str, *parts: str) -> str:
    """Deterministic ids make imports idempotent upserts."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]
    return f"{prefix}_{digest}"


@dataclass(frozen=True)
class Community:
    """A residential community (小区 / 物业管理区域)."""

    id: str
    name: str
    area_id: str
    area_path: tuple[str, ...]  # ids from the city down to the area_id
    company_id: str             # the property company serving it ("" if none)
    has_committee: bool
    count_parking: bool         # community rule: parking spaces count in votes
    count_storage: bool

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "area_id": self.area_id,
                "area_path": list(self.area_path), "company_id": self.company_id,
                "has_committee": self.has_committee,
                "rules": {"count_parking": self.count_parking, "count_storage": self.count_storage}}


def community_from_doc(doc: dict[str, Any]) -> Community:
    return Community(
        id=doc["_id"], name=doc["name"], area_id=doc["area_id"],
        area_path=tuple(doc["area_path"]), company_id=doc.get("company_id", ""),
        has_committee=bool(doc.get("has_committee")),
        count_parking=bool(doc.get("count_parking")), count_storage=bool(doc.get("count_storage")),
    )


def area_to_json(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "name": doc["name"], "level": doc["level"],
            "parent_id": doc.get("parent") or None, "path": doc["path"]}


def unit_to_json(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": doc["_id"], "community_id": doc["community_id"], "building_id": doc["building_id"],
        "building": doc.get("building_name", ""), "number": doc["number"],
        "area_centi_m2": doc["area_centi_m2"], "area_source": doc["area_source"],
        "kind": doc["kind"], "owner_ids": doc["owner_ids"], "voter_owner_id": doc["voter_owner_id"],
        "developer_held": doc["developer_held"],
    }


def owner_to_json(doc: dict[str, Any], phone_masked: str | None = None) -> dict[str, Any]:
    return {"id": doc["_id"], "community_id": doc["community_id"], "kind": doc["kind"],
            "name": doc["name"], "id_last4": doc["id_last4"], "phone": phone_masked,
            "is_developer": doc["is_developer"]}


class Registry:
    """Reads and writes the registry collections; converts documents in one place."""

    def __init__(self, db: AsyncDatabase, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    # -- areas ------------------------------------------------------------------------------
    async def create_area(self, name: str, level: AreaLevel, parent_id: str | None,
                          area_id: str | None = None) -> dict[str, Any]:
        path: list[str] = []
        if level is AreaLevel.CITY:
            if parent_id:
                raise InvalidInput(fields={"parent_id": "市级区域不能有上级"})
        else:
            parent = await self.db["areas"].find_one({"_id": parent_id}) if parent_id else None
            if parent is None:
                raise InvalidInput("上级区域不存在", code="parent_not_found",
                                   fields={"parent_id": "上级区域不存在"})
            if parent["level"] != _PARENT_LEVEL[level]:
                raise InvalidInput(fields={"parent_id": f"上级应为 {_PARENT_LEVEL[level].value}"})
            path = list(parent["path"])
        new_id = area_id or f"ar_{secrets.token_hex(6)}"
        doc = {"_id": new_id, "name": name, "level": level.value, "parent": parent_id or "",
               "path": [*path, new_id], "created_at": self.clock.now()}
        try:
            await self.db["areas"].insert_one(doc)
        except DuplicateKeyError:
            raise Conflict("区域编号已存在", code="area_exists") from None
        return area_to_json(doc)

    async def area(self, area_id: str) -> dict[str, Any]:
        doc = await self.db["areas"].find_one({"_id": area_id})
        if doc is None:
            raise NotFound("区域不存在", code="area_not_found")
        return doc

    async def areas_under(self, area_id: str) -> list[dict[str, Any]]:
        docs = await self.db["areas"].find({"path": area_id}).sort("_id", 1).to_list(None)
        return [area_to_json(d) for d in docs]

    # -- companies and communities ----------------------------------------------------------
    async def create_company(self, name: str, credit_code: str) -> dict[str, Any]:
        doc = {"_id": stable_id("co", credit_code), "name": name, "credit_code": credit_code,
               "created_at": self.clock.now()}
        try:
            await self.db["companies"].insert_one(doc)
        except DuplicateKeyError:
            raise Conflict("该统一社会信用代码的企业已存在", code="company_exists") from None
        return {"id": doc["_id"], "name": name, "credit_code": credit_code}

    async def company(self, company_id: str) -> dict[str, Any]:
        doc = await self.db["companies"].find_one({"_id": company_id})
        if doc is None:
            raise NotFound("物业企业不存在", code="company_not_found")
        return {"id": doc["_id"], "name": doc["name"], "credit_code": doc["credit_code"]}

    async def create_community(self, name: str, area_id: str, company_id: str = "",
                               has_committee: bool = False, count_parking: bool = False,
                               count_storage: bool = False,
                               community_id: str | None = None) -> Community:
        area = await self.db["areas"].find_one({"_id": area_id})
        if area is None or area["level"] not in (AreaLevel.STREET, AreaLevel.SHEQU):
            raise InvalidInput(fields={"area_id": "应为已存在的街道或社区"})
        if company_id:
            await self.company(company_id)
        doc = {"_id": community_id or f"cm_{secrets.token_hex(6)}", "name": name,
               "area_id": area_id, "area_path": area["path"], "company_id": company_id,
               "has_committee": has_committee, "count_parking": count_parking,
               "count_storage": count_storage, "created_at": self.clock.now()}
        try:
            await self.db["communities"].insert_one(doc)
        except DuplicateKeyError:
            raise Conflict("小区编号已存在", code="community_exists") from None
        return community_from_doc(doc)

    async def community(self, community_id: str) -> Community:
        doc = await self.db["communities"].find_one({"_id": community_id})
        if doc is None:
            raise NotFound("小区不存在", code="community_not_found")
        return community_from_doc(doc)

    async def communities(self, query: dict[str, Any]) -> list[Community]:
        docs = await self.db["communities"].find(query).sort("_id", 1).to_list(None)
        return [community_from_doc(d) for d in docs]

    async def set_company(self, community_id: str, company_id: str) -> Community:
        if company_id:
            await self.company(company_id)
        result = await self.db["communities"].update_one(
            {"_id": community_id}, {"$set": {"company_id": company_id}})
        if result.matched_count == 0:
            raise NotFound("小区不存在", code="community_not_found")
        return await self.community(community_id)

    # -- units and owners -------------------------------------------------------------------
    async def units(self, community_id: str, building_id: str | None = None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"community_id": community_id}
        if building_id:
            query["building_id"] = building_id
        return await self.db["units"].find(query).sort([("building_name", 1), ("number", 1)]).to_list(None)

    async def unit(self, unit_id: str) -> dict[str, Any]:
        doc = await self.db["units"].find_one({"_id": unit_id})
        if doc is None:
            raise NotFound("房屋不存在", code="unit_not_found")
        return doc

    async def find_unit(self, community_id: str, building: str, number: str) -> dict[str, Any]:
        doc = await self.db["units"].find_one({"community_id": community_id,
                                               "building_name": building, "number": number})
        if doc is None:
            raise NotFound("未找到该房屋", code="unit_not_found")
        return doc

    async def buildings(self, community_id: str) -> list[dict[str, Any]]:
        docs = await self.db["buildings"].find({"community_id": community_id}).sort("name", 1).to_list(None)
        return [{"id": d["_id"], "name": d["name"], "community_id": d["community_id"]} for d in docs]

    async def owners(self, community_id: str) -> list[dict[str, Any]]:
        return await self.db["owners"].find({"community_id": community_id}).sort("_id", 1).to_list(None)

    async def owner(self, owner_id: str) -> dict[str, Any]:
        doc = await self.db["owners"].find_one({"_id": owner_id})
        if doc is None:
            raise NotFound("业主不存在", code="owner_not_found")
        return doc

    async def counts(self, community_id: str) -> dict[str, int]:
        return {
            "buildings": await self.db["buildings"].count_documents({"community_id": community_id}),
            "units": await self.db["units"].count_documents({"community_id": community_id}),
            "owners": await self.db["owners"].count_documents({"community_id": community_id}),
        }
