"""Next occurrences for the NCRONTAB examples of the Azure Functions timer trigger documentation."""
from datetime import datetime, timezone

import pytest

from devhost.ncrontab import ScheduleError, next_occurrence

START = datetime(2026, 11, 29, 8, 33, 20, tzinfo=timezone.utc)  # a Sunday


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


@pytest.mark.parametrize("expression, start, expected", [
    ("0 */5 * * * *", START, at(2026, 11, 29, 8, 35, 0)),          # every five minutes
    ("0 0 * * * *", START, at(2026, 11, 29, 9, 0, 0)),             # top of every hour
    ("0 0 */2 * * *", START, at(2026, 11, 29, 10, 0, 0)),          # every two hours
    ("0 0 9-17 * * *", START, at(2026, 11, 29, 9, 0, 0)),          # hourly from 9 to 5
    ("0 0 9-17 * * *", at(2026, 11, 29, 17, 0, 0), at(2026, 11, 30, 9, 0, 0)),
    ("0 30 9 * * *", START, at(2026, 11, 29, 9, 30, 0)),           # 9:30 every day
    ("0 30 9 * * 1-5", START, at(2026, 11, 30, 9, 30, 0)),         # 9:30 every weekday: Sunday -> Monday
    ("0 30 9 * * 1-5", at(2026, 12, 4, 9, 30, 0), at(2026, 12, 7, 9, 30, 0)),  # Friday -> Monday
    ("0 30 9 * Jan Mon", START, at(2027, 1, 4, 9, 30, 0)),         # 9:30 every Monday in January
    ("0 30 9 * Jan Mon", at(2027, 1, 4, 9, 30, 0), at(2027, 1, 11, 9, 30, 0)),
    ("*/5 * * * *", START, at(2026, 11, 29, 8, 35, 0)),            # 5 fields: minute first
    ("0 2 * * *", START, at(2026, 11, 30, 2, 0, 0)),
])
def test_next_occurrence(expression: str, start: datetime, expected: datetime) -> None:
    assert next_occurrence(expression, start) == expected


def test_day_of_month_and_day_of_week_must_both_match() -> None:
    # The 13th that is a Friday (NCRONTAB ANDs the two day fields).
    assert next_occurrence("0 0 0 13 * Fri", START) == at(2027, 8, 13, 0, 0, 0)


@pytest.mark.parametrize("expression", ["* * *", "0 0 25 * * *", "every monday"])
def test_invalid_expression_is_a_schedule_error(expression: str) -> None:
    with pytest.raises(ScheduleError, match="schedule"):
        next_occurrence(expression, START)
