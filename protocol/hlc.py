"""Hybrid logical clock (Kulkarni et al. 2014) packed into one integer.

Pure: no I/O; the wall clock is always passed in, in milliseconds since the epoch.

`hlc = physical_ms << 10 | counter`. Ordering integers orders events; the counter
breaks ties among events in one millisecond and carries causality past a device
whose wall clock is behind (past 1023 it carries into the milliseconds, which only
moves the clock a little ahead). The whole value must stay within 53 bits, exact as
a JSON number in every language: 43 bits of milliseconds last until the year 2248.
"""

from __future__ import annotations

COUNTER_BITS = 10
COUNTER_MASK = (1 << COUNTER_BITS) - 1
MAX_HLC = (1 << 53) - 1  # stays exact in JSON numbers of every language


def pack(physical_ms: int, counter: int) -> int:
    return (physical_ms << COUNTER_BITS) | counter


def physical_ms(hlc: int) -> int:
    return hlc >> COUNTER_BITS


def tick(last: int, now_ms: int) -> int:
    """The clock for a local event after `last`."""
    wall = pack(now_ms, 0)
    if wall > last:
        return wall
    return last + 1


def observe(last: int, remote: int, now_ms: int) -> int:
    """The clock after seeing a remote event stamped `remote`."""
    return tick(max(last, remote), now_ms)


def too_far_ahead(hlc: int, now_ms: int, max_skew_ms: int) -> bool:
    return physical_ms(hlc) > now_ms + max_skew_ms
