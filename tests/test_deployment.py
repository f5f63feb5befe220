"""The container deployment, checked without a Docker engine: docker-compose.yml, Dockerfile, ml_inference.Dockerfile.

Compose cannot run on the build machine, so this reads the files the way Compose and Docker would and checks what
would otherwise only fail at `docker compose up`: services, ports, healthchecks, start order, volumes, and that
every variable handed to a service is a real setting whose value that service accepts (read from the settings
classes, so a renamed or new field is picked up here).
"""

from __future__ import annotations

import http.server
import ipaddress
import json
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic_settings import BaseSettings

from faceauth import cli
from faceauth.config import APISettings, MLSettings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"

SERVICES = {"api", "ml-inference", "milvus", "etcd", "minio", "redis"}
TOKEN_VARIABLE = "ML_SERVICE_AUTH_TOKEN"


# -- Compose interpolation ----------------------------------------------------------------------------------------


class MissingRequired(LookupError):
    """A `${VAR:?message}` / `${VAR?message}` whose variable is not set (Compose refuses to start)."""


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(text: str, env: Mapping[str, str], *, dummy_required: str | None = None) -> str:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?err}`, `${VAR?err}`, `${VAR:+alt}`, `$$`.

    A required variable that is missing raises MissingRequired, or is replaced by `dummy_required` when given.
    """

    def replace(m: re.Match[str]) -> str:
        if m.group("escaped"):
            return "$"
        name = m.group("braced") or m.group("bare")
        op, arg = m.group("op"), m.group("arg") or ""
        is_set = name in env
        non_empty = bool(env.get(name))
        if op is None:
            return env.get(name, "")
        if op in (":-", "-"):
            return env[name] if (non_empty if op == ":-" else is_set) else arg
        if op in (":+", "+"):
            return arg if (non_empty if op == ":+" else is_set) else ""
        # ":?" / "?"
        if non_empty if op == ":?" else is_set:
            return env[name]
        if dummy_required is None:
            raise MissingRequired(f"{name}: {arg}")
        return dummy_required

    return _VARIABLE.sub(replace, text)


def variables_in(text: str) -> dict[str, str | None]:
    """{variable: operator} for every variable a Compose string refers to."""
    return {
        (m.group("braced") or m.group("bare")): m.group("op")
        for m in _VARIABLE.finditer(text)
        if not m.group("escaped")
    }


@dataclass(frozen=True)
class Port:
    host_ip: str
    host_port: int
    container_port: int


def parse_port(spec: str | int | dict, env: Mapping[str, str]) -> Port:
    if isinstance(spec, dict):  # long syntax
        return Port(spec.get("host_ip", "0.0.0.0"), int(spec["published"]), int(spec["target"]))
    text = interpolate(str(spec), env).split("/")[0]
    parts = text.rsplit(":", 2)
    if len(parts) == 3:
        return Port(parts[0].strip("[]"), int(parts[1]), int(parts[2]))
    if len(parts) == 2:
        return Port("0.0.0.0", int(parts[0]), int(parts[1]))
    raise AssertionError(f"port {spec!r} publishes no host port")


def environment_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def resolved_environment(service: dict, env: Mapping[str, str] | None = None) -> dict[str, str]:
    return {k: interpolate(v, env or {}, dummy_required="dummy-token") for k, v in environment_of(service).items()}


def healthcheck_python_code(test: list[str]) -> str:
    assert test[:3] == ["CMD", "python", "-c"], f"expected a python one-liner, got {test}"
    return test[3]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


def test_project_name_and_services(compose, services):
    assert compose["name"] == "faceauth"
    assert set(services) >= SERVICES
    assert "version" not in compose  # obsolete key; Compose v2 warns about it


def test_the_two_images_are_built_from_this_repository(services):
    expected = {"api": "Dockerfile", "ml-inference": "ml_inference.Dockerfile"}
    for name, dockerfile in expected.items():
        build = services[name]["build"]
        assert build["context"] == "."
        assert build["dockerfile"] == dockerfile
        assert (ROOT / dockerfile).is_file()


def test_published_ports(services):
    published = {name: [parse_port(p, {}) for p in svc.get("ports", [])] for name, svc in services.items()}
    assert published["api"] == [Port("0.0.0.0", 8000, 8000)]
    assert published["ml-inference"] == [Port("127.0.0.1", 8001, 8001)]
    assert published["milvus"] == [Port("127.0.0.1", 19530, 19530)]
    assert sorted(published["minio"], key=lambda p: p.container_port) == [
        Port("127.0.0.1", 9002, 9000),  # the reference's host port for the S3 API
        Port("127.0.0.1", 9001, 9001),
    ]
    assert published["etcd"] == []
    assert published["redis"] == []  # reached by the api replicas only
    # No host port is published twice (Compose would fail to bind the second one).
    host_ports = [(p.host_ip, p.host_port) for ports in published.values() for p in ports]
    assert len(host_ports) == len(set(host_ports))


def test_internal_services_are_published_on_loopback_unless_told_otherwise(services):
    for name in ("ml-inference", "milvus", "minio"):
        for spec in services[name]["ports"]:
            assert ipaddress.ip_address(parse_port(spec, {}).host_ip).is_loopback, (name, spec)
            exposed = parse_port(spec, {"INFRA_BIND_ADDRESS": "0.0.0.0"})
            assert exposed.host_ip == "0.0.0.0", f"{name}: INFRA_BIND_ADDRESS should control {spec}"


def test_every_service_has_a_healthcheck(services):
    for name, svc in services.items():
        check = svc.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert not check.get("disable", False)
        test = check["test"]
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) >= 2, (name, test)
        for key in ("interval", "timeout", "start_period"):
            assert re.fullmatch(r"\d+(ms|s|m)", check[key]), (name, key, check[key])
        assert int(check["retries"]) >= 1


def test_infrastructure_healthchecks_use_each_services_own_probe(services):
    assert services["milvus"]["healthcheck"]["test"] == ["CMD", "curl", "-f", "http://localhost:9091/healthz"]
    assert services["etcd"]["healthcheck"]["test"] == ["CMD", "etcdctl", "endpoint", "health"]
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    minio = " ".join(services["minio"]["healthcheck"]["test"][1:])
    assert "curl -f http://localhost:9000/minio/health/live" in minio


@pytest.mark.parametrize(("name", "port", "path"), [("api", 8000, "/healthz"), ("ml-inference", 8001, "/readyz")])
def test_app_healthchecks_target_the_service_port(services, name, port, path):
    code = healthcheck_python_code(services[name]["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}{path}" in code
    compile(code, f"<{name} healthcheck>", "exec")


def test_start_order_waits_for_healthy_dependencies(services):
    expected = {"api": {"ml-inference", "milvus", "minio", "redis"}, "milvus": {"etcd", "minio"}}
    for name, deps in expected.items():
        assert set(services[name]["depends_on"]) == deps
    for name, svc in services.items():
        depends = svc.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: use the long depends_on form with a condition"
        for dep, spec in depends.items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert spec["condition"] == "service_healthy", (name, dep)
            assert "healthcheck" in services[dep]
    # No cycle: a topological order exists.
    remaining = {n: set(s.get("depends_on", {})) for n, s in services.items()}
    while remaining:
        ready = [n for n, deps in remaining.items() if not deps & remaining.keys()]
        assert ready, f"depends_on cycle among {sorted(remaining)}"
        for n in ready:
            del remaining[n]


def _named_mounts(svc: dict) -> dict[str, str]:
    mounts = {}
    for v in svc.get("volumes", []):
        if isinstance(v, dict):
            if v.get("type", "volume") == "volume":
                mounts[v["source"]] = v["target"]
            continue
        source, target = v.split(":")[:2]
        if not source.startswith((".", "/", "~", "$")):
            mounts[source] = target
    return mounts


def test_named_volumes_are_declared_and_used(compose, services):
    declared = set(compose.get("volumes") or {})
    used = {name: _named_mounts(svc) for name, svc in services.items()}
    all_used = {vol for mounts in used.values() for vol in mounts}
    assert all_used == declared
    # Bind mounts of host folders would tie the data to the checkout; everything persistent is a named volume.
    for name, svc in services.items():
        for v in svc.get("volumes", []):
            assert isinstance(v, dict) or v.split(":")[0] in used[name], f"{name}: bind mount {v}"
    # etcd's and MinIO's data dirs are the ones their commands use.
    etcd_args = shlex.split(services["etcd"]["command"])
    assert etcd_args[etcd_args.index("--data-dir") + 1] in used["etcd"].values()
    assert "/var/lib/milvus" in used["milvus"].values()
    assert used["api"] == {}, "the api is stateless in Compose (Milvus + S3); it should need no volume"
    minio_dir = shlex.split(services["minio"]["command"])[2]
    assert minio_dir in used["minio"].values()
    # The ML models volume is where the service looks for (and fetches) models, in Compose and in the image.
    ml_env = resolved_environment(services["ml-inference"])
    assert ml_env["ML_SERVICE_MODEL_DIR"] in used["ml-inference"].values()
    image_env = dockerfile_env(parse_dockerfile(ROOT / "ml_inference.Dockerfile").final_stage)
    assert image_env["ML_SERVICE_MODEL_DIR"] == ml_env["ML_SERVICE_MODEL_DIR"]


def _image_version(image: str) -> tuple[str, tuple[int, ...]]:
    repo, _, tag = image.rpartition(":")
    assert repo and tag and tag != "latest", f"{image}: pin a tag"
    m = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)", tag)
    return repo, tuple(int(x) for x in m.groups()) if m else ()


def test_third_party_images_are_pinned(services):
    repo, version = _image_version(services["milvus"]["image"])
    assert repo == "milvusdb/milvus"
    assert version >= (2, 5, 0), services["milvus"]["image"]
    repo, version = _image_version(services["etcd"]["image"])
    assert repo == "quay.io/coreos/etcd" and version[:2] == (3, 5)
    repo, _ = _image_version(services["minio"]["image"])
    assert repo == "minio/minio"
    assert re.fullmatch(r"RELEASE\.\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z", services["minio"]["image"].split(":")[1])


def test_milvus_keeps_its_metadata_in_etcd_and_its_data_in_minio(services):
    env = resolved_environment(services["milvus"])
    assert env["ETCD_ENDPOINTS"] == "etcd:2379"
    assert env["MINIO_ADDRESS"] == "minio:9000"
    assert services["milvus"]["command"] == ["milvus", "run", "standalone"]
    assert "-listen-client-urls http://0.0.0.0:2379" in services["etcd"]["command"]


@pytest.mark.parametrize(
    "env",
    [{}, {"MINIO_ROOT_USER": "faceauth-admin", "MINIO_ROOT_PASSWORD": "a-long-random-password"}],
    ids=["dev-defaults", "configured"],
)
def test_one_minio_credential_pair_for_minio_milvus_and_api(services, env):
    minio = resolved_environment(services["minio"], env)
    milvus = resolved_environment(services["milvus"], env)
    api = resolved_environment(services["api"], env)
    user, password = minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"]
    assert (milvus["MINIO_ACCESS_KEY_ID"], milvus["MINIO_SECRET_ACCESS_KEY"]) == (user, password)
    assert (api["FACEAUTH_MINIO_ACCESS_KEY"], api["FACEAUTH_MINIO_SECRET_KEY"]) == (user, password)
    if env:
        assert (user, password) == (env["MINIO_ROOT_USER"], env["MINIO_ROOT_PASSWORD"])


def test_the_internal_token_is_shared_and_has_no_default(services):
    api_value = environment_of(services["api"])["FACEAUTH_ML_INFERENCE_AUTH_TOKEN"]
    ml_value = environment_of(services["ml-inference"])["ML_SERVICE_AUTH_TOKEN"]
    for value in (api_value, ml_value):
        assert variables_in(value) == {TOKEN_VARIABLE: ":?"}, value
        with pytest.raises(MissingRequired):
            interpolate(value, {})
        with pytest.raises(MissingRequired):  # an empty value (as in .env.example) is refused too
            interpolate(value, {TOKEN_VARIABLE: ""})
    secret = "s3cr3t-from-dotenv"
    assert interpolate(api_value, {TOKEN_VARIABLE: secret}) == interpolate(ml_value, {TOKEN_VARIABLE: secret}) == secret


def _settings_env(settings_cls: type[BaseSettings]) -> tuple[str, set[str]]:
    prefix = settings_cls.model_config["env_prefix"]
    return prefix, set(settings_cls.model_fields)


@pytest.mark.parametrize(("name", "settings_cls"), [("api", APISettings), ("ml-inference", MLSettings)])
def test_every_variable_set_for_a_service_is_one_of_its_settings(services, name, settings_cls):
    prefix, fields = _settings_env(settings_cls)
    env = environment_of(services[name])
    assert env, f"{name} sets no environment"
    for key in env:
        assert key.upper().startswith(prefix), f"{name}: {key} lacks the {prefix} prefix, so it is never read"
        assert key[len(prefix) :].lower() in fields, f"{name}: {key} is not a field of {settings_cls.__name__}"


@pytest.fixture
def clean_environment(monkeypatch):
    """No FACEAUTH_* / ML_SERVICE_* from the machine running the tests (CI sets some) leaks into the settings."""
    import os

    for key in list(os.environ):
        if key.upper().startswith(("FACEAUTH_", "ML_SERVICE_")):
            monkeypatch.delenv(key)
    return monkeypatch


def _load(settings_cls: type[BaseSettings], env: Mapping[str, str], monkeypatch) -> BaseSettings:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return settings_cls(_env_file=None)


@pytest.mark.parametrize(
    "compose_env",
    [
        {},
        {
            TOKEN_VARIABLE: "t0ken",
            "MINIO_ROOT_USER": "u",
            "MINIO_ROOT_PASSWORD": "p" * 12,
            "ML_SERVICE_AUTO_FETCH": "false",
        },
    ],
    ids=["defaults", "configured"],
)
def test_compose_environment_builds_valid_settings_that_fit_together(services, clean_environment, compose_env):
    api_env = resolved_environment(services["api"], compose_env)
    ml_env = resolved_environment(services["ml-inference"], compose_env)
    api = _load(APISettings, api_env, clean_environment)
    for key in api_env:
        clean_environment.delenv(key)
    ml = _load(MLSettings, ml_env, clean_environment)
    assert isinstance(api, APISettings) and isinstance(ml, MLSettings)

    # Each service listens on the port Compose publishes and the image exposes.
    assert (api.api_host, api.api_port) == ("0.0.0.0", 8000)
    assert (ml.host, ml.port) == ("0.0.0.0", 8001)
    # The api reaches the ML service by its Compose name and port, with the token the ML service requires.
    ml_url = urlsplit(api.ml_inference_service_url)
    assert (ml_url.scheme, ml_url.hostname, ml_url.port) == ("http", "ml-inference", ml.port)
    assert ml.auth_token and api.ml_inference_auth_token == ml.auth_token
    # Milvus server (not milvus-lite) and MinIO (not the local folder), both by their Compose names.
    milvus_url = urlsplit(api.resolved_milvus_uri)
    assert (milvus_url.hostname, milvus_url.port) == ("milvus", 19530)
    assert milvus_url.hostname in services
    assert api.object_store == "s3" and api.minio_secure is False
    host, port = api.minio_endpoint.split(":")
    assert host in services and int(port) == 9000
    assert api.minio_bucket == "faceauth"
    # The replicas coordinate through the compose Redis.
    coordination = urlsplit(api.coordination_url)
    assert (coordination.scheme, coordination.hostname, coordination.port) == ("redis", "redis", 6379)
    assert ml.auto_fetch is (compose_env.get("ML_SERVICE_AUTO_FETCH", "true") == "true")
    assert str(ml.model_dir) == "/app/data/models"


def test_compose_refuses_to_start_without_the_token(services):
    with pytest.raises(MissingRequired, match=TOKEN_VARIABLE):
        {k: interpolate(v, {}) for k, v in environment_of(services["api"]).items()}


# -- Dockerfiles --------------------------------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Dockerfile:
    stages: list[Stage]

    @property
    def final_stage(self) -> Stage:
        return self.stages[-1]


def parse_dockerfile(path: Path) -> Dockerfile:
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, f"{path.name}: dangling line continuation"
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest.strip(), re.IGNORECASE)
            assert m, f"{path.name}: cannot read FROM {rest}"
            stages.append(Stage(m.group(1), m.group(2)))
        else:
            assert stages, f"{path.name}: {keyword} before FROM"
            stages[-1].instructions.append((keyword, rest.strip()))
    return Dockerfile(stages)


def dockerfile_env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in stage.instructions:
        if keyword == "ENV":
            for token in shlex.split(rest):
                key, _, value = token.partition("=")
                env[key] = value
    return env


def _one(stage: Stage, keyword: str) -> list[str]:
    return [rest for k, rest in stage.instructions if k == keyword]


DOCKERFILES = [
    pytest.param("Dockerfile", "api", 8000, APISettings, "run_api", id="api"),
    pytest.param("ml_inference.Dockerfile", "ml-inference", 8001, MLSettings, "run_ml", id="ml-inference"),
]


@pytest.mark.parametrize(("filename", "service", "port", "settings_cls", "entry"), DOCKERFILES)
def test_dockerfile_is_multi_stage_and_runs_as_non_root(filename, service, port, settings_cls, entry):
    df = parse_dockerfile(ROOT / filename)
    assert len(df.stages) >= 2, "multi-stage: build tools stay out of the runtime image"
    names = [s.name for s in df.stages[:-1]]
    final = df.final_stage
    copied_from = [re.search(r"--from=(\S+)", rest) for rest in _one(final, "COPY")]
    assert any(m and m.group(1) in names for m in copied_from), "the runtime stage copies from the build stage"
    # Nothing is installed in the runtime stage: no uv, no pip, no apt.
    for rest in _one(final, "RUN"):
        assert not re.search(r"\b(uv|pip|apt-get|apt)\b", rest), f"runtime stage installs something: {rest}"
    users = _one(final, "USER")
    assert users, "no USER: the service would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    keywords = [k for k, _ in final.instructions]
    assert keywords.index("USER") < keywords.index("CMD")


@pytest.mark.parametrize(("filename", "service", "port", "settings_cls", "entry"), DOCKERFILES)
def test_dockerfile_uses_the_frozen_lock_without_dev_dependencies(filename, service, port, settings_cls, entry):
    df = parse_dockerfile(ROOT / filename)
    runs = [rest for stage in df.stages for rest in _one(stage, "RUN")]
    uv_project_commands = [r for r in runs if re.search(r"\buv\s+(sync|run|export)\b", r)]
    assert uv_project_commands, "the environment is built with uv"
    for command in uv_project_commands:
        assert "--frozen" in command.split(), f"not --frozen: {command}"
        if re.search(r"\buv\s+sync\b", command):
            assert "--no-dev" in command.split(), f"dev dependencies installed: {command}"
    assert not any(re.search(r"\buv\s+(lock|add)\b", r) for r in runs)
    copies = " ".join(rest for stage in df.stages[:-1] for rest in _one(stage, "COPY"))
    assert "uv.lock" in copies.split()


@pytest.mark.parametrize(("filename", "service", "port", "settings_cls", "entry"), DOCKERFILES)
def test_dockerfile_port_command_and_settings(services, filename, service, port, settings_cls, entry):
    final = parse_dockerfile(ROOT / filename).final_stage
    assert [int(p.split("/")[0]) for rest in _one(final, "EXPOSE") for p in rest.split()] == [port]
    assert [parse_port(p, {}).container_port for p in services[service]["ports"]] == [port]
    # CMD (exec form) runs the right faceauth subcommand; the console script exists in the package.
    cmd = json.loads(_one(final, "CMD")[-1])
    assert cmd[0] == "faceauth" and len(cmd) == 2
    assert cli.build_parser().parse_args(cmd[1:]).func is getattr(cli, entry)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["faceauth"] == "faceauth.cli:main"
    # Every setting the image sets is a real one, and the port it sets is the one exposed.
    prefix, fields = _settings_env(settings_cls)
    image_env = {k: v for k, v in dockerfile_env(final).items() if k.startswith(prefix)}
    for key in image_env:
        assert key[len(prefix) :].lower() in fields, f"{filename}: {key} is not a setting"
    port_key = next(k for k in image_env if k.endswith("_PORT"))
    assert int(image_env[port_key]) == port


@pytest.mark.parametrize(("filename", "service", "port", "settings_cls", "entry"), DOCKERFILES)
def test_dockerfile_healthcheck_targets_the_service(filename, service, port, settings_cls, entry):
    checks = _one(parse_dockerfile(ROOT / filename).final_stage, "HEALTHCHECK")
    assert len(checks) == 1 and " CMD " in f" {checks[0]} "
    command = checks[0].split(" CMD ", 1)[1]
    argv = shlex.split(command)
    assert argv[:2] == ["python", "-c"]
    assert f"http://127.0.0.1:{port}/healthz" in argv[2]


# -- the healthcheck one-liners, run against a stand-in server ----------------------------------------------------


class _Stub(http.server.BaseHTTPRequestHandler):
    status: ClassVar[int] = 200
    paths: ClassVar[list[str]] = []

    def do_GET(self):
        type(self).paths.append(self.path)
        self.send_response(type(self).status)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, *args):
        pass


@pytest.fixture
def stub_server() -> Iterator[tuple[int, type[_Stub]]]:
    handler = type("Handler", (_Stub,), {"status": 200, "paths": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()


def _healthcheck_codes(services) -> list[tuple[str, int, str]]:
    codes = []
    for filename, port in (("Dockerfile", 8000), ("ml_inference.Dockerfile", 8001)):
        check = _one(parse_dockerfile(ROOT / filename).final_stage, "HEALTHCHECK")[0]
        codes.append((filename, port, shlex.split(check.split(" CMD ", 1)[1])[2]))
    for name, port in (("api", 8000), ("ml-inference", 8001)):
        codes.append((f"compose {name}", port, healthcheck_python_code(services[name]["healthcheck"]["test"])))
    return codes


def test_healthcheck_one_liners_pass_on_200_and_fail_otherwise(services, stub_server):
    stub_port, handler = stub_server
    for label, port, code in _healthcheck_codes(services):
        code = code.replace(f"127.0.0.1:{port}/", f"127.0.0.1:{stub_port}/")
        expected_path = re.search(rf"127\.0\.0\.1:{stub_port}(/\w+)", code).group(1)
        for status, healthy in ((200, True), (503, False)):
            handler.status = status
            handler.paths.clear()
            result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
            assert (result.returncode == 0) is healthy, (label, status, result.stderr[-300:])
            assert handler.paths == [expected_path], label
