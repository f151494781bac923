"""Dates and trading days in China Standard Time (UTC+8), derived from block time only.

Business rules of the Chinese markets are stated in CST calendar days: dividend record dates, the
15:00 fund cut-off, e-CNY daily limits that reset at midnight. Block time is milliseconds since the
Unix epoch (UTC), agreed by consensus, so these functions are pure and deterministic.
"""

from __future__ import annotations

import datetime

from consortia.execution.errors import TxFailure

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
CST_OFFSET_MS = 8 * HOUR_MS
_EPOCH = datetime.date(1970, 1, 1)


class InvalidDateError(TxFailure):
    code = "INVALID_DATE"


def _to_date(yyyymmdd: int) -> datetime.date:
    if not 19700102 <= yyyymmdd <= 99991230:
        raise InvalidDateError(f"{yyyymmdd} is not a YYYYMMDD date")
    try:
        return datetime.date(yyyymmdd // 10000, yyyymmdd // 100 % 100, yyyymmdd % 100)
    except ValueError as exc:
        raise InvalidDateError(f"{yyyymmdd} is not a calendar date") from exc


def _from_date(day: datetime.date) -> int:
    return day.year * 10000 + day.month * 100 + day.day


def date_start_ms(yyyymmdd: int) -> int:
    """Block time (ms since the epoch, UTC) of 00:00 CST on ``yyyymmdd``; INVALID_DATE if none."""
    return (_to_date(yyyymmdd) - _EPOCH).days * DAY_MS - CST_OFFSET_MS


def cst_date(time_ms: int) -> int:
    """The CST calendar date (YYYYMMDD) of a block time."""
    return _from_date(_EPOCH + datetime.timedelta(days=(time_ms + CST_OFFSET_MS) // DAY_MS))


def cst_time_of_day_ms(time_ms: int) -> int:
    """Milliseconds since 00:00 CST of the block time's CST day."""
    return (time_ms + CST_OFFSET_MS) % DAY_MS


def is_trading_day(yyyymmdd: int) -> bool:
    """Monday to Friday. (Exchange holidays are not modelled: a fund manager simply publishes no
    NAV for a holiday and orders wait for the next published trading day.)"""
    return _to_date(yyyymmdd).weekday() < 5


def next_trading_day(yyyymmdd: int) -> int:
    """The first trading day strictly after ``yyyymmdd``."""
    day = _to_date(yyyymmdd) + datetime.timedelta(days=1)
    while day.weekday() >= 5:
        day += datetime.timedelta(days=1)
    return _from_date(day)


def trading_day_of_order(time_ms: int, cutoff_ms_of_day: int) -> int:
    """The trading day T whose price an order placed at ``time_ms`` gets ("unknown price" rule):
    today if today is a trading day and the order precedes the cut-off, else the next one."""
    today = cst_date(time_ms)
    if is_trading_day(today) and cst_time_of_day_ms(time_ms) < cutoff_ms_of_day:
        return today
    return next_trading_day(today)
