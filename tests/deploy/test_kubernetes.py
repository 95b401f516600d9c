"""The Kubernetes manifests under deploy/kubernetes/: every file the kustomization names exists,
every object is valid against the Kubernetes schemas (kubernetes-validate, offline), and the
objects fit together (selectors, names, probes, grace periods, no secret values)."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from app.config import BY_ENV

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
K8S_VERSION = "1.33.0"
SECRET_NAME = "glint-secrets"


def kustomization() -> dict:
    return yaml.safe_load((KUBE / "kustomization.yaml").read_text(encoding="utf-8"))


def objects() -> list[dict]:
    found = []
    for name in kustomization()["resources"]:
        found.extend(doc for doc in yaml.safe_load_all((KUBE / name).read_text(encoding="utf-8")) if doc)
    return found


def by_kind(kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects() if o["kind"] == kind}


def pod_specs() -> dict[str, dict]:
    specs = {name: d["spec"]["template"]["spec"] for name, d in by_kind("Deployment").items()}
    specs.update({name: j["spec"]["template"]["spec"] for name, j in by_kind("Job").items()})
    return specs


def test_every_file_the_kustomization_names_exists():
    k = kustomization()
    assert k["kind"] == "Kustomization" and k["namespace"] == "glint"
    named = list(k["resources"]) + [f for g in k.get("configMapGenerator", []) for f in g.get("envs", [])]
    missing = [name for name in named if not (KUBE / name).is_file()]
    assert not missing, missing
    # nothing in the folder is forgotten by the kustomization
    listed = {n for n in k["resources"]}
    stray = {p.name for p in KUBE.glob("*.yaml")} - listed - {"kustomization.yaml"}
    assert not stray, stray


@pytest.mark.parametrize("obj", objects(), ids=lambda o: f"{o['kind']}/{o['metadata']['name']}")
def test_object_is_valid(obj):
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_selectors_and_references_match():
    deployments = by_kind("Deployment")
    for name, d in deployments.items():
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert d["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
    for name, svc in by_kind("Service").items():
        assert any(svc["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
                   for d in deployments.values()), name
    for name, pdb in by_kind("PodDisruptionBudget").items():
        assert any(pdb["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
                   for d in deployments.values()), name
    hpa = by_kind("HorizontalPodAutoscaler")["glint-api"]["spec"]
    assert hpa["scaleTargetRef"]["name"] in deployments
    kinds = {m["type"]: m for m in hpa["metrics"]}
    assert kinds["Resource"]["resource"]["name"] == "cpu"
    assert kinds["Pods"]["pods"]["metric"]["name"] == "glint_ws_connections"
    services = by_kind("Service")
    for rule in by_kind("Ingress")["glint"]["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            assert path["backend"]["service"]["name"] in services
    configmaps = by_kind("ConfigMap")
    for name, spec in pod_specs().items():
        for container in spec["containers"]:
            refs = container["envFrom"]
            assert {r["configMapRef"]["name"] for r in refs if "configMapRef" in r} <= set(configmaps), name
            assert {r["secretRef"]["name"] for r in refs if "secretRef" in r} == {SECRET_NAME}, name


def test_config_map_keys_are_glint_settings():
    for key, value in by_kind("ConfigMap")["glint-config"]["data"].items():
        assert key in BY_ENV, key
        assert isinstance(value, str)


def test_probes_resources_and_graceful_termination():
    shutdown = float(by_kind("ConfigMap")["glint-config"]["data"]["GLINT_SHUTDOWN_TIMEOUT"])
    for name, d in by_kind("Deployment").items():
        spec = d["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        assert spec["terminationGracePeriodSeconds"] > shutdown + pre_stop, name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        port_names = {p["name"] for p in container["ports"]}
        assert container["readinessProbe"]["httpGet"]["port"] in port_names, name
    for name, spec in pod_specs().items():
        for container in spec["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"], name
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
    assert by_kind("Deployment")["glint-api"]["spec"]["template"]["spec"]["containers"][0]["args"][:2] == \
        ["serve", "--no-consumers"]
    assert by_kind("Deployment")["glint-consumer"]["spec"]["template"]["spec"]["containers"][0]["args"] == ["consume"]
    assert by_kind("Job")["glint-migrate"]["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]


def test_network_policies_deny_by_default():
    policies = by_kind("NetworkPolicy")
    deny = policies["glint-default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    api_in = policies["glint-api-ingress"]["spec"]["ingress"]
    assert [p["port"] for rule in api_in for p in rule["ports"]] == [8080]


SECRET_KEYS = re.compile(r"(SECRET|PASSWORD|TOKEN|ACCESS_KEY|DATABASE_URL|REDIS_URL)", re.I)


def test_no_secret_values_in_deploy():
    """No Secret object and no value for a secret-looking key anywhere under deploy/kubernetes/."""
    assert not by_kind("Secret")
    assert "secretGenerator" not in kustomization()
    for key in by_kind("ConfigMap")["glint-config"]["data"]:
        assert not SECRET_KEYS.search(key), key
    for spec in pod_specs().values():
        for container in spec["containers"]:
            for env in container.get("env", []):
                assert not SECRET_KEYS.search(env["name"]) or "valueFrom" in env, env["name"]
    example = (KUBE / "secrets.env.example").read_text(encoding="utf-8")
    lines = [line for line in example.splitlines() if line and not line.startswith("#")]
    assert lines and all(line.endswith("=") for line in lines), "secrets.env.example must hold names only"
    keys = {line[:-1] for line in lines}
    assert {"GLINT_JWT_SECRET", "GLINT_DATABASE_URL", "GLINT_S3_SECRET_KEY"} <= keys
