"""Specification of the counting rules of DOMAIN §3: quorum, approval, blanks, deemed votes."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from voting.tally import (
    BlankPolicy,
    Choice,
    CountedChoice,
    DuplicateVoteError,
    InvalidCountError,
    ItemResult,
    MatterKind,
    Ratio,
    RollTotals,
    approval_met,
    quorum_area_met,
    quorum_headcount_met,
    tally_item,
    turnout,
)

AGREE, DISAGREE, ABSTAIN, BLANK = Choice.AGREE, Choice.DISAGREE, Choice.ABSTAIN, Choice.BLANK
ORDINARY, SPECIAL = MatterKind.ORDINARY, MatterKind.SPECIAL


def votes(*pairs: tuple[int, Choice]) -> list[CountedChoice]:
    """Ballots as (area in 0.01 m², choice); person ids are p0, p1, ..."""
    return [CountedChoice(f"p{i}", area, choice) for i, (area, choice) in enumerate(pairs)]


def count(
    area: int, heads: int, kind: MatterKind, ballots: list[CountedChoice], **options: object
) -> ItemResult:
    return tally_item(RollTotals(area, heads), kind, ballots, **options)  # type: ignore[arg-type]


# --- quorum: 3·PA ≥ 2·A and 3·PN ≥ 2·N -------------------------------------------------------


def test_quorum_is_met_when_participating_area_is_exactly_two_thirds() -> None:
    result = count(3000, 6, ORDINARY, votes(*[(500, AGREE)] * 4))
    assert result.raw.counts.participating_area_centi_m2 == 2000
    assert result.raw.quorum_area_met and result.raw.quorum_met and result.raw.passed


def test_quorum_fails_when_participating_area_is_one_hundredth_m2_short_of_two_thirds() -> None:
    ballots = votes((500, AGREE), (500, AGREE), (500, AGREE), (499, AGREE))
    result = count(3000, 6, ORDINARY, ballots)
    assert not result.raw.quorum_area_met
    assert result.raw.quorum_headcount_met
    assert not result.raw.passed


def test_quorum_is_met_when_participating_headcount_is_exactly_two_thirds() -> None:
    result = count(600, 6, ORDINARY, votes(*[(150, AGREE)] * 4))
    assert result.raw.quorum_headcount_met and result.raw.passed


def test_quorum_fails_when_participating_headcount_is_one_person_short_of_two_thirds() -> None:
    result = count(600, 6, ORDINARY, votes(*[(150, AGREE)] * 3))
    assert result.raw.quorum_area_met  # 450 of 600
    assert not result.raw.quorum_headcount_met
    assert not result.raw.passed


def test_unanimous_yes_does_not_pass_without_quorum() -> None:
    result = count(1000, 10, SPECIAL, votes(*[(100, AGREE)] * 6))
    assert result.raw.approval_area_met and result.raw.approval_headcount_met
    assert not result.raw.passed


# --- special matters: 4·YA ≥ 3·PA and 4·YN ≥ 3·PN ---------------------------------------------


def test_special_matter_passes_when_yes_area_is_exactly_three_quarters() -> None:
    ballots = votes((100, AGREE), (100, AGREE), (100, AGREE), (100, DISAGREE))
    result = count(400, 4, SPECIAL, ballots)
    counts = result.raw.counts
    assert 4 * counts.agree_area_centi_m2 == 3 * counts.participating_area_centi_m2
    assert result.raw.passed


def test_special_matter_fails_when_yes_area_is_one_hundredth_m2_below_three_quarters() -> None:
    ballots = votes((100, AGREE), (100, AGREE), (99, AGREE), (101, DISAGREE))
    result = count(400, 4, SPECIAL, ballots)
    assert not result.raw.approval_area_met
    assert result.raw.approval_headcount_met
    assert not result.raw.passed


def test_special_matter_passes_when_yes_headcount_is_exactly_three_quarters() -> None:
    ballots = votes(*[(100, AGREE)] * 6, (1, DISAGREE), (1, DISAGREE))
    result = count(602, 8, SPECIAL, ballots)
    assert result.raw.counts.agree_headcount == 6 and result.raw.passed


def test_special_matter_fails_when_yes_headcount_is_one_person_below_three_quarters() -> None:
    ballots = votes(*[(100, AGREE)] * 5, (1, DISAGREE), (1, DISAGREE), (1, DISAGREE))
    result = count(503, 8, SPECIAL, ballots)
    assert result.raw.approval_area_met
    assert not result.raw.approval_headcount_met
    assert not result.raw.passed


# --- ordinary matters: 2·YA > PA and 2·YN > PN ------------------------------------------------


def test_ordinary_matter_fails_when_yes_area_is_exactly_half() -> None:
    ballots = votes((100, AGREE), (50, AGREE), (50, AGREE), (100, DISAGREE), (100, DISAGREE))
    result = count(400, 5, ORDINARY, ballots)
    assert not result.raw.approval_area_met
    assert result.raw.approval_headcount_met
    assert not result.raw.passed


def test_ordinary_matter_passes_when_yes_area_is_one_hundredth_m2_over_half() -> None:
    ballots = votes((100, AGREE), (50, AGREE), (51, AGREE), (100, DISAGREE), (99, DISAGREE))
    assert count(400, 5, ORDINARY, ballots).raw.passed


def test_ordinary_matter_fails_when_yes_headcount_is_exactly_half() -> None:
    ballots = votes((300, AGREE), (300, AGREE), (1, DISAGREE), (1, DISAGREE))
    result = count(602, 4, ORDINARY, ballots)
    assert result.raw.approval_area_met
    assert not result.raw.approval_headcount_met
    assert not result.raw.passed


@pytest.mark.parametrize("kind", [ORDINARY, SPECIAL])
def test_matter_fails_when_area_passes_but_headcount_does_not(kind: MatterKind) -> None:
    ballots = votes((900, AGREE), (40, DISAGREE), (30, DISAGREE), (30, DISAGREE))
    result = count(1000, 4, kind, ballots)
    assert result.raw.quorum_met and result.raw.approval_area_met
    assert not result.raw.approval_headcount_met
    assert not result.raw.passed


@pytest.mark.parametrize("kind", [ORDINARY, SPECIAL])
def test_matter_fails_when_headcount_passes_but_area_does_not(kind: MatterKind) -> None:
    ballots = votes((10, AGREE), (10, AGREE), (10, AGREE), (970, DISAGREE))
    result = count(1000, 4, kind, ballots)
    assert result.raw.quorum_met and result.raw.approval_headcount_met
    assert not result.raw.approval_area_met
    assert not result.raw.passed


# --- abstentions and blank ballots -------------------------------------------------------------


def test_abstentions_count_as_participation_and_against_passing() -> None:
    ballots = votes((100, AGREE), (100, AGREE), (100, DISAGREE), (100, ABSTAIN), (100, ABSTAIN))
    result = count(500, 5, ORDINARY, ballots)
    counts = result.raw.counts
    assert (counts.participating_area_centi_m2, counts.participating_headcount) == (500, 5)
    assert (counts.abstain_area_centi_m2, counts.abstain_headcount) == (200, 2)
    assert result.raw.quorum_met
    assert not result.raw.passed  # 2 of 5 agree: abstentions weigh like a no


def test_abstentions_can_complete_the_quorum() -> None:
    without = count(600, 6, ORDINARY, votes(*[(100, AGREE)] * 3))
    with_abstentions = count(600, 6, ORDINARY, votes(*[(100, AGREE)] * 3, (100, ABSTAIN)))
    assert not without.raw.quorum_met
    assert with_abstentions.raw.quorum_met and with_abstentions.raw.passed


def test_blank_ballots_by_default_count_as_participation_and_not_as_yes() -> None:
    ballots = votes((100, AGREE), (100, AGREE), (100, DISAGREE), (100, BLANK))
    result = count(450, 4, ORDINARY, ballots)
    assert result.blank_policy is BlankPolicy.COUNT_AS_PARTICIPATION_ABSTAIN
    assert result.raw.counts.participating_area_centi_m2 == 400
    assert (result.raw.counts.blank_area_centi_m2, result.raw.counts.blank_headcount) == (100, 1)
    assert result.raw.quorum_met and not result.raw.passed


def test_blank_ballots_under_exclude_policy_are_as_if_not_returned() -> None:
    ballots = votes((100, AGREE), (100, AGREE), (100, DISAGREE), (100, BLANK))
    result = count(450, 4, ORDINARY, ballots, blank_policy=BlankPolicy.EXCLUDE)
    assert result.raw.counts.participating_area_centi_m2 == 300
    assert result.raw.counts.participating_headcount == 3
    assert result.raw.counts.blank_headcount == 1  # still reported
    assert result.raw.quorum_met and result.raw.passed


def test_blank_ballots_complete_the_quorum_only_under_the_default_policy() -> None:
    ballots = votes((100, AGREE), (100, AGREE), (100, AGREE), (100, BLANK))
    default = count(600, 6, ORDINARY, ballots)
    excluded = count(600, 6, ORDINARY, ballots, blank_policy="exclude")
    assert default.raw.quorum_met and default.raw.passed
    assert not excluded.raw.quorum_met and not excluded.raw.passed


# --- non-voters follow the majority (off by default; raw and deemed side by side) --------------


def test_follow_majority_is_off_by_default() -> None:
    result = count(1000, 10, ORDINARY, votes((300, AGREE)))
    assert result.deemed is None and result.deemed_side is None


def test_non_voters_follow_an_agreeing_majority_and_deemed_result_is_shown_beside_raw() -> None:
    ballots = votes((100, AGREE), (100, AGREE), (100, AGREE), (100, DISAGREE))
    result = count(1000, 10, SPECIAL, ballots, non_voters_follow_majority=True)
    assert not result.raw.passed and not result.raw.quorum_met
    assert result.deemed_side is AGREE
    assert result.deemed is not None
    deemed = result.deemed.counts
    assert (deemed.participating_area_centi_m2, deemed.participating_headcount) == (1000, 10)
    assert (deemed.agree_area_centi_m2, deemed.agree_headcount) == (900, 9)
    assert (deemed.disagree_area_centi_m2, deemed.disagree_headcount) == (100, 1)
    assert result.deemed.passed


def test_non_voters_follow_a_disagreeing_majority() -> None:
    ballots = votes((100, AGREE), (100, DISAGREE), (100, DISAGREE), (100, DISAGREE))
    result = count(1000, 10, ORDINARY, ballots, non_voters_follow_majority=True)
    assert result.deemed_side is DISAGREE and result.deemed is not None
    assert result.deemed.counts.disagree_area_centi_m2 == 900
    assert not result.deemed.passed


@pytest.mark.parametrize(
    "ballots",
    [
        votes((100, AGREE), (100, DISAGREE)),  # tie
        votes((300, AGREE), (100, DISAGREE), (100, DISAGREE)),  # area yes, headcount no
        votes((100, AGREE), (100, AGREE), (300, DISAGREE)),  # headcount yes, area no
        votes((100, AGREE), (100, ABSTAIN)),  # abstention blocks a strict majority
        [],  # nobody voted
    ],
)
def test_without_a_strict_double_majority_non_voters_are_deemed_to_disagree(
    ballots: list[CountedChoice],
) -> None:
    result = count(1000, 10, ORDINARY, ballots, non_voters_follow_majority=True)
    assert result.deemed_side is DISAGREE
    assert result.deemed is not None and not result.deemed.passed


def test_abstainers_keep_their_abstention_when_non_voters_are_deemed() -> None:
    ballots = votes((100, AGREE), (100, AGREE), (100, AGREE), (100, ABSTAIN))
    result = count(1000, 10, ORDINARY, ballots, non_voters_follow_majority=True)
    assert result.deemed is not None
    assert result.deemed.counts.abstain_headcount == 1
    assert result.deemed.counts.agree_headcount == 9


def test_under_exclude_policy_blank_voters_are_non_voters_and_follow_the_majority() -> None:
    ballots = votes((100, AGREE), (100, AGREE), (100, BLANK))
    result = count(
        300, 3, ORDINARY, ballots, blank_policy=BlankPolicy.EXCLUDE, non_voters_follow_majority=True
    )
    assert result.deemed is not None and result.deemed.counts.agree_headcount == 3


# --- turnout ------------------------------------------------------------------------------------


def test_turnout_is_an_exact_fraction_with_what_is_still_needed_for_quorum() -> None:
    live = turnout(RollTotals(1000, 7), votes((300, AGREE), (100, BLANK), (50, DISAGREE)))
    assert live.area == Ratio(450, 1000) and live.headcount == Ratio(3, 7)
    assert live.area.as_fraction() == Fraction(9, 20)
    assert live.area_still_needed_centi_m2 == 667 - 450  # ceil(2000/3) = 667
    assert live.headcount_still_needed == 5 - 3  # ceil(14/3) = 5
    assert not live.quorum_met


def test_turnout_needs_nothing_more_once_quorum_is_met() -> None:
    live = turnout(RollTotals(3, 3), votes((1, AGREE), (1, ABSTAIN)))
    assert live.quorum_met
    assert (live.area_still_needed_centi_m2, live.headcount_still_needed) == (0, 0)


# --- input validation -------------------------------------------------------------------------


def test_a_person_counted_twice_is_rejected() -> None:
    ballots = [CountedChoice("p1", 100, AGREE), CountedChoice("p1", 100, DISAGREE)]
    with pytest.raises(DuplicateVoteError, match="p1"):
        count(1000, 10, ORDINARY, ballots)


@pytest.mark.parametrize("area", [0, -5, True, 12.5])
def test_areas_must_be_positive_integers(area: object) -> None:
    with pytest.raises(InvalidCountError):
        count(1000, 10, ORDINARY, [CountedChoice("p1", area, AGREE)])  # type: ignore[arg-type]


def test_choices_exceeding_the_roll_totals_are_rejected() -> None:
    with pytest.raises(InvalidCountError, match="exceed"):
        count(100, 1, ORDINARY, votes((60, AGREE), (60, AGREE)))


@pytest.mark.parametrize(("area", "heads"), [(0, 1), (1, 0), (1.5, 1)])
def test_roll_totals_must_be_positive_integers(area: object, heads: object) -> None:
    with pytest.raises(InvalidCountError):
        RollTotals(area, heads)  # type: ignore[arg-type]


def test_published_summary_uses_the_legal_short_names() -> None:
    summary = count(400, 4, SPECIAL, votes(*[(100, AGREE)] * 3)).raw.to_json()
    short = {k: summary[k] for k in ("A", "N", "PA", "PN", "YA", "YN")}
    assert short == {"A": 400, "N": 4, "PA": 300, "PN": 3, "YA": 300, "YN": 3}
    assert summary["quorum_met"] is True and summary["passed"] is True


# --- cross-checks against fractions.Fraction --------------------------------------------------


def test_inequalities_agree_with_fraction_comparisons_on_every_small_case() -> None:
    for total in range(1, 40):
        for part in range(total + 1):
            share = Fraction(part, total)
            assert quorum_area_met(part, total) == (share >= Fraction(2, 3))
            assert quorum_headcount_met(part, total) == (share >= Fraction(2, 3))
            if part == 0:
                continue
            for yes in range(part + 1):
                yes_share = Fraction(yes, part)
                assert approval_met(SPECIAL, yes, part) == (yes_share >= Fraction(3, 4))
                assert approval_met(ORDINARY, yes, part) == (yes_share > Fraction(1, 2))


def _fraction_oracle(
    area: int, heads: int, kind: MatterKind, ballots: list[CountedChoice]
) -> bool:
    """An independent statement of the rule with Fractions (default blank policy)."""
    pa = sum(b.area_centi_m2 for b in ballots)
    pn = len(ballots)
    ya = sum(b.area_centi_m2 for b in ballots if b.choice is AGREE)
    yn = sum(1 for b in ballots if b.choice is AGREE)
    if Fraction(pa, area) < Fraction(2, 3) or Fraction(pn, heads) < Fraction(2, 3):
        return False
    if kind is SPECIAL:
        return Fraction(ya, pa) >= Fraction(3, 4) and Fraction(yn, pn) >= Fraction(3, 4)
    return Fraction(ya, pa) > Fraction(1, 2) and Fraction(yn, pn) > Fraction(1, 2)


def test_random_small_elections_agree_with_a_fraction_oracle() -> None:
    rng = random.Random(278)
    for _ in range(3000):
        heads = rng.randint(1, 9)
        areas = [rng.randint(1, 12) for _ in range(heads)]
        voting = [i for i in range(heads) if rng.random() < 0.8]
        ballots = [CountedChoice(f"p{i}", areas[i], rng.choice(list(Choice))) for i in voting]
        kind = rng.choice([ORDINARY, SPECIAL])
        result = count(sum(areas), heads, kind, ballots)
        assert result.raw.passed == _fraction_oracle(sum(areas), heads, kind, ballots)
