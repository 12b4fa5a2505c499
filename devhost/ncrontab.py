"""NCRONTAB schedules as the Functions timer trigger reads them: seconds field first, 5 fields accepted."""
from __future__ import annotations

from datetime import datetime

from croniter import croniter


class ScheduleError(ValueError):
    """A timer schedule is not a valid NCRONTAB expression."""


def next_occurrence(expression: str, after: datetime) -> datetime:
    """The first time strictly after `after` that `expression` fires (same timezone as `after`)."""
    return _iterator(expression, after).get_next(datetime)


def _iterator(expression: str, start: datetime) -> croniter:
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise ScheduleError(f"timer schedule {expression!r} must have 6 fields (seconds first) or 5; "
                            "e.g. '0 */5 * * * *'")
    try:
        # NCRONTAB: a day must match both day-of-month and day-of-week (day_or=False).
        return croniter(expression, start, second_at_beginning=len(fields) == 6, day_or=False)
    except ValueError as error:
        raise ScheduleError(f"timer schedule {expression!r} is not valid NCRONTAB: {error}") from None


def validate(expression: str) -> None:
    _iterator(expression, datetime(2000, 1, 1))
