"""deploy/ is code too: alert rules, dashboard, scrape config, systemd unit and container file
are checked here. The real tools (promtool, systemd-analyze) run when they are on PATH; the
schema checks always run, so a renamed metric cannot silently blank a panel or an alert."""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harperbq.metrics import METRIC_NAMES, METRICS, SERIES_NAMES

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts.test.yml"
SCRAPE = DEPLOY / "prometheus" / "scrape.yml"
DASHBOARD = DEPLOY / "grafana" / "harperbq-dashboard.json"
UNIT = DEPLOY / "systemd" / "harperbq-sync.service"
CONTAINERFILE = DEPLOY / "container" / "Containerfile"
OPERATIONS = REPO / "docs" / "operations.md"

_METRIC = re.compile(r"\bharperbq_[a-z0-9_]+\b")
_SEVERITIES = {"info", "warning", "critical"}


def _rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(ALERTS.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(markdown: Path) -> set[str]:
    return {
        _slug(line.lstrip("#"))
        for line in markdown.read_text().splitlines()
        if re.match(r"^#{1,6} ", line)
    }


def test_every_alert_rule_is_complete_and_uses_real_metrics() -> None:
    rules = _rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    anchors = _anchors(OPERATIONS)
    for rule in rules:
        assert {"alert", "expr", "for", "labels", "annotations"} <= set(rule), rule.get("alert")
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in _SEVERITIES, rule["alert"]
        notes = rule["annotations"]
        assert {"summary", "description", "runbook_url"} <= set(notes), rule["alert"]
        page, _, anchor = notes["runbook_url"].partition("#")
        assert page == "docs/operations.md" and anchor in anchors, notes["runbook_url"]
        used = set(_METRIC.findall(rule["expr"]))
        assert used <= SERIES_NAMES, f"{rule['alert']}: unknown {used - SERIES_NAMES}"
        assert used or "up{" in rule["expr"], rule["alert"]
    # The situations operators asked to be told about, each covered.
    wanted = {"HarperbqLagHigh", "HarperbqStalled", "HarperbqDrift", "HarperbqErrorRate"}
    assert wanted | {"HarperbqWorkerLost"} <= set(names)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not on PATH")
def test_promtool_checks_and_unit_tests_the_rules(tmp_path: Path) -> None:
    check = subprocess.run(
        ["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    tested = subprocess.run(
        ["promtool", "test", "rules", ALERT_TESTS.name],
        cwd=ALERT_TESTS.parent,
        capture_output=True,
        text=True,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # The scrape config, with its token file pointed at a real file.
    token = tmp_path / "harperbq.token"
    token.write_text("x" * 32)
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    config = tmp_path / "prometheus.yml"
    config.write_text(SCRAPE.read_text().replace("/etc/prometheus/harperbq.token", str(token)))
    checked = subprocess.run(
        ["promtool", "check", "config", str(config)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_alert_unit_tests_cover_every_alert() -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    fired = {
        case["alertname"]
        for test in tests["tests"]
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert fired == {r["alert"] for r in _rules()}


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_dashboard_panels_query_real_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "table", "worker"} <= variables
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    used: set[str] = set()
    for panel in _panels(dashboard):
        assert panel["title"] and panel["targets"], panel["id"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            names = set(_METRIC.findall(target["expr"]))
            assert names and names <= SERIES_NAMES, f"{panel['title']}: {names - SERIES_NAMES}"
            used |= names
    for v in dashboard["templating"]["list"]:
        if v["type"] == "query":
            assert set(_METRIC.findall(v["definition"])) <= SERIES_NAMES
    # Lag, rows/s, errors and phase, per table and worker.
    for name in (
        "harperbq_lag_seconds",
        "harperbq_rows_synced_total",
        "harperbq_errors_total",
        "harperbq_phase",
        "harperbq_runner_state",
    ):
        assert name in used, name
    per_worker = [t["expr"] for p in _panels(dashboard) for t in p["targets"]]
    assert any('worker=~"$worker"' in e and "harperbq_lag_seconds" in e for e in per_worker)


def test_metric_catalogue_follows_prometheus_conventions() -> None:
    for name in METRIC_NAMES:
        assert re.fullmatch(r"harperbq_[a-z0-9_]+", name), name
        assert not name.endswith("_ms") and "milliseconds" not in name, name
    counters = {n for n in METRIC_NAMES if n.endswith("_total")}
    assert "harperbq_rows_synced_total" in counters and "harperbq_errors_total" in counters


def test_operations_metric_table_matches_the_catalogue() -> None:
    """docs/operations.md "Metrics" lists every metric with its type and labels, and no other."""
    section = OPERATIONS.read_text().split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(harperbq_[a-z0-9_]+)` \| (\w+) \|([^|]*)\|", section, re.M)
    documented = {name: (kind, labels.strip()) for name, kind, labels in rows}
    expected = {m.name: (m.kind, ", ".join(m.labels)) for m in METRICS}
    assert documented == expected


def test_systemd_unit_runs_the_sync() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(UNIT.read_text())
    service = unit["Service"]
    assert service["ExecStart"].split()[1:3] == ["sync", "run"]
    assert service["Restart"] == "always" and service["KillSignal"] == "SIGTERM"
    assert service["User"] != "root"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not on PATH")
def test_systemd_analyze_accepts_the_unit(tmp_path: Path) -> None:
    harperbq = str(Path(sys.executable).with_name("harperbq"))
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/harperbq/bin/harperbq", harperbq))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_containerfile_runs_unprivileged_with_a_health_check() -> None:
    text = CONTAINERFILE.read_text()
    assert re.search(r"^USER 10001$", text, re.M)
    assert re.search(r"^HEALTHCHECK .*", text, re.M) and "/healthz" in text
    assert re.search(r'^ENTRYPOINT \["harperbq"\]$', text, re.M)
    assert "EXPOSE 8181" in text
    # Everything it copies exists.
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for item in source.split():
            assert (REPO / item).exists(), item


FABRIC = DEPLOY / "fabric"
UP = FABRIC / "up.sh"
FAKE_ENGINE = """#!/bin/sh
# A recording stand-in for docker/podman: one line per call, arguments separated by a tab.
printf '%s\\t' "$@" >> "$RECORD"
printf '\\n' >> "$RECORD"
"""


def _up(
    tmp_path: Path, instances: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    engine = bin_dir / "fake-engine"
    engine.write_text(FAKE_ENGINE)
    engine.chmod(0o755)
    (tmp_path / "instances").write_text(instances)
    (tmp_path / "config.yaml").write_text("harper: {username: sync}\n")
    record = tmp_path / "calls"
    result = subprocess.run(
        ["bash", str(UP), str(tmp_path / "instances")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "RECORD": str(record),
            "CONTAINER_ENGINE": "fake-engine",
            "HARPERBQ_CONFIG_FILE": str(tmp_path / "config.yaml"),
            **env,
        },
        check=False,
    )
    calls = (
        [line.rstrip("\t").split("\t") for line in record.read_text().splitlines()]
        if (record.exists())
        else []
    )
    return result, calls


def test_fabric_up_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(UP)], check=True)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", str(UP)], check=True)


def test_fabric_up_starts_one_container_per_instance_without_secrets_on_the_command_line(
    tmp_path: Path,
) -> None:
    password, token = "pw-S3cret-harper", "tok-S3cret-control"
    (tmp_path / "token").write_text(token + "\n")
    result, calls = _up(
        tmp_path,
        (FABRIC / "instances.example").read_text(),
        HARPERBQ_HARPER_PASSWORD=password,
        HARPERBQ_CONTROL_TOKEN_FILE=str(tmp_path / "token"),
    )
    assert result.returncode == 0, result.stderr
    runs = [c for c in calls if c[0] == "run"]
    assert [c[c.index("--name") + 1] for c in runs] == [
        "harperbq-node-a",
        "harperbq-node-b",
        "harperbq-node-c",
    ]
    for run, name in zip(runs, ("node-a", "node-b", "node-c"), strict=True):
        envs = [run[i + 1] for i, arg in enumerate(run) if arg == "--env"]
        assert f"HARPERBQ_NODE_NAME={name}" in envs
        assert f"HARPERBQ_HARPER_URL=https://{name}.your-cluster.example:9925" in envs
        assert "HARPERBQ_HARPER_PASSWORD" in envs and "HARPERBQ_CONTROL_TOKEN" in envs
        assert run[-1] == "harperbq:latest"
        assert f"{tmp_path / 'config.yaml'}:/etc/harperbq/config.yaml:ro" in run
    everything = json.dumps(calls) + result.stdout + result.stderr
    assert password not in everything and token not in everything


@pytest.mark.parametrize(
    ("instances", "message"),
    [
        ("a https://a:9925\nb http://b:9925\n", "http://b:9925 is http://"),
        ("a https://a:9925\na https://b:9925\n", "node name 'a' twice"),
        ("a https://u:pw@a:9925\n", "no user, no path"),
        ("a\n", "write 'name https://host:port'"),
        ("# nothing\n", "lists no instance"),
    ],
)
def test_fabric_up_refuses_bad_instances_before_starting_anything(
    tmp_path: Path, instances: str, message: str
) -> None:
    result, calls = _up(tmp_path, instances, HARPERBQ_HARPER_PASSWORD="pw")
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert calls == []


def test_fabric_up_needs_the_password(tmp_path: Path) -> None:
    result, calls = _up(tmp_path, "a https://a:9925\n")
    assert result.returncode == 2 and "HARPERBQ_HARPER_PASSWORD" in result.stderr
    assert calls == []


def test_the_node_name_variable_up_sh_sets_is_the_one_sync_run_reads() -> None:
    from typer.testing import CliRunner

    from harperbq.cli.main import app

    result = CliRunner().invoke(app, ["sync", "run", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "HARPERBQ_NODE_NAME" in result.output and "HARPERBQ_NODE_NAME" in UP.read_text()


# -- Datadog and CloudWatch ---------------------------------------------------------------------

DATADOG = DEPLOY / "datadog" / "conf.d" / "openmetrics.d" / "conf.yaml"
CLOUDWATCH_AGENT = DEPLOY / "cloudwatch" / "amazon-cloudwatch-agent.json"
CLOUDWATCH_SCRAPE = DEPLOY / "cloudwatch" / "prometheus.yaml"

# The keys each tool documents. Datadog's OpenMetrics check (Agent 7.32+, `openmetrics_endpoint`
# mode): `instances` entries need `openmetrics_endpoint`, `namespace` and `metrics`; the others
# used here are its HTTP and common instance options. The CloudWatch agent's Prometheus section
# (logs.metrics_collected.prometheus) and its EMF processor's declarations.
DATADOG_REQUIRED = {"openmetrics_endpoint", "namespace", "metrics"}
DATADOG_OPTIONAL = {"extra_headers", "headers", "tags", "min_collection_interval"}
CLOUDWATCH_PROMETHEUS = {
    "cluster_name",
    "log_group_name",
    "prometheus_config_path",
    "emf_processor",
}
CLOUDWATCH_EMF = {
    "metric_declaration_dedup",
    "metric_namespace",
    "metric_unit",
    "metric_declaration",
}
CLOUDWATCH_DECLARATION = {"source_labels", "label_matcher", "dimensions", "metric_selectors"}
CLOUDWATCH_UNITS = {"Seconds", "Bytes", "Count"}
_SPEC_BY_NAME = {m.name: m for m in METRICS}


def _families_as_parsed() -> dict[str, str]:
    """Metric family names as the Datadog check sees them: it parses /metrics with
    prometheus_client's text parser, which names a counter family without `_total`."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    registry = CollectorRegistry()
    for spec in METRICS:
        values = ["x"] * len(spec.labels)
        if spec.kind == "counter":
            c = Counter(spec.name.removesuffix("_total"), spec.help, spec.labels, registry=registry)
            (c.labels(*values) if spec.labels else c).inc()
        elif spec.kind == "gauge":
            g = Gauge(spec.name, spec.help, spec.labels, registry=registry)
            (g.labels(*values) if spec.labels else g).set(1)
        else:
            h = Histogram(spec.name, spec.help, spec.labels, registry=registry)
            (h.labels(*values) if spec.labels else h).observe(1)
    exposition = generate_latest(registry).decode()
    by_family: dict[str, str] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            base = sample.name
            for suffix in ("_bucket", "_sum", "_count"):
                if family.type == "histogram" and base.endswith(suffix):
                    base = base.removesuffix(suffix)
            if base in METRIC_NAMES:
                by_family[family.name] = base
    return by_family


def test_datadog_openmetrics_check_has_the_documented_shape_and_real_metrics() -> None:
    config = yaml.safe_load(DATADOG.read_text())
    assert set(config) == {"init_config", "instances"}
    (instance,) = config["instances"]
    assert set(instance) >= DATADOG_REQUIRED, DATADOG_REQUIRED - set(instance)
    assert set(instance) <= DATADOG_REQUIRED | DATADOG_OPTIONAL, set(instance)
    # The sync's own endpoint: the control API's default host and port, path /metrics.
    from harperbq.config import ControlConfig

    control = ControlConfig.model_validate({})
    assert instance["openmetrics_endpoint"] == f"http://{control.host}:{control.port}/metrics"
    assert instance["namespace"] == "harperbq"
    # Every entry names a family the check will find, and every metric is collected once.
    families = _families_as_parsed()
    collected: list[str] = []
    for entry in instance["metrics"]:
        name = entry if isinstance(entry, str) else next(iter(entry))
        assert name in families, f"{name}: not a metric family on /metrics"
        collected.append(families[name])
        if isinstance(entry, dict):
            (renamed,) = entry.values()
            assert re.fullmatch(r"[a-z0-9_]+", renamed), renamed
    assert sorted(collected) == sorted(METRIC_NAMES)
    # The token is resolved by the agent's secrets management, never written here.
    auth = instance["extra_headers"]["Authorization"]
    assert re.fullmatch(r"Bearer ENC\[[A-Za-z0-9_]+\]", auth), auth


def test_cloudwatch_agent_config_has_the_documented_shape_and_real_metrics() -> None:
    agent = json.loads(CLOUDWATCH_AGENT.read_text())
    prometheus = agent["logs"]["metrics_collected"]["prometheus"]
    assert set(prometheus) <= CLOUDWATCH_PROMETHEUS, set(prometheus) - CLOUDWATCH_PROMETHEUS
    assert {"prometheus_config_path", "emf_processor", "log_group_name"} <= set(prometheus)
    assert Path(prometheus["prometheus_config_path"]).name == CLOUDWATCH_SCRAPE.name
    emf = prometheus["emf_processor"]
    assert set(emf) <= CLOUDWATCH_EMF and "metric_declaration" in emf, set(emf)
    scrape = yaml.safe_load(CLOUDWATCH_SCRAPE.read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    selected: set[str] = set()
    for declaration in emf["metric_declaration"]:
        assert set(declaration) == CLOUDWATCH_DECLARATION, set(declaration)
        assert declaration["source_labels"] == ["job"]
        assert [j for j in jobs if re.search(declaration["label_matcher"], j)] == ["harperbq"]
        for selector in declaration["metric_selectors"]:
            match = re.fullmatch(r"\^(harperbq_[a-z0-9_]+)\$", selector)
            assert match, f"{selector}: select one metric exactly"
            spec = _SPEC_BY_NAME.get(match.group(1))
            assert spec is not None, f"{selector}: not in harperbq.metrics.METRICS"
            # The agent drops Prometheus histograms; only counters and gauges arrive.
            assert spec.kind != "histogram", f"{spec.name}: histograms are dropped"
            # Dimensions must be labels the samples carry (the scrape adds job and instance).
            for dimensions in declaration["dimensions"]:
                missing = set(dimensions) - set(spec.labels) - {"job", "instance"}
                assert not missing, f"{spec.name}: no label {missing}"
            selected.add(spec.name)
    assert set(emf["metric_unit"]) <= selected, set(emf["metric_unit"]) - selected
    assert set(emf["metric_unit"].values()) <= CLOUDWATCH_UNITS
    # What an operator needs to see in CloudWatch: lag, throughput, errors, cluster health.
    assert {
        "harperbq_lag_seconds",
        "harperbq_rows_synced_total",
        "harperbq_errors_total",
        "harperbq_cluster_workers",
        "harperbq_harper_stalled",
        "harperbq_validation_drift_rows",
    } <= selected


def test_cloudwatch_scrape_config_points_at_the_sync() -> None:
    from harperbq.config import ControlConfig

    control = ControlConfig.model_validate({})
    scrape = yaml.safe_load(CLOUDWATCH_SCRAPE.read_text())
    assert set(scrape) <= {"global", "scrape_configs"}
    (job,) = scrape["scrape_configs"]
    assert job["job_name"] == "harperbq" and job["metrics_path"] == "/metrics"
    assert job["authorization"]["type"] == "Bearer" and "credentials_file" in job["authorization"]
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    assert targets == [f"{control.host}:{control.port}"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not on PATH")
def test_promtool_accepts_the_cloudwatch_scrape_config(tmp_path: Path) -> None:
    token = tmp_path / "harperbq.token"
    token.write_text("x" * 32)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        CLOUDWATCH_SCRAPE.read_text().replace(
            "/opt/aws/amazon-cloudwatch-agent/etc/harperbq.token", str(token)
        )
    )
    checked = subprocess.run(
        ["promtool", "check", "config", str(config)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_integrations_are_documented() -> None:
    text = OPERATIONS.read_text()
    for path in (DATADOG, CLOUDWATCH_AGENT, CLOUDWATCH_SCRAPE):
        assert str(path.relative_to(REPO)) in text, path
    assert "HARPERBQ_CONTROL_HOST" in text and "control.token" in text


def test_dashboard_covers_cluster_health_workers_tables_and_distributions() -> None:
    panels = _panels(json.loads(DASHBOARD.read_text()))

    def exprs(panel: dict[str, Any]) -> list[str]:
        return [t["expr"] for t in panel["targets"]]

    # Cluster-wide: stat panels over every table and worker (no selector narrows them).
    cluster = [
        p for p in panels if p["type"] == "stat" and not any("$table" in e for e in exprs(p))
    ]
    cluster_names = {n for p in cluster for e in exprs(p) for n in _METRIC.findall(e)}
    assert {
        "harperbq_cluster_workers",
        "harperbq_lag_seconds",
        "harperbq_runner_state",
        "harperbq_harper_stalled",
        "harperbq_validation_drift_rows",
    } <= cluster_names
    # Per worker and per table: aggregated by that label.
    every = [e for p in panels for e in exprs(p)]
    for label in ("worker", "table"):
        by = [e for e in every if re.search(rf"by \([^)]*\b{label}\b", e)]
        assert {"harperbq_lag_seconds", "harperbq_rows_synced_total", "harperbq_errors_total"} <= {
            n for e in by for n in _METRIC.findall(e)
        }, label
    # Distributions: the lag across (table, worker) and the duration histograms over time.
    assert any(
        p["type"] == "histogram" and "harperbq_lag_seconds" in e for p in panels for e in exprs(p)
    )
    heatmapped = {
        n.removesuffix("_bucket")
        for p in panels
        if p["type"] == "heatmap"
        for e in exprs(p)
        for n in _METRIC.findall(e)
    }
    histograms = {m.name for m in METRICS if m.kind == "histogram"}
    assert heatmapped == histograms
