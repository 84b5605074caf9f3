"""Voter roll per DOMAIN §3: who counts as one person, with what area, over which scope."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from voting.tally import RollTotals


class AreaSource(StrEnum):
    """Where a unit's area comes from, in order of precedence (法释〔2009〕7号 art. 8)."""

    REGISTRY = "registry"
    SURVEY = "survey"
    CONTRACT = "contract"


class UnitKind(StrEnum):
    """What a unit is; parking and storage count only if the community's rules say so."""

    RESIDENTIAL = "residential"
    COMMERCIAL = "commercial"
    PARKING = "parking"
    STORAGE = "storage"


class ScopeKind(StrEnum):
    """What a ballot covers."""

    COMMUNITY = "community"
    BUILDINGS = "buildings"
    UNITS = "units"


class RollError(ValueError):
    """The roll cannot be built from the given units, ownerships and scope."""


class InvalidAreaError(RollError):
    """A unit's area is missing or not a positive integer of 0.01 m²."""


class DuplicateUnitError(RollError):
    """Two units share one unit id."""


class UnknownUnitError(RollError):
    """An ownership or scope names a unit that does not exist."""


class UnknownBuildingError(RollError):
    """A building scope names a building with no units."""


class MissingOwnershipError(RollError):
    """A unit in scope has no ownership record."""


class DuplicateOwnershipError(RollError):
    """A unit has more than one ownership record."""


class InvalidOwnershipError(RollError):
    """An ownership record is inconsistent (no owners, voter not an owner, ...)."""


class ConflictingVoterError(RollError):
    """The same co-owners designated different voters on different units."""


class EmptyRollError(RollError):
    """No countable unit lies in the scope."""


def choose_area(
    registry_centi_m2: int | None = None,
    survey_centi_m2: int | None = None,
    contract_centi_m2: int | None = None,
) -> tuple[int, AreaSource]:
    """Return the first area that exists: registry, then survey, then sale contract."""
    for value, source in (
        (registry_centi_m2, AreaSource.REGISTRY),
        (survey_centi_m2, AreaSource.SURVEY),
        (contract_centi_m2, AreaSource.CONTRACT),
    ):
        if value is not None:
            return value, source
    raise InvalidAreaError("no registry, survey or contract area")


@dataclass(frozen=True)
class Unit:
    """An exclusive part (专有部分) with its area in hundredths of a square metre."""

    unit_id: str
    building_id: str
    area_centi_m2: int
    area_source: AreaSource
    kind: UnitKind = UnitKind.RESIDENTIAL


@dataclass(frozen=True)
class Ownership:
    """Who owns one unit: one owner, or co-owners with the voter they designated."""

    unit_id: str
    owner_ids: tuple[str, ...]
    designated_voter_id: str | None = None
    is_developer_unsold_or_undelivered: bool = False


@dataclass(frozen=True)
class Scope:
    """The units a ballot covers: the whole community, some buildings, or listed units."""

    kind: ScopeKind
    ids: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def whole_community(cls) -> Scope:
        """Every unit of the community."""
        return cls(ScopeKind.COMMUNITY)

    @classmethod
    def buildings(cls, building_ids: Iterable[str]) -> Scope:
        """Every unit of the listed buildings."""
        return cls(ScopeKind.BUILDINGS, frozenset(building_ids))

    @classmethod
    def units(cls, unit_ids: Iterable[str]) -> Scope:
        """Exactly the listed units (e.g. a maintenance fund's units)."""
        return cls(ScopeKind.UNITS, frozenset(unit_ids))


@dataclass(frozen=True)
class RollPerson:
    """One person for headcount: all units of one buyer, voting once with the summed area."""

    person_id: str
    unit_ids: tuple[str, ...]
    area_centi_m2: int
    owner_ids: tuple[str, ...]
    voter_owner_id: str | None
    is_developer: bool


@dataclass(frozen=True)
class VoterRoll:
    """The frozen roll of a ballot: persons and the totals A and N."""

    persons: tuple[RollPerson, ...]
    units: tuple[Unit, ...]
    excluded_unit_ids: tuple[str, ...]
    total_area_centi_m2: int
    total_headcount: int

    def totals(self) -> RollTotals:
        """A and N for the tally."""
        return RollTotals(self.total_area_centi_m2, self.total_headcount)

    def person(self, person_id: str) -> RollPerson:
        """Return the person with `person_id`."""
        for person in self.persons:
            if person.person_id == person_id:
                return person
        raise KeyError(person_id)

    def persons_voted_by(self, owner_id: str) -> tuple[RollPerson, ...]:
        """The persons whose ballot `owner_id` may cast (own units and designated co-ownerships)."""
        return tuple(p for p in self.persons if p.voter_owner_id == owner_id)


def build_roll(
    units: Iterable[Unit],
    ownerships: Iterable[Ownership],
    scope: Scope,
    *,
    count_parking_and_storage: bool,
) -> VoterRoll:
    """Compute the roll over `scope`.

    A person is one buyer (法释〔2009〕7号 art. 9): all units with the same owner set form one
    person with the summed area; all of a developer's unsold/undelivered units form one person
    ('dev:<id>'); a sole owner is 'o:<id>'; co-owners are 'co:<id>+<id>...' and vote through
    their designated voter. An owner who owns one unit alone and co-owns another is two
    persons (two different buyers); if designated, that owner casts both ballots.
    """
    by_id = _index_units(units)
    owner_of = _index_ownerships(ownerships, by_id)
    in_scope = _units_in_scope(by_id, scope)
    counted = [u for u in in_scope if _counts(u, count_parking_and_storage)]
    excluded = [u.unit_id for u in in_scope if not _counts(u, count_parking_and_storage)]
    if not counted:
        raise EmptyRollError("no countable unit in scope")
    groups: dict[tuple[str, ...], list[Unit]] = {}
    for unit in counted:
        _check_area(unit)
        ownership = owner_of.get(unit.unit_id)
        if ownership is None:
            raise MissingOwnershipError(f"unit {unit.unit_id!r} has no owner")
        groups.setdefault(tuple(sorted(ownership.owner_ids)), []).append(unit)
    persons = sorted(
        (_person(owners, members, owner_of) for owners, members in groups.items()),
        key=lambda p: p.person_id,
    )
    return VoterRoll(
        persons=tuple(persons),
        units=tuple(sorted(counted, key=lambda u: u.unit_id)),
        excluded_unit_ids=tuple(sorted(excluded)),
        total_area_centi_m2=sum(p.area_centi_m2 for p in persons),
        total_headcount=len(persons),
    )


def _person(
    owners: tuple[str, ...], members: list[Unit], owner_of: dict[str, Ownership]
) -> RollPerson:
    records = [owner_of[u.unit_id] for u in members]
    is_developer = any(r.is_developer_unsold_or_undelivered for r in records)
    if len(owners) == 1:
        prefix = "dev" if is_developer else "o"
        person_id, voter = f"{prefix}:{owners[0]}", owners[0]
    else:
        person_id, voter = "co:" + "+".join(owners), _group_voter(records)
    return RollPerson(
        person_id=person_id,
        unit_ids=tuple(sorted(u.unit_id for u in members)),
        area_centi_m2=sum(u.area_centi_m2 for u in members),
        owner_ids=owners,
        voter_owner_id=voter,
        is_developer=is_developer,
    )


def _group_voter(records: list[Ownership]) -> str | None:
    # Co-owners choose one voter; until they do, they still count in A and N but cannot vote.
    voters = {r.designated_voter_id for r in records if r.designated_voter_id is not None}
    if len(voters) > 1:
        units = ", ".join(sorted(r.unit_id for r in records))
        raise ConflictingVoterError(f"units {units} have different designated voters")
    return voters.pop() if voters else None


def _index_units(units: Iterable[Unit]) -> dict[str, Unit]:
    by_id: dict[str, Unit] = {}
    for unit in units:
        if unit.unit_id in by_id:
            raise DuplicateUnitError(f"unit {unit.unit_id!r} appears twice")
        by_id[unit.unit_id] = unit
    return by_id


def _index_ownerships(
    ownerships: Iterable[Ownership], by_id: dict[str, Unit]
) -> dict[str, Ownership]:
    owner_of: dict[str, Ownership] = {}
    for record in ownerships:
        if record.unit_id not in by_id:
            raise UnknownUnitError(f"ownership names unknown unit {record.unit_id!r}")
        if record.unit_id in owner_of:
            raise DuplicateOwnershipError(f"unit {record.unit_id!r} has two ownership records")
        _check_ownership(record)
        owner_of[record.unit_id] = record
    return owner_of


def _check_ownership(record: Ownership) -> None:
    unit, owners = record.unit_id, record.owner_ids
    if not owners:
        raise InvalidOwnershipError(f"unit {unit!r} has no owner ids")
    if len(set(owners)) != len(owners):
        raise InvalidOwnershipError(f"unit {unit!r} lists an owner twice")
    for owner in owners:
        if not owner or "+" in owner or any(c.isspace() for c in owner):
            raise InvalidOwnershipError(f"unit {unit!r}: invalid owner id {owner!r}")
    if record.designated_voter_id is not None and record.designated_voter_id not in owners:
        raise InvalidOwnershipError(f"unit {unit!r}: designated voter is not an owner")
    if record.is_developer_unsold_or_undelivered and len(owners) != 1:
        raise InvalidOwnershipError(f"unit {unit!r}: developer-held unit must have one owner")


def _check_area(unit: Unit) -> None:
    area = unit.area_centi_m2
    if isinstance(area, bool) or not isinstance(area, int) or area <= 0:
        raise InvalidAreaError(f"unit {unit.unit_id!r} has invalid area {area!r}")


def _units_in_scope(by_id: dict[str, Unit], scope: Scope) -> list[Unit]:
    if scope.kind is ScopeKind.COMMUNITY:
        return list(by_id.values())
    if scope.kind is ScopeKind.BUILDINGS:
        unknown = sorted(scope.ids - {u.building_id for u in by_id.values()})
        if unknown:
            raise UnknownBuildingError(f"building {unknown[0]!r} has no units")
        return [u for u in by_id.values() if u.building_id in scope.ids]
    unknown = sorted(scope.ids - by_id.keys())
    if unknown:
        raise UnknownUnitError(f"scope names unknown unit {unknown[0]!r}")
    return [by_id[unit_id] for unit_id in sorted(scope.ids)]


def _counts(unit: Unit, count_parking_and_storage: bool) -> bool:
    if unit.kind in (UnitKind.PARKING, UnitKind.STORAGE):
        return count_parking_and_storage
    return True
