"""Specification of the voter roll: one buyer is one person, totals A and N over the scope."""

from __future__ import annotations

import pytest

from voting.roll import (
    AreaSource,
    ConflictingVoterError,
    DuplicateOwnershipError,
    DuplicateUnitError,
    EmptyRollError,
    InvalidAreaError,
    InvalidOwnershipError,
    MissingOwnershipError,
    Ownership,
    Scope,
    Unit,
    UnitKind,
    UnknownBuildingError,
    UnknownUnitError,
    VoterRoll,
    build_roll,
    choose_area,
)
from voting.tally import RollTotals

REG = AreaSource.REGISTRY


def unit(
    unit_id: str, area: int, building: str = "B1", kind: UnitKind = UnitKind.RESIDENTIAL
) -> Unit:
    return Unit(unit_id, building, area, REG, kind)


def sole(unit_id: str, owner: str, *, developer: bool = False) -> Ownership:
    return Ownership(unit_id, (owner,), None, developer)


def roll(
    units: list[Unit],
    ownerships: list[Ownership],
    scope: Scope | None = None,
    parking: bool = False,
) -> VoterRoll:
    return build_roll(
        units, ownerships, scope or Scope.whole_community(), count_parking_and_storage=parking
    )


def test_one_unit_one_owner_is_one_person() -> None:
    r = roll([unit("101", 9000), unit("102", 8000)], [sole("101", "alice"), sole("102", "bob")])
    assert [p.person_id for p in r.persons] == ["o:alice", "o:bob"]
    assert r.totals() == RollTotals(17000, 2)
    assert r.person("o:alice").voter_owner_id == "alice"


def test_an_owner_of_several_units_is_one_person_with_the_summed_area() -> None:
    r = roll(
        [unit("101", 9000), unit("102", 8000, "B2"), unit("201", 7000)],
        [sole("101", "alice"), sole("102", "alice"), sole("201", "bob")],
    )
    alice = r.person("o:alice")
    assert alice.unit_ids == ("101", "102")
    assert alice.area_centi_m2 == 17000
    assert (r.total_area_centi_m2, r.total_headcount) == (24000, 2)


def test_all_unsold_or_undelivered_developer_units_are_one_person() -> None:
    r = roll(
        [unit("101", 9000), unit("102", 8000), unit("103", 7000)],
        [
            sole("101", "dev1", developer=True),
            sole("102", "dev1", developer=True),
            sole("103", "carol"),
        ],
    )
    developer = r.person("dev:dev1")
    assert developer.is_developer and developer.area_centi_m2 == 17000
    assert r.total_headcount == 2


def test_co_owners_of_one_unit_are_one_person_voting_through_their_designated_voter() -> None:
    r = roll([unit("101", 9000)], [Ownership("101", ("wife", "husband"), "wife")])
    (person,) = r.persons
    assert person.person_id == "co:husband+wife"
    assert person.owner_ids == ("husband", "wife")
    assert person.voter_owner_id == "wife"
    assert r.persons_voted_by("husband") == ()
    assert r.total_headcount == 1


def test_co_owners_of_several_units_are_one_person() -> None:
    r = roll(
        [unit("101", 9000), unit("102", 1000)],
        [Ownership("101", ("a", "b"), "a"), Ownership("102", ("b", "a"))],
    )
    (person,) = r.persons
    assert person.unit_ids == ("101", "102") and person.area_centi_m2 == 10000
    assert person.voter_owner_id == "a"


def test_co_owners_who_have_not_designated_a_voter_still_count_but_cannot_vote() -> None:
    units = [unit("101", 9000), unit("102", 5000)]
    r = roll(units, [Ownership("101", ("a", "b")), sole("102", "c")])
    assert r.person("co:a+b").voter_owner_id is None
    assert r.totals() == RollTotals(14000, 2)


def test_co_owners_designating_different_voters_on_different_units_is_rejected() -> None:
    with pytest.raises(ConflictingVoterError, match="101, 102"):
        roll(
            [unit("101", 9000), unit("102", 1000)],
            [Ownership("101", ("a", "b"), "a"), Ownership("102", ("a", "b"), "b")],
        )


def test_sole_owner_who_also_co_owns_another_unit_is_two_persons() -> None:
    # Different buyers (alice; alice with bob): art. 9 merges only the same buyer.
    r = roll(
        [unit("101", 9000), unit("102", 8000)],
        [sole("101", "alice"), Ownership("102", ("alice", "bob"), "alice")],
    )
    assert [p.person_id for p in r.persons] == ["co:alice+bob", "o:alice"]
    assert r.total_headcount == 2
    assert {p.person_id for p in r.persons_voted_by("alice")} == {"o:alice", "co:alice+bob"}


def test_building_scope_counts_only_that_buildings_units() -> None:
    r = roll(
        [unit("1-101", 9000, "B1"), unit("2-101", 8000, "B2"), unit("2-102", 7000, "B2")],
        [sole("1-101", "alice"), sole("2-101", "alice"), sole("2-102", "bob")],
        Scope.buildings(["B2"]),
    )
    assert r.totals() == RollTotals(15000, 2)
    assert r.person("o:alice").unit_ids == ("2-101",)


def test_explicit_unit_scope_counts_exactly_the_listed_units() -> None:
    r = roll(
        [unit("101", 9000), unit("102", 8000), unit("103", 7000)],
        [sole("101", "a"), sole("102", "b"), sole("103", "c")],
        Scope.units(["101", "103"]),
    )
    assert [p.person_id for p in r.persons] == ["o:a", "o:c"]
    assert r.totals() == RollTotals(16000, 2)


def test_units_outside_the_scope_need_no_owner() -> None:
    units = [unit("101", 9000), unit("201", 8000, "B2")]
    r = roll(units, [sole("101", "a")], Scope.buildings(["B1"]))
    assert r.total_headcount == 1


PARKING_UNITS = [
    unit("101", 9000),
    unit("P-1", 1250, kind=UnitKind.PARKING),
    unit("S-1", 600, kind=UnitKind.STORAGE),
]
PARKING_OWNERS = [sole("101", "alice"), sole("P-1", "alice"), sole("S-1", "dave")]


def test_parking_and_storage_are_excluded_when_the_rules_exclude_them() -> None:
    r = roll(PARKING_UNITS, PARKING_OWNERS, parking=False)
    assert r.totals() == RollTotals(9000, 1)
    assert r.excluded_unit_ids == ("P-1", "S-1")


def test_parking_and_storage_count_when_the_rules_include_them() -> None:
    r = roll(PARKING_UNITS, PARKING_OWNERS, parking=True)
    assert r.person("o:alice").area_centi_m2 == 10250
    assert r.totals() == RollTotals(10850, 2)
    assert r.excluded_unit_ids == ()


def test_area_comes_from_registry_then_survey_then_contract() -> None:
    assert choose_area(9001, 9002, 9003) == (9001, AreaSource.REGISTRY)
    assert choose_area(None, 9002, 9003) == (9002, AreaSource.SURVEY)
    assert choose_area(None, None, 9003) == (9003, AreaSource.CONTRACT)
    with pytest.raises(InvalidAreaError):
        choose_area()


def test_a_unit_in_scope_without_an_owner_is_rejected_by_name() -> None:
    with pytest.raises(MissingOwnershipError, match="'102'"):
        roll([unit("101", 9000), unit("102", 8000)], [sole("101", "a")])


@pytest.mark.parametrize("area", [0, -100, True, 90.5])
def test_a_unit_with_a_non_positive_or_non_integer_area_is_rejected_by_name(area: object) -> None:
    bad = Unit("101", "B1", area, REG)  # type: ignore[arg-type]
    with pytest.raises(InvalidAreaError, match="'101'"):
        roll([bad], [sole("101", "a")])


@pytest.mark.parametrize(
    ("ownership", "error"),
    [
        (Ownership("101", ()), InvalidOwnershipError),
        (Ownership("101", ("a", "a")), InvalidOwnershipError),
        (Ownership("101", ("a", "b"), "c"), InvalidOwnershipError),
        (Ownership("101", ("a", "b"), "a", True), InvalidOwnershipError),
        (Ownership("101", ("a b",)), InvalidOwnershipError),
        (Ownership("999", ("a",)), UnknownUnitError),
    ],
)
def test_inconsistent_ownerships_are_rejected(ownership: Ownership, error: type[Exception]) -> None:
    with pytest.raises(error):
        roll([unit("101", 9000)], [ownership])


def test_duplicate_units_and_duplicate_ownerships_are_rejected() -> None:
    with pytest.raises(DuplicateUnitError):
        roll([unit("101", 9000), unit("101", 9000)], [sole("101", "a")])
    with pytest.raises(DuplicateOwnershipError):
        roll([unit("101", 9000)], [sole("101", "a"), sole("101", "b")])


def test_unknown_buildings_and_units_in_a_scope_are_rejected() -> None:
    with pytest.raises(UnknownBuildingError):
        roll([unit("101", 9000)], [sole("101", "a")], Scope.buildings(["B9"]))
    with pytest.raises(UnknownUnitError):
        roll([unit("101", 9000)], [sole("101", "a")], Scope.units(["101", "999"]))


def test_a_scope_with_only_excluded_units_is_an_empty_roll() -> None:
    with pytest.raises(EmptyRollError):
        roll([unit("P-1", 1250, kind=UnitKind.PARKING)], [sole("P-1", "a")])


def test_roll_is_deterministic_regardless_of_input_order() -> None:
    units = [unit("101", 9000), unit("102", 8000), unit("103", 7000)]
    owners = [sole("101", "b"), sole("102", "a"), Ownership("103", ("c", "a"), "c")]
    assert roll(units, owners) == roll(units[::-1], owners[::-1])
