"""Dashboards that match: every metric named by a panel of a provisioned Grafana dashboard or by an
alert rule under deploy/ is one a real glint app exports on its live /metrics, and the labels a
panel groups or filters by are labels that metric carries.

The app is driven first (requests, a websocket with a message, a follow whose event a consumer
handles, /readyz) so that labelled metrics have series; a metric whose family is declared on
/metrics but has no series yet (dead letters, consumer lag, store errors on a healthy stack) is
accepted by name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import wait_for
from tests.support import bearer, frame_of, metric_names, open_socket, start_conversation, user_and_token

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# labels Prometheus adds at scrape time, and the synthetic series it makes itself
SCRAPE_LABELS = {"job", "instance"}
PROMETHEUS_SERIES = {"up"}


def dashboard_exprs() -> list[tuple[str, str]]:
    """(where, expr) for every panel target of every provisioned dashboard."""
    found = []
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        def walk(panels):
            for panel in panels:
                for target in panel.get("targets", []):
                    if target.get("expr"):
                        found.append((f"{path.name}: {panel['title']}", target["expr"]))
                walk(panel.get("panels", []))
        walk(json.loads(path.read_text(encoding="utf-8"))["panels"])
    return found


def rule_exprs() -> list[tuple[str, str]]:
    """(where, expr) for every alerting and recording rule of every rule file under deploy/."""
    found = []
    for path in sorted(DEPLOY.glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(doc, dict) and "groups" in doc:
            for group in doc["groups"]:
                for rule in group["rules"]:
                    found.append((f"{path.name}: {rule.get('alert') or rule.get('record')}", rule["expr"]))
    return found


class Exported:
    """What a live /metrics says: the sample names, the declared families, each one's labels."""

    def __init__(self, text: str) -> None:
        self.samples: dict[str, set[str]] = {}
        self.families: dict[str, str] = {}
        for family in text_string_to_metric_families(text):
            self.families[family.name] = family.type
            for sample in family.samples:
                self.samples.setdefault(sample.name, set()).update(sample.labels)
        for line in text.splitlines():  # families without a series yet are only declared
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                self.families.setdefault(name, kind)

    def has(self, name: str) -> bool:
        if name in self.samples or name in PROMETHEUS_SERIES:
            return True
        for suffix, kinds in (("_total", {"counter"}), ("_bucket", {"histogram"}), ("_sum", {"histogram"}),
                              ("_count", {"histogram"})):
            if name.endswith(suffix) and self.families.get(name[: -len(suffix)]) in kinds:
                return True
        return self.families.get(name) in {"gauge", "untyped"}

    def labels(self, name: str) -> set[str] | None:
        """The labels of a metric with series, or None when it has none yet."""
        return self.samples.get(name)


def _selector_labels(expr: str) -> list[tuple[str, set[str]]]:
    """(metric, label names in its matcher) for each `metric{...}` selector."""
    out = []
    for m in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\{([^}]*)\}", expr):
        out.append((m.group(1), set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", m.group(2)))))
    return out


def _grouping_labels(expr: str) -> set[str]:
    return {label.strip() for m in re.finditer(r"\b(?:by|without)\s*\(([^)]*)\)", expr)
            for label in m.group(1).split(",") if label.strip()}


async def drive(client) -> None:
    """Traffic on every path the dashboards watch: REST, a socket and a message, an event."""
    ana, ana_token = await user_and_token(client)
    bob, bob_token = await user_and_token(client)
    response = await client.post(f"/api/accounts/users/{bob['id']}/follow/", headers=bearer(ana_token))
    assert response.status in (200, 201), await response.text()
    assert (await client.get("/api/no/such/route/")).status == 404
    assert (await client.get("/readyz")).status == 200
    conversation = await start_conversation(client, ana_token, bob["id"])
    ws = await open_socket(client, ana_token)
    await ws.send_json({"type": "message.send", "ref": 1, "conversation_id": conversation["id"],
                        "client_id": "dash-1", "text": "hello"})
    await frame_of(ws, "message.ack")

    async def handled() -> bool:
        text = await (await client.get("/metrics")).text()
        return "glint_event_lag_seconds_count{" in text
    await wait_for(handled)
    await ws.close()


async def test_every_dashboard_panel_and_alert_rule_names_an_exported_metric(client):
    await drive(client)
    exported = Exported(await (await client.get("/metrics")).text())
    # what the driving made visible really has series
    for name in ("glint_http_requests_total", "glint_http_request_duration_seconds_bucket", "glint_ws_frames_total",
                 "glint_messages_sent_total", "glint_events_handled_total", "glint_event_lag_seconds_bucket",
                 "glint_dependency_up", "glint_ws_connections", "process_cpu_seconds_total"):
        assert exported.labels(name) is not None, name
    expressions = dashboard_exprs() + rule_exprs()
    assert len(dashboard_exprs()) >= 20 and len(rule_exprs()) >= 6
    problems = []
    for where, expr in expressions:
        names = metric_names(expr)
        if not names:
            problems.append(f"{where}: no metric in {expr!r}")
        for name in names:
            if not exported.has(name):
                problems.append(f"{where}: {name} is not exported")
        for name, labels in _selector_labels(expr):
            have = exported.labels(name)
            if have is not None and not labels <= have | SCRAPE_LABELS:
                problems.append(f"{where}: {name} has no label {sorted(labels - have - SCRAPE_LABELS)}")
        grouped = _grouping_labels(expr)
        known = [exported.labels(name) for name in names]
        if grouped and all(k is not None for k in known):
            have = set().union(*known) | SCRAPE_LABELS
            if not grouped <= have:
                problems.append(f"{where}: grouped by {sorted(grouped - have)}, which no metric of it carries")
    assert not problems, "\n".join(problems)


def test_dashboards_cover_the_golden_signals():
    """Per route: traffic, errors, latency; sockets and message rate; event lag and dead letters;
    store errors."""
    exprs = " ".join(expr for _, expr in dashboard_exprs())
    for needed in ("glint_http_requests_total", 'status=~"5.."', "glint_http_request_duration_seconds_bucket",
                   "glint_http_requests_in_flight", "glint_ws_connections", "glint_ws_frames_total",
                   "glint_messages_sent_total", "glint_event_lag_seconds_bucket", "glint_dead_letters_total",
                   "glint_consumer_lag", "glint_store_errors_total"):
        assert needed in exprs, needed
    assert "by (route" in exprs
