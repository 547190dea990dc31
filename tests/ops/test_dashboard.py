"""The Grafana dashboard: valid JSON whose PromQL only names metrics the code exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

import promql_parser
from prometheus_client.metrics import MetricWrapperBase

from common import telemetry
from common.telemetry import METRIC_NAMES
from tests.ops.support import DOCKER

DASHBOARD = DOCKER / "grafana" / "dashboards" / "ragq.json"
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Grafana's variables, replaced by a plausible value before parsing.
GRAFANA_VARIABLES = re.compile(r"\$(__rate_interval|__interval|__range)\b|\$\{[^}]+\}")
# What the design asks the dashboard to show, and a metric that shows it.
REQUIRED = {
    "queue depth": "ragq_queue_depth",
    "job latency": "ragq_job_run_seconds_bucket",
    "tokens/s": "ragq_llm_tokens_total",
    "chunks/s": "ragq_ingest_chunks_total",
    "error rate": "ragq_jobs_finished_total",
}

Panel = dict[str, Any]


@cache
def _dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def _panels(panels: list[Panel]) -> Iterator[Panel]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _expressions() -> Iterator[tuple[str, str]]:
    for panel in _panels(_dashboard()["panels"]):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def _histograms() -> set[str]:
    names = set()
    for value in vars(telemetry).values():
        if isinstance(value, MetricWrapperBase):
            names.update(m.name for m in value.describe() if m.type == "histogram")
    return names


def allowed_series() -> set[str]:
    """Series names a query may select: the exported metrics, histograms with their suffixes."""
    histograms = _histograms()
    assert histograms <= METRIC_NAMES
    return set(METRIC_NAMES) | {h + s for h in histograms for s in HISTOGRAM_SUFFIXES}


def selected_series(expr: str) -> list[str | None]:
    """Metric names of every vector selector in a PromQL expression (None: selector by labels)."""
    ast = promql_parser.parse(GRAFANA_VARIABLES.sub("5m", expr))
    names: list[str | None] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            names.append(node.name)
        return True

    promql_parser.walk(ast, visit)
    return names


def test_dashboard_loads() -> None:
    """The JSON loads, with a uid, a Prometheus data source variable and unique panel ids."""
    dashboard = _dashboard()
    assert dashboard["uid"] and dashboard["title"]
    (variable,) = dashboard["templating"]["list"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    ids = [panel["id"] for panel in _panels(dashboard["panels"])]
    assert len(ids) == len(set(ids))


def test_panels_use_the_datasource_variable() -> None:
    """Every query panel reads the selected Prometheus data source."""
    for panel in _panels(_dashboard()["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]


def test_queries_name_only_exported_metrics() -> None:
    """Every PromQL expression parses and selects only metrics of common.telemetry."""
    allowed = allowed_series()
    expressions = list(_expressions())
    assert expressions
    for title, expr in expressions:
        names = selected_series(expr)
        assert names, f"{title}: {expr}"
        for name in names:
            assert name in allowed, f"{title}: {name!r} is not exported ({expr})"


def test_dashboard_shows_what_the_design_asks() -> None:
    """Queue depth, job latency, tokens/s, chunks/s and error rate all have a panel."""
    used = {name for _, expr in _expressions() for name in selected_series(expr)}
    missing = {what for what, metric in REQUIRED.items() if metric not in used}
    assert not missing


def test_the_check_catches_an_unknown_metric() -> None:
    """An expression with a metric the code does not export is caught."""
    names = selected_series('sum(rate(ragq_made_up_total{queue="llm"}[$__rate_interval]))')
    assert names == ["ragq_made_up_total"]
    assert not set(names) <= allowed_series()
