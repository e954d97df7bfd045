"""Hybrid logical clock: monotonic, causal, and small enough for a JSON number."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import hlc

NOW_MS = 1_795_600_000_000  # 2026-11-25


def ms(year: int) -> int:
    return int(datetime(year, 1, 1, tzinfo=UTC).timestamp() * 1000)


def test_pack_and_unpack() -> None:
    stamp = hlc.pack(NOW_MS, 5)
    assert (hlc.physical_ms(stamp), stamp & hlc.COUNTER_MASK) == (NOW_MS, 5)


def test_real_times_fit_in_53_bits_until_2248() -> None:
    # A wall-clock HLC must pass the wire schema (hlc <= MAX_HLC) for as long as we care.
    assert hlc.pack(ms(2026), 0) <= hlc.MAX_HLC
    assert hlc.pack(ms(2248), hlc.COUNTER_MASK) <= hlc.MAX_HLC
    assert hlc.pack(ms(2249), 0) > hlc.MAX_HLC


def test_tick_follows_the_wall_clock() -> None:
    assert hlc.tick(0, NOW_MS) == hlc.pack(NOW_MS, 0)
    assert hlc.tick(hlc.pack(NOW_MS - 5, 9), NOW_MS) == hlc.pack(NOW_MS, 0)


def test_tick_within_one_millisecond_counts() -> None:
    first = hlc.tick(0, NOW_MS)
    assert [hlc.tick(first + k, NOW_MS) for k in range(3)] == [first + 1, first + 2, first + 3]


def test_tick_when_the_clock_goes_back() -> None:
    last = hlc.pack(NOW_MS, 3)
    assert hlc.tick(last, NOW_MS - 60_000) == hlc.pack(NOW_MS, 4)


def test_counter_overflow_carries_into_the_milliseconds() -> None:
    last = hlc.pack(NOW_MS, hlc.COUNTER_MASK)
    assert hlc.tick(last, NOW_MS) == hlc.pack(NOW_MS + 1, 0)


def test_observe_a_remote_clock_ahead() -> None:
    remote = hlc.pack(NOW_MS + 10_000, 7)
    assert hlc.observe(hlc.pack(NOW_MS, 0), remote, NOW_MS) == remote + 1


def test_observe_a_remote_clock_behind() -> None:
    assert hlc.observe(0, hlc.pack(NOW_MS - 10_000, 7), NOW_MS) == hlc.pack(NOW_MS, 0)


def test_too_far_ahead() -> None:
    skew = 300_000
    assert not hlc.too_far_ahead(hlc.pack(NOW_MS + skew, hlc.COUNTER_MASK), NOW_MS, skew)
    assert hlc.too_far_ahead(hlc.pack(NOW_MS + skew + 1, 0), NOW_MS, skew)
    assert not hlc.too_far_ahead(hlc.pack(NOW_MS - 10**9, 0), NOW_MS, skew)


events = st.lists(
    st.tuples(
        st.sampled_from(["tick", "observe"]),
        st.integers(-120_000, 120_000),  # the wall clock wanders around NOW_MS
        st.integers(-120_000, 120_000),  # and so does the remote's
        st.integers(0, hlc.COUNTER_MASK),
    ),
    min_size=1,
    max_size=60,
)


@given(events)
@settings(deadline=None, max_examples=150)
def test_every_event_is_later_than_everything_it_saw(
    steps: list[tuple[str, int, int, int]],
) -> None:
    last = 0
    for kind, wall, remote_wall, counter in steps:
        now = NOW_MS + wall
        if kind == "tick":
            new = hlc.tick(last, now)
            assert new > last
        else:
            remote = hlc.pack(NOW_MS + remote_wall, counter)
            new = hlc.observe(last, remote, now)
            assert new > last and new > remote
        assert hlc.physical_ms(new) >= now  # never behind the local wall clock
        last = new
