"""The cluster-wide host limits' bookkeeping, in process (the Ray tests run it as an actor):
slots per host, spacing of request starts, Retry-After, and leases that outlive dead holders."""
from __future__ import annotations

import time

import pytest

from manuscripts_search.distributed.host_limits import FULL_POLL_SECONDS, HostLimits


def test_slots_per_host_are_counted_and_given_back():
    limits = HostLimits(max_per_host=2)
    first, second = limits.reserve("https://a.example"), limits.reserve("https://a.example")
    assert first[0] and second[0] and first[0] != second[0]
    assert limits.reserve("https://a.example") == (0, FULL_POLL_SECONDS)
    assert limits.reserve("https://b.example")[0]  # another host has its own slots
    limits.release("https://a.example", first[0])
    assert limits.reserve("https://a.example", "node-2:77")[0]
    assert limits.stats()["https://a.example"] == {"granted": 3, "in_flight": 2, "clients": 2}


def test_starts_are_spaced_by_the_rate_and_pushed_back_by_retry_after():
    limits = HostLimits(max_per_host=8, requests_per_second=10)
    token, wait = limits.reserve("h")
    assert token and wait == 0.0
    token, wait = limits.reserve("h")
    assert token == 0 and 0.05 < wait <= 0.1
    time.sleep(wait)
    assert limits.reserve("h")[0]
    limits.defer("h", 5.0)
    token, wait = limits.reserve("h")
    assert token == 0 and 4.9 < wait <= 5.0


def test_a_slot_whose_holder_died_comes_back_when_its_lease_runs_out():
    limits = HostLimits(max_per_host=1, lease_seconds=0.05)
    assert limits.reserve("h")[0]  # its holder never releases it
    assert limits.reserve("h")[0] == 0
    time.sleep(0.06)
    assert limits.reserve("h")[0]


@pytest.mark.parametrize("arguments, message", [((0,), "max_per_host must be at least 1"),
                                                ((1, -1.0), "requests_per_second must be >= 0"),
                                                ((1, 0.0, 0.0), "lease_seconds must be positive")])
def test_bad_limits_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        HostLimits(*arguments)
