"""Reporting periods in China Standard Time: quarters ('2026Q1') and half-years ('2026H1')."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from server.errors import InvalidInput

# The plan's quarters are calendar quarters in Beijing time (UTC+8, no daylight saving).
CST = timezone(timedelta(hours=8), "CST")
_PERIOD = re.compile(r"^(\d{4})(Q[1-4]|H[12])$")
QUARTER_PATTERN = r"^\d{4}Q[1-4]$"
PERIOD_PATTERN = r"^\d{4}(Q[1-4]|H[12])$"


@dataclass(frozen=True)
class Period:
    """A quarter or half-year: its label, bounds (aware UTC, end exclusive) and quarters."""

    label: str
    starts_at: datetime
    ends_at: datetime
    quarters: tuple[str, ...]

    @property
    def is_quarter(self) -> bool:
        return "Q" in self.label


def _month_start(year: int, month: int) -> datetime:
    year += (month - 1) // 12
    month = (month - 1) % 12 + 1
    return datetime(year, month, 1, tzinfo=CST).astimezone(UTC)


def period(label: str, field: str = "period") -> Period:
    """Parse '2026Q1' or '2026H1'; a bad label is refused with the field's path."""
    match = _PERIOD.match(label)
    if match is None:
        raise InvalidInput(fields={field: "应为 2026Q1 或 2026H1 形式"})
    year, part = int(match.group(1)), match.group(2)
    n = int(part[1])
    if part[0] == "Q":
        first = 3 * (n - 1) + 1
        return Period(label, _month_start(year, first), _month_start(year, first + 3), (label,))
    first = 6 * (n - 1) + 1
    quarters = tuple(f"{year}Q{q}" for q in ((1, 2) if n == 1 else (3, 4)))
    return Period(label, _month_start(year, first), _month_start(year, first + 6), quarters)


def quarter_of(when: datetime) -> str:
    local = when.astimezone(CST)
    return f"{local.year}Q{(local.month - 1) // 3 + 1}"


def previous_quarter(label: str) -> str:
    year, n = int(label[:4]), int(label[5])
    return f"{year - 1}Q4" if n == 1 else f"{year}Q{n - 1}"


def last_ended_quarter(now: datetime) -> str:
    """The most recent quarter that has fully ended at `now`."""
    return previous_quarter(quarter_of(now))
