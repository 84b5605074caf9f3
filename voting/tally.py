"""Owners' decision counting rules (Civil Code arts. 278 and 1259) in exact integers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from fractions import Fraction


class MatterKind(StrEnum):
    """Special matters (art. 278 items 6-8) need three quarters; ordinary ones a majority."""

    ORDINARY = "ordinary"
    SPECIAL = "special"


class Choice(StrEnum):
    """One person's counted choice on one item; BLANK covers blank and spoiled ballots."""

    AGREE = "agree"
    DISAGREE = "disagree"
    ABSTAIN = "abstain"
    BLANK = "blank"


class BlankPolicy(StrEnum):
    """How a returned blank or spoiled ballot is counted (DOMAIN §3.5: configurable)."""

    # Default. The owner did return a ballot, so it is participation (counts for quorum), and
    # like an abstention it is not a yes (counts against passing).
    COUNT_AS_PARTICIPATION_ABSTAIN = "count_as_participation_abstain"
    # Treated as if no ballot had been returned: neither participation nor against.
    EXCLUDE = "exclude"


DEFAULT_BLANK_POLICY = BlankPolicy.COUNT_AS_PARTICIPATION_ABSTAIN


class TallyError(ValueError):
    """The inputs to a count are inconsistent."""


class DuplicateVoteError(TallyError):
    """A person appears twice among the counted choices of one item."""


class InvalidCountError(TallyError):
    """An area or total is not a positive integer, or choices exceed the roll's totals."""


@dataclass(frozen=True)
class RollTotals:
    """A and N: total area (0.01 m²) and total headcount of the voting scope."""

    total_area_centi_m2: int
    total_headcount: int

    def __post_init__(self) -> None:
        _require_positive_int(self.total_area_centi_m2, "total area")
        _require_positive_int(self.total_headcount, "total headcount")


@dataclass(frozen=True)
class CountedChoice:
    """The final choice of one roll person on one item, with that person's area."""

    person_id: str
    area_centi_m2: int
    choice: Choice


@dataclass(frozen=True)
class Counts:
    """Area (0.01 m²) and headcount sums for one item; PA/PN already reflect the blank policy."""

    total_area_centi_m2: int
    total_headcount: int
    participating_area_centi_m2: int
    participating_headcount: int
    agree_area_centi_m2: int
    agree_headcount: int
    disagree_area_centi_m2: int
    disagree_headcount: int
    abstain_area_centi_m2: int
    abstain_headcount: int
    blank_area_centi_m2: int
    blank_headcount: int

    @property
    def non_voter_area_centi_m2(self) -> int:
        """Area of persons who did not participate: A - PA."""
        return self.total_area_centi_m2 - self.participating_area_centi_m2

    @property
    def non_voter_headcount(self) -> int:
        """Headcount of persons who did not participate: N - PN."""
        return self.total_headcount - self.participating_headcount


@dataclass(frozen=True)
class Outcome:
    """The counts of one item and what the rules make of them."""

    counts: Counts
    quorum_area_met: bool
    quorum_headcount_met: bool
    approval_area_met: bool
    approval_headcount_met: bool

    @property
    def quorum_met(self) -> bool:
        """3·PA ≥ 2·A and 3·PN ≥ 2·N."""
        return self.quorum_area_met and self.quorum_headcount_met

    @property
    def passed(self) -> bool:
        """Quorum met and the matter's approval inequality holds for area and headcount."""
        return self.quorum_met and self.approval_area_met and self.approval_headcount_met

    def to_json(self) -> dict[str, object]:
        """Publishable summary using the legal short names A, N, PA, PN, YA, YN."""
        c = self.counts
        return {
            "A": c.total_area_centi_m2,
            "N": c.total_headcount,
            "PA": c.participating_area_centi_m2,
            "PN": c.participating_headcount,
            "YA": c.agree_area_centi_m2,
            "YN": c.agree_headcount,
            "disagree_area_centi_m2": c.disagree_area_centi_m2,
            "disagree_headcount": c.disagree_headcount,
            "abstain_area_centi_m2": c.abstain_area_centi_m2,
            "abstain_headcount": c.abstain_headcount,
            "blank_area_centi_m2": c.blank_area_centi_m2,
            "blank_headcount": c.blank_headcount,
            "quorum_met": self.quorum_met,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class ItemResult:
    """The raw result of one item and, where the rules allow it, the deemed result beside it."""

    matter_kind: MatterKind
    blank_policy: BlankPolicy
    raw: Outcome
    deemed: Outcome | None = None
    deemed_side: Choice | None = None


@dataclass(frozen=True)
class Ratio:
    """An exact fraction numerator/denominator of integers (never a float)."""

    numerator: int
    denominator: int

    def as_fraction(self) -> Fraction:
        """The ratio as a Fraction."""
        return Fraction(self.numerator, self.denominator)


@dataclass(frozen=True)
class Turnout:
    """Live participation against the two-thirds quorum."""

    area: Ratio
    headcount: Ratio
    quorum_met: bool
    area_still_needed_centi_m2: int
    headcount_still_needed: int


def quorum_area_met(participating_area: int, total_area: int) -> bool:
    """3·PA ≥ 2·A ('以上' includes the boundary: art. 1259)."""
    return 3 * participating_area >= 2 * total_area


def quorum_headcount_met(participating_headcount: int, total_headcount: int) -> bool:
    """3·PN ≥ 2·N."""
    return 3 * participating_headcount >= 2 * total_headcount


def approval_met(kind: MatterKind, agree: int, participating: int) -> bool:
    """Special: 4·Y ≥ 3·P (three quarters or more); ordinary: 2·Y > P ('过半数' is strict)."""
    if kind is MatterKind.SPECIAL:
        return 4 * agree >= 3 * participating
    return 2 * agree > participating


def decide(kind: MatterKind, counts: Counts) -> Outcome:
    """Apply the quorum and the matter's approval rule to both area and headcount."""
    c = counts
    return Outcome(
        counts=c,
        quorum_area_met=quorum_area_met(c.participating_area_centi_m2, c.total_area_centi_m2),
        quorum_headcount_met=quorum_headcount_met(c.participating_headcount, c.total_headcount),
        approval_area_met=approval_met(
            kind, c.agree_area_centi_m2, c.participating_area_centi_m2
        ),
        approval_headcount_met=approval_met(kind, c.agree_headcount, c.participating_headcount),
    )


def count_choices(
    totals: RollTotals,
    choices: Iterable[CountedChoice],
    blank_policy: BlankPolicy = DEFAULT_BLANK_POLICY,
) -> Counts:
    """Sum area and headcount per choice; one final choice per person."""
    area = {choice: 0 for choice in Choice}
    heads = {choice: 0 for choice in Choice}
    seen: set[str] = set()
    for item in choices:
        if item.person_id in seen:
            raise DuplicateVoteError(f"person {item.person_id!r} has more than one choice")
        seen.add(item.person_id)
        _require_positive_int(item.area_centi_m2, f"area of person {item.person_id!r}")
        choice = Choice(item.choice)
        area[choice] += item.area_centi_m2
        heads[choice] += 1
    returned_area, returned_heads = sum(area.values()), sum(heads.values())
    if returned_area > totals.total_area_centi_m2 or returned_heads > totals.total_headcount:
        raise InvalidCountError("counted choices exceed the roll's total area or headcount")
    if blank_policy is BlankPolicy.EXCLUDE:
        returned_area -= area[Choice.BLANK]
        returned_heads -= heads[Choice.BLANK]
    return Counts(
        total_area_centi_m2=totals.total_area_centi_m2,
        total_headcount=totals.total_headcount,
        participating_area_centi_m2=returned_area,
        participating_headcount=returned_heads,
        agree_area_centi_m2=area[Choice.AGREE],
        agree_headcount=heads[Choice.AGREE],
        disagree_area_centi_m2=area[Choice.DISAGREE],
        disagree_headcount=heads[Choice.DISAGREE],
        abstain_area_centi_m2=area[Choice.ABSTAIN],
        abstain_headcount=heads[Choice.ABSTAIN],
        blank_area_centi_m2=area[Choice.BLANK],
        blank_headcount=heads[Choice.BLANK],
    )


def majority_side(counts: Counts) -> Choice:
    """The side non-voters follow: AGREE iff 2·YA > PA and 2·YN > PN among participants.

    Otherwise (ties, split area/headcount, nobody voted) DISAGREE: a non-voter is only deemed
    to agree when those who voted agreed by a strict double majority.
    """
    c = counts
    agree_is_majority = (
        2 * c.agree_area_centi_m2 > c.participating_area_centi_m2
        and 2 * c.agree_headcount > c.participating_headcount
    )
    return Choice.AGREE if agree_is_majority else Choice.DISAGREE


def deem_non_voters(counts: Counts, side: Choice) -> Counts:
    """Add every non-participant's area and headcount to `side`; everyone then participates."""
    c = counts
    extra_area, extra_heads = c.non_voter_area_centi_m2, c.non_voter_headcount
    deemed = replace(
        c,
        participating_area_centi_m2=c.total_area_centi_m2,
        participating_headcount=c.total_headcount,
    )
    if side is Choice.AGREE:
        return replace(
            deemed,
            agree_area_centi_m2=c.agree_area_centi_m2 + extra_area,
            agree_headcount=c.agree_headcount + extra_heads,
        )
    if side is Choice.DISAGREE:
        return replace(
            deemed,
            disagree_area_centi_m2=c.disagree_area_centi_m2 + extra_area,
            disagree_headcount=c.disagree_headcount + extra_heads,
        )
    raise TallyError(f"non-voters can only follow agree or disagree, not {side}")


def tally_item(
    totals: RollTotals,
    kind: MatterKind,
    choices: Iterable[CountedChoice],
    *,
    blank_policy: BlankPolicy = DEFAULT_BLANK_POLICY,
    non_voters_follow_majority: bool = False,
) -> ItemResult:
    """Count one item; with 'non-voters follow the majority' also give the deemed result."""
    kind = MatterKind(kind)
    blank_policy = BlankPolicy(blank_policy)
    counts = count_choices(totals, choices, blank_policy)
    raw = decide(kind, counts)
    if not non_voters_follow_majority:
        return ItemResult(kind, blank_policy, raw)
    side = majority_side(counts)
    deemed = decide(kind, deem_non_voters(counts, side))
    return ItemResult(kind, blank_policy, raw, deemed, side)


def turnout(
    totals: RollTotals,
    choices: Iterable[CountedChoice],
    blank_policy: BlankPolicy = DEFAULT_BLANK_POLICY,
) -> Turnout:
    """Live turnout as exact ratios, and how much more is needed for the two-thirds quorum."""
    c = count_choices(totals, choices, blank_policy)
    pa, pn = c.participating_area_centi_m2, c.participating_headcount
    a, n = c.total_area_centi_m2, c.total_headcount
    # Smallest integer x with 3x >= 2t is ceil(2t/3) = (2t + 2) // 3.
    return Turnout(
        area=Ratio(pa, a),
        headcount=Ratio(pn, n),
        quorum_met=quorum_area_met(pa, a) and quorum_headcount_met(pn, n),
        area_still_needed_centi_m2=max(0, (2 * a + 2) // 3 - pa),
        headcount_still_needed=max(0, (2 * n + 2) // 3 - pn),
    )


def _require_positive_int(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidCountError(f"{what} must be a positive integer, not {value!r}")
