"""The Kubernetes manifests (deploy/kubernetes), checked offline: each resource against the Kubernetes schemas
(`kubernetes-validate`), the GPU overlay's patch merged the way kustomize merges it, and every variable the pods
get (set directly or through a ConfigMap) a real setting of the service that reads it, with the values accepted."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from faceauth.config import APISettings, MLSettings

ROOT = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"
BASE = ROOT / "base"
K8S_VERSION = "1.30"  # the oldest Kubernetes the manifests are meant for
SETTINGS = {"api": APISettings, "ml": MLSettings}


def _documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _base() -> list[dict]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in _documents(BASE / name)]


def _by(kind: str, name: str, resources: list[dict]) -> dict:
    return next(r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name)


def _merge(target: dict, patch: dict) -> dict:
    """Kustomize's strategic merge for what the overlays use: maps merge, lists of named items merge by name."""
    merged = copy.deepcopy(target)
    for key, value in patch.items():
        here = merged.get(key)
        if isinstance(value, dict) and isinstance(here, dict):
            merged[key] = _merge(here, value)
        elif isinstance(value, list) and isinstance(here, list) and all("name" in v for v in value + here):
            by_name = {item["name"]: item for item in here}
            for item in value:
                by_name[item["name"]] = _merge(by_name[item["name"]], item) if item["name"] in by_name else item
            merged[key] = list(by_name.values())
        else:
            merged[key] = value
    return merged


def _gpu() -> list[dict]:
    kustomization = yaml.safe_load((ROOT / "overlays" / "gpu" / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["../../base"]
    resources = _base()
    for patch_ref in kustomization["patches"]:
        patch = _documents(ROOT / "overlays" / "gpu" / patch_ref["path"])[0]
        i = resources.index(_by(patch["kind"], patch["metadata"]["name"], resources))
        resources[i] = _merge(resources[i], patch)
    return resources


RENDERINGS = {"base": _base, "gpu": _gpu}


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_every_resource_is_valid_kubernetes(rendering):
    resources = RENDERINGS[rendering]()
    assert resources
    for resource in resources:
        kubernetes_validate.validate(resource, K8S_VERSION, strict=True)
    secret = _documents(ROOT / "secrets.example.yaml")[0]
    kubernetes_validate.validate(secret, K8S_VERSION, strict=True)


def test_the_schema_check_refuses_a_broken_resource():
    deployment = copy.deepcopy(_by("Deployment", "faceauth-api", _base()))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = [8000]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    deployment = copy.deepcopy(_by("Deployment", "faceauth-api", _base()))
    deployment["spec"]["replica"] = 2  # a misspelt field: strict mode refuses it
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_the_pieces_are_all_there():
    resources = _base()
    kinds = {(r["kind"], r["metadata"]["name"]) for r in resources}
    for app in ("faceauth-api", "faceauth-ml"):
        assert {("Deployment", app), ("Service", app), ("HorizontalPodAutoscaler", app)} <= kinds
        assert ("PodDisruptionBudget", app) in kinds
    assert {("Deployment", "faceauth-redis"), ("Service", "faceauth-redis")} <= kinds
    api = _by("Deployment", "faceauth-api", resources)["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for app in ("faceauth-api", "faceauth-ml"):
        hpa = _by("HorizontalPodAutoscaler", app, resources)["spec"]
        assert hpa["scaleTargetRef"]["name"] == app and hpa["minReplicas"] >= 2
        labels = _by("Deployment", app, resources)["spec"]["template"]["metadata"]["labels"]
        assert _by("Service", app, resources)["spec"]["selector"].items() <= labels.items()
        assert _by("PodDisruptionBudget", app, resources)["spec"]["selector"]["matchLabels"].items() <= labels.items()


def _container_env(resources: list[dict], deployment: str) -> tuple[dict[str, str], set[str]]:
    """(plain values incl. the ConfigMaps', names of variables from Secrets) of a Deployment's container."""
    container = _by("Deployment", deployment, resources)["spec"]["template"]["spec"]["containers"][0]
    values: dict[str, str] = {}
    secret: set[str] = set()
    for source in container.get("envFrom", []):
        values |= _by("ConfigMap", source["configMapRef"]["name"], resources)["data"]
    for var in container.get("env", []):
        if "value" in var:
            values[var["name"]] = var["value"]
        else:
            assert var["valueFrom"]["secretKeyRef"]["name"] == "faceauth", var
            secret.add(var["name"])
    return values, secret


@pytest.mark.parametrize("rendering", RENDERINGS)
@pytest.mark.parametrize("app", ["api", "ml"])
def test_every_variable_is_a_setting_and_the_values_load(rendering, app, monkeypatch):
    settings_cls = SETTINGS[app]
    prefix = settings_cls.model_config["env_prefix"]
    values, secret = _container_env(RENDERINGS[rendering](), f"faceauth-{app}")
    for name in [*values, *secret]:
        assert name.startswith(prefix) and name[len(prefix) :].lower() in settings_cls.model_fields, name
    for key in list(os.environ):
        if key.startswith(("FACEAUTH_", "ML_SERVICE_")):
            monkeypatch.delenv(key)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    for name in secret:
        monkeypatch.setenv(name, "from-a-secret")
    settings = settings_cls(_env_file=None)
    if app == "api":
        assert settings.coordination_url.startswith("redis://faceauth-redis:")
        assert settings.ml_inference_service_url.startswith("http://faceauth-ml:")
        assert settings.object_store == "s3" and settings.ml_inference_auth_token == "from-a-secret"
    else:
        assert settings.auth_token == "from-a-secret"
        assert settings.ml_device == ("cuda:0" if rendering == "gpu" else "cpu")


def test_the_gpu_overlay_asks_for_a_gpu_node():
    ml = _by("Deployment", "faceauth-ml", _gpu())["spec"]["template"]["spec"]
    assert ml["nodeSelector"] and ml["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert ml["containers"][0]["resources"]["requests"]["cpu"] == "2"  # the base's, kept by the merge
