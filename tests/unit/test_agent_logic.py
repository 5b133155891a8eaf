"""Pure logic of the agents: health verdicts, anomaly scores, alert identity and config."""

from __future__ import annotations

import math
import random
from dataclasses import fields
from pathlib import Path

import pytest

from agents.builtin.alerting import Condition, fingerprint, matches
from agents.builtin.coordinator import AgentCoordinator
from agents.builtin.heartbeat import HeartbeatHealthAgent, judge
from agents.builtin.performance import Ewma, MetricRules, PerformanceMonitor
from agents.runtime.agent import load_config
from bus.errors import ConfigError

# --- judge ------------------------------------------------------------------------------

# period 1 s, grace 2 s, 3 misses: up through 3 s, late through 5 s, down after.
PERIOD, GRACE, MISSES = 1.0, 2.0, 3


@pytest.mark.parametrize(
    ("status", "age", "expected"),
    [
        ("running", 0.0, "up"),
        ("running", 2.999, "up"),
        ("running", 3.0, "up"),  # period + grace is still on time
        ("running", 3.001, "late"),
        ("running", 4.0, "late"),
        ("running", 5.0, "late"),  # period × misses + grace is still only late
        ("running", 5.001, "down"),
        ("running", 3600.0, "down"),
        ("starting", 1.0, "up"),
        ("starting", 5.001, "down"),
        ("stopping", 4.0, "late"),
        ("paused", 0.0, "paused"),
        ("paused", 4.0, "paused"),
        ("dead", 0.0, "down"),  # dead wins over a fresh beat
        ("dead", 4.0, "down"),
    ],
)
def test_judge_boundaries(status: str, age: float, expected: str) -> None:
    assert judge(status, age, PERIOD, GRACE, MISSES) == expected


def test_judge_scales_with_the_instance_period() -> None:
    # a slow beater (period 10 s) is still up after an age that is down for a 1 s beater
    assert judge("running", 6.0, 1.0, 2.0, 3) == "down"
    assert judge("running", 6.0, 10.0, 2.0, 3) == "up"
    assert judge("running", 12.001, 10.0, 2.0, 3) == "late"
    assert judge("running", 32.001, 10.0, 2.0, 3) == "down"


def test_judge_with_one_miss_goes_straight_from_up_to_down() -> None:
    assert judge("running", 3.0, 1.0, 2.0, 1) == "up"
    assert judge("running", 3.001, 1.0, 2.0, 1) == "down"


# --- Ewma -------------------------------------------------------------------------------


def _noisy(n: int, seed: int = 7, mean: float = 50.0, spread: float = 1.0) -> list[float]:
    rng = random.Random(seed)
    return [mean + rng.uniform(-spread, spread) for _ in range(n)]


def test_ewma_first_sample_has_no_score_and_sets_the_mean() -> None:
    tracker = Ewma(0.1)
    assert tracker.update(42.0) == 0.0
    assert tracker.mean == 42.0 and tracker.n == 1


def test_ewma_flags_a_spike_after_warm_up() -> None:
    tracker = Ewma(0.1)
    scores = [tracker.update(x) for x in _noisy(60)]
    assert max(abs(z) for z in scores[30:]) < 4.0  # the noise itself is not anomalous
    assert abs(tracker.mean - 50.0) < 1.0
    assert tracker.update(80.0) >= 4.0


def test_ewma_flags_a_drop_after_warm_up() -> None:
    tracker = Ewma(0.1)
    for x in _noisy(60):
        tracker.update(x)
    assert tracker.update(20.0) <= -4.0


def test_ewma_steady_input_is_never_anomalous() -> None:
    tracker = Ewma(0.1)
    assert all(tracker.update(50.0) == 0.0 for _ in range(200))
    assert tracker.mean == 50.0 and tracker.var == 0.0
    assert tracker.n == 200


def test_ewma_steady_noise_is_never_anomalous() -> None:
    tracker = Ewma(0.1)
    scores = [tracker.update(50.0 + math.sin(i / 3)) for i in range(500)]
    assert max(abs(z) for z in scores[30:]) < 4.0


def test_ewma_mean_follows_a_level_shift() -> None:
    tracker = Ewma(0.2)
    for x in _noisy(50):
        tracker.update(x)
    for x in _noisy(100, seed=8, mean=70.0):
        tracker.update(x)
    assert abs(tracker.mean - 70.0) < 1.0
    assert abs(tracker.update(70.5)) < 4.0  # the new level is the new normal


def test_ewma_flags_a_jump_after_a_perfectly_flat_warm_up() -> None:
    """Until 6266420, a zero variance gave z = 0: a jump after a flat stretch never counted."""
    tracker = Ewma(0.1)
    for _ in range(40):
        tracker.update(50.0)
    assert abs(tracker.update(80.0)) >= 4.0


def _rules(**anomaly: object) -> MetricRules:
    """The PerformanceMonitor's rules on host h1: its default anomaly settings updated by ``anomaly``."""
    config = PerformanceMonitor.Config(thresholds={})
    config.anomaly.update(anomaly)
    return MetricRules("h1", config.thresholds, config.anomaly, config.alert_for)


def _feed(rules: MetricRules, value: float) -> list[Condition]:
    return rules.conditions([("host", None, "host.load1", value)])


def test_anomaly_rule_does_not_judge_during_warm_up() -> None:
    rules = _rules(metrics=["host.load1"], z=2.5, warmup=20, consecutive=1)
    for x in _noisy(15):
        _feed(rules, x)
    assert _feed(rules, 500.0) == []  # sample 16 of a 20-sample warm-up
    assert rules.trackers["host.load1"].streak == 0


def test_anomaly_rule_needs_consecutive_samples_after_warm_up() -> None:
    rules = _rules(metrics=["host.load1"], z=2.5, warmup=20, consecutive=2)
    assert not any(_feed(rules, x) for x in _noisy(30))
    assert _feed(rules, 90.0) == []  # one anomalous sample is not enough
    found = _feed(rules, 90.0)
    assert [c.rule for c in found] == ["anomaly"]
    assert found[0].labels == {"metric": "host.load1", "host": "h1"}
    assert found[0].hold_for == 0.0


def test_anomaly_rule_ignores_metrics_it_does_not_track() -> None:
    rules = _rules(metrics=["host.cpu_percent"], z=2.5, warmup=5, consecutive=1)
    assert not any(_feed(rules, x) for x in [*_noisy(30), 900.0, 900.0])
    assert rules.trackers == {}


def test_anomaly_rule_with_default_settings_alerts_on_a_sustained_jump() -> None:
    """Until 6266420, the anomalous sample inflated the variance: the next sample of any step had
    z = 3.0, so with the defaults (z 4, consecutive 3) a sustained jump never alerted."""
    rules = _rules(metrics=["host.load1"])  # defaults: alpha 0.1, z 4, warmup 30, consecutive 3
    assert not any(_feed(rules, x) for x in _noisy(40))
    found = [c for x in [90.0] * 10 for c in _feed(rules, x)]
    assert found and {c.rule for c in found} == {"anomaly"}


def test_anomaly_rule_adapts_to_a_lasting_level_shift() -> None:
    rules = _rules(metrics=["host.load1"])  # the defaults
    assert not any(_feed(rules, x) for x in _noisy(40))
    flagged = [bool(_feed(rules, x)) for x in _noisy(200, seed=9, mean=90.0)]
    assert any(flagged[:20])  # the jump is news...
    assert not any(flagged[-100:])  # ...and then the new normal


# --- fingerprint and matches ---------------------------------------------------------------


def test_fingerprint_is_stable_across_processes_and_releases() -> None:
    # a fixed value: alerts stored by an older version must keep matching
    assert fingerprint("agent_down", {"agent": "performance", "host": "h1"}) == (
        "68294c0308a9cb2548ff88ad00d9b797"
    )


def test_fingerprint_ignores_label_order() -> None:
    one = fingerprint("threshold", {"metric": "host.cpu_percent", "host": "h1", "agent": "x"})
    other = fingerprint("threshold", {"agent": "x", "host": "h1", "metric": "host.cpu_percent"})
    assert one == other
    assert len(one) == 32 and all(c in "0123456789abcdef" for c in one)


@pytest.mark.parametrize(
    ("rule", "labels"),
    [
        ("agent_down", {"agent": "performance", "host": "h2"}),  # another host
        ("agent_down", {"agent": "heartbeat", "host": "h1"}),  # another agent
        ("threshold", {"agent": "performance", "host": "h1"}),  # another rule
        ("agent_down", {"agent": "performance"}),  # a label fewer
        ("agent_down", {"agent": "performance", "host": "h1", "pid": "1"}),  # a label more
    ],
)
def test_fingerprint_differs_for_another_rule_or_labels(rule: str, labels: dict[str, str]) -> None:
    assert fingerprint(rule, labels) != fingerprint("agent_down", {"agent": "performance", "host": "h1"})


def test_condition_fingerprint_is_the_fingerprint_of_its_rule_and_labels() -> None:
    cond = Condition("agent_down", {"host": "h1", "agent": "performance"}, "critical", "down", 1.0)
    assert cond.fingerprint == fingerprint("agent_down", {"agent": "performance", "host": "h1"})


@pytest.mark.parametrize(
    ("matchers", "labels", "expected"),
    [
        ({"agent": "performance"}, {"agent": "performance", "host": "h1"}, True),
        ({"agent": "performance", "host": "h1"}, {"host": "h1", "agent": "performance"}, True),
        ({"agent": "performance", "host": "h2"}, {"agent": "performance", "host": "h1"}, False),
        ({"agent": "heartbeat"}, {"agent": "performance"}, False),
        ({"alertname": "agent_down"}, {"alertname": "agent_down", "agent": "x"}, True),
        ({"queue": "q"}, {"agent": "performance"}, False),  # a missing label never equals
        ({"n": 3}, {"n": "3"}, True),  # compared as text, as YAML and JSON may differ
        ({"agent": "Performance"}, {"agent": "performance"}, False),  # case matters
        ({}, {"agent": "performance"}, True),  # no matchers: everything (the table forbids it)
    ],
)
def test_matches(matchers: dict[str, object], labels: dict[str, object], expected: bool) -> None:
    assert matches(matchers, labels) is expected


def test_matches_a_missing_label_never_equals_the_text_none() -> None:
    """Until 6266420, matches() compared str(labels.get(k)): a missing label equalled 'None'."""
    assert matches({"host": "None"}, {"agent": "performance"}) is False


# --- load_config ------------------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "monitoring.yml"
    path.write_text(text)
    return path


def test_load_config_defaults_come_from_the_built_in_file() -> None:
    config = load_config(HeartbeatHealthAgent)
    assert isinstance(config, HeartbeatHealthAgent.Config)
    assert (config.interval, config.grace, config.misses, config.alert_for) == (1.0, 2.0, 3, 2.0)
    # the built-in file overrides the coordinator's lease (Config default 6.0)
    assert load_config(AgentCoordinator).lease == 8.0


def test_load_config_overrides_from_a_yaml_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "heartbeat:\n  interval: 0.5\n  misses: 2\n  heartbeat_interval: 0.25\n"
        "performance:\n  thresholds:\n    host.cpu_percent: [10, 20]\n",
    )
    beat = load_config(HeartbeatHealthAgent, path)
    assert (beat.interval, beat.misses, beat.heartbeat_interval) == (0.5, 2, 0.25)
    assert beat.grace == HeartbeatHealthAgent.Config().grace  # keys left out keep the default
    perf = load_config(PerformanceMonitor, path)
    assert perf.thresholds == {"host.cpu_percent": [10, 20]}  # a mapping replaces, not merges
    # an agent without a section in the file gets its Config defaults
    coordinator = load_config(AgentCoordinator, path)
    assert coordinator == AgentCoordinator.Config()


def test_load_config_empty_file_and_empty_section_mean_defaults(tmp_path: Path) -> None:
    assert load_config(HeartbeatHealthAgent, _write(tmp_path, "")) == HeartbeatHealthAgent.Config()
    assert load_config(HeartbeatHealthAgent, _write(tmp_path, "heartbeat:\n")) == (
        HeartbeatHealthAgent.Config()
    )


def test_load_config_unknown_key_names_the_setting_and_the_known_keys(tmp_path: Path) -> None:
    path = _write(tmp_path, "heartbeat:\n  grace: 1\n  gracee: 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(HeartbeatHealthAgent, path)
    text = str(info.value)
    assert text.startswith("BGAGENTS_MONITORING_FILE:")
    assert "gracee" in text and "'heartbeat'" in text and str(path) in text
    assert info.value.hint is not None
    known = {f.name for f in fields(HeartbeatHealthAgent.Config)}
    assert all(name in info.value.hint for name in known)


def test_load_config_unknown_key_of_another_agent_is_not_this_agents_problem(tmp_path: Path) -> None:
    path = _write(tmp_path, "performance:\n  bogus: 1\n")
    assert load_config(HeartbeatHealthAgent, path) == HeartbeatHealthAgent.Config()
    with pytest.raises(ConfigError, match="bogus"):
        load_config(PerformanceMonitor, path)


@pytest.mark.parametrize("text", ["heartbeat: [\n", "heartbeat:\n  interval: 1\n bad: indent\n", "a: b: c\n"])
def test_load_config_bad_yaml(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=r"^BGAGENTS_MONITORING_FILE: .* is not valid YAML"):
        load_config(HeartbeatHealthAgent, path)


@pytest.mark.parametrize("text", ["- heartbeat\n- performance\n", "just text\n", "42\n"])
def test_load_config_document_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match=r"^BGAGENTS_MONITORING_FILE: .* must map agent names"):
        load_config(HeartbeatHealthAgent, _write(tmp_path, text))


def test_load_config_section_that_is_not_a_mapping(tmp_path: Path) -> None:
    """Until 6266420, 'heartbeat: 5' raised TypeError ('int' object is not iterable)."""
    with pytest.raises(ConfigError, match="BGAGENTS_MONITORING_FILE"):
        load_config(HeartbeatHealthAgent, _write(tmp_path, "heartbeat: 5\n"))


def test_load_config_missing_file_given_explicitly(tmp_path: Path) -> None:
    """Until 6266420, a missing file that was named explicitly silently meant the defaults."""
    with pytest.raises(ConfigError, match="BGAGENTS_MONITORING_FILE"):
        load_config(HeartbeatHealthAgent, tmp_path / "no-such-monitoring.yml")
