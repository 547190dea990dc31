"""A label means the same thing on every metric that has it, and each meaning is written down."""

from __future__ import annotations

from prometheus_client.metrics import MetricWrapperBase

from common import telemetry

METRICS = [m for m in vars(telemetry).values() if isinstance(m, MetricWrapperBase)]


def test_every_label_has_one_documented_meaning() -> None:
    assert len(METRICS) == len(telemetry.METRIC_NAMES)
    used = {label for metric in METRICS for label in metric._labelnames}
    assert used <= set(telemetry.LABELS), used - set(telemetry.LABELS)


def test_retries_and_failures_do_not_give_one_label_two_meanings() -> None:
    # Retries are counted where a job is claimed, which knows the job's kind, not the task;
    # failures where a task raised, which knows the task.
    assert telemetry.TASK_RETRIES._labelnames == ("kind",)
    assert telemetry.TASK_FAILURES._labelnames == ("task",)
