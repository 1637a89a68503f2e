"""Host telemetry: psutil samples of CPU, memory, network throughput and request latency,
turned into HOST events for the same scorer that scores requests."""

from __future__ import annotations

from carevault.security.events import EventKind
from carevault.security.telemetry import HostSampler, LatencyWindow


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_sample_measures_the_host_and_becomes_a_host_event():
    latency = LatencyWindow()
    for ms in range(1, 101):
        latency.add(float(ms))
    clock = Clock()
    sampler = HostSampler(latency, clock=clock)
    clock.now += 10
    sample = sampler.sample()
    assert 0.0 <= sample.cpu <= 1.0
    assert 0.0 < sample.memory <= 1.0
    assert sample.net_mbps >= 0.0
    assert (sample.latency_p95_ms, sample.requests) == (95.0, 100)
    event = sample.to_event()
    assert event.kind is EventKind.HOST
    assert (event.cpu, event.net_mbps, event.latency_ms) == (
        sample.cpu,
        sample.net_mbps,
        sample.latency_p95_ms,
    )
    assert event.actor == event.address == event.session == ""


def test_latency_is_reported_once_per_sample():
    latency = LatencyWindow()
    latency.add(12.0)
    assert latency.drain_p95() == (12.0, 1)
    assert latency.drain_p95() == (0.0, 0)


def test_samples_are_taken_only_when_due():
    clock = Clock()
    sampler = HostSampler(clock=clock)
    assert sampler.take_if_due(60) is None
    clock.now += 61
    assert sampler.take_if_due(60) is not None
    assert sampler.take_if_due(60) is None
