"""Disappearing-message timers as typed by people: parsing, range, descriptions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from veil.client import ClientError
from veil.client.timers import PRESETS, describe_timer, parse_timer, short_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("off", 0),
        ("0", 0),
        ("5s", 5),
        ("30s", 30),
        ("1m", 60),
        ("5m", 300),
        ("1h", 3600),
        ("8h", 28_800),
        ("24h", 86_400),
        ("1d", 86_400),
        ("1h30m", 5_400),
        (" 2m 5s ", 125),
        ("90", 90),
        ("OFF", 0),
    ],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_timer(text) == seconds


@pytest.mark.parametrize("text", ["4s", "3", "25h", "2d", "86401s"])
def test_out_of_range_is_a_clear_error(text: str) -> None:
    with pytest.raises(ClientError, match="out of range: a timer is off or 5 seconds to 24 hours"):
        parse_timer(text)


@pytest.mark.parametrize("text", ["", "soon", "5x", "-5s", "1.5h", "h"])
def test_nonsense_is_a_clear_error(text: str) -> None:
    with pytest.raises(ClientError, match="not a timer"):
        parse_timer(text)


def test_every_preset_parses() -> None:
    assert [parse_timer(p) for p in PRESETS] == [0, 5, 30, 60, 300, 3600, 28_800, 86_400]


@given(st.integers(5, 86_400))
def test_any_second_in_range_round_trips_through_its_number(seconds: int) -> None:
    assert parse_timer(str(seconds)) == seconds
    assert describe_timer(seconds) != "off"


def test_descriptions() -> None:
    assert describe_timer(0) == "off"
    assert describe_timer(1) == "1 second"
    assert describe_timer(3600) == "1 hour"
    assert describe_timer(5_430) == "1 hour 30 minutes 30 seconds"
    assert short_duration(4_001) == "5s"
    assert short_duration(125_000) == "2m05s"
    assert short_duration(3_720_000) == "1h02m"
    assert short_duration(-5) == "0s"
