"""The cluster-wide host limits' bookkeeping, in process (the Ray tests run it as an actor):
slots per host, spacing of request starts, Retry-After, leases that outlive dead holders, and
hosts that stop answering (down for the job, probed at growing intervals)."""
from __future__ import annotations

import pytest

from manuscripts_search.distributed import host_limits as host_limits_module
from manuscripts_search.distributed.host_limits import FULL_POLL_SECONDS, HostLimits
from manuscripts_search.host_health import DOWN, GO, PROBE, HealthPolicy


class ManualClock:
    """Monotonic time that moves only when a test says so: leases, spacing and probe intervals are
    checked to the millisecond without sleeping, so a loaded machine cannot move them."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    manual = ManualClock()
    monkeypatch.setattr(host_limits_module, "time", manual)
    return manual


def test_slots_per_host_are_counted_and_given_back():
    limits = HostLimits(max_per_host=2)
    first, second = limits.reserve("https://a.example"), limits.reserve("https://a.example")
    assert first[0] and second[0] and first[0] != second[0]
    assert limits.reserve("https://a.example") == (0, FULL_POLL_SECONDS, GO)
    assert limits.reserve("https://b.example")[0]  # another host has its own slots
    limits.release("https://a.example", first[0])
    assert limits.reserve("https://a.example", "node-2:77")[0]
    assert limits.stats()["https://a.example"] == {"granted": 3, "in_flight": 2, "clients": 2}


def test_starts_are_spaced_by_the_rate_and_pushed_back_by_retry_after(clock):
    limits = HostLimits(max_per_host=8, requests_per_second=10)
    token, wait, _ = limits.reserve("h")
    assert token and wait == 0.0
    token, wait, _ = limits.reserve("h")
    assert token == 0 and wait == pytest.approx(0.1)
    clock.sleep(wait)
    assert limits.reserve("h")[0]
    limits.defer("h", 5.0)
    token, wait, _ = limits.reserve("h")
    assert token == 0 and wait == pytest.approx(5.0)


def test_a_slot_whose_holder_died_comes_back_when_its_lease_runs_out(clock):
    limits = HostLimits(max_per_host=1, lease_seconds=0.05)
    assert limits.reserve("h")[0]  # its holder never releases it
    assert limits.reserve("h")[0] == 0
    clock.sleep(0.049)
    assert limits.reserve("h")[0] == 0
    clock.sleep(0.002)
    assert limits.reserve("h")[0]


def test_a_host_that_stops_answering_is_down_for_every_client_and_probed_at_growing_intervals(clock):
    limits = HostLimits(max_per_host=8, health=HealthPolicy(down_after=3, probe_after=0.1, probe_max=0.3))
    tokens = [limits.reserve("h", f"node-{n}:1")[0] for n in range(4)]
    limits.release("h", tokens[0], answered=False)
    limits.release("h", tokens[1], answered=True)  # an answer in between: not in a row
    for token in tokens[2:]:
        limits.release("h", token, answered=False)
    assert not limits.is_down("h")
    limits.release("h", limits.reserve("h")[0], answered=False)
    assert limits.is_down("h") and limits.down_hosts() == ["h"] and limits.failures("h") == 3
    assert limits.reserve("h", "node-9:1") == (0, 0.0, DOWN)  # any process of the job
    assert limits.reserve("other")[2] == GO
    clock.sleep(0.099)
    assert limits.reserve("h")[2] == DOWN
    clock.sleep(0.002)
    probe, _, admission = limits.reserve("h")
    assert probe and admission == PROBE
    assert limits.reserve("h") == (0, 0.0, DOWN)  # one probe at a time
    limits.release("h", probe, answered=False)
    clock.sleep(0.19)
    assert limits.reserve("h")[2] == DOWN  # the next probe waits twice as long
    clock.sleep(0.02)
    probe, _, admission = limits.reserve("h")
    assert admission == PROBE
    limits.release("h", probe, answered=True)  # it answered: back for everyone
    assert not limits.is_down("h") and limits.reserve("h")[2] == GO


@pytest.mark.parametrize("arguments, message", [((0,), "max_per_host must be at least 1"),
                                                ((1, -1.0), "requests_per_second must be >= 0"),
                                                ((1, 0.0, 0.0), "lease_seconds must be positive")])
def test_bad_limits_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        HostLimits(*arguments)
