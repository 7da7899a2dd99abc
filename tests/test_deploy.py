"""deploy/: the compose file of the team topology, its .env.example and its image agree with
each other and with the code they start.

``docker compose config`` checks the file where the compose plugin is installed; the other
tests read the YAML themselves (variables resolved from ``.env.example`` the way compose
does) so a renamed service, port, setting or volume fails here without Docker.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import BIN

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}; "$$" is a literal $
_VAR = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(?:(:?[-?])([^}]*))?\}")


def env_example() -> dict[str, str]:
    """KEY=VALUE lines of deploy/.env.example."""
    pairs = (line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines())
    return {k.strip(): v.strip() for k, *rest in pairs for v in rest if not k.startswith("#") and k}


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution over ``env``; an unset required variable fails."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.groups()
        value = env.get(name)
        if op in (":-", ":?") and not value:
            value = None
        if value is not None:
            return value
        assert op is None or op.endswith("-"), f"${{{name}}} is required: {arg}"
        return arg or ""

    return _VAR.sub(one, text).replace("$$", "$")


def _resolve(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_resolve(x, env) for x in node]
    if isinstance(node, dict):
        return {k: _resolve(v, env) for k, v in node.items()}
    return node


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file with every variable resolved from .env.example."""
    return _resolve(yaml.safe_load(COMPOSE.read_text()), env_example())


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def _published(service: dict[str, Any]) -> dict[int, int]:
    """container port -> host port of a service's ``ports``."""
    out = {}
    for spec in service.get("ports", []):
        *host, container = spec.split(":")
        out[int(container)] = int(host[-1])
    return out


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    probe = (
        subprocess.run([docker or "docker", "compose", "version"], capture_output=True, text=True)
        if docker
        else None
    )
    if probe is None or probe.returncode != 0:
        why = "docker is not installed" if probe is None else probe.stderr.strip().splitlines()[0]
        pytest.skip(f"the docker compose plugin is not available ({why}); the YAML checks "
                    "in this module still run")  # fmt: skip
    res = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "--env-file", str(ENV_EXAMPLE), "config", "-q"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr


def test_every_variable_read_is_in_env_example_and_every_setting_there_is_read() -> None:
    used = {m.group(1) for m in _VAR.finditer(COMPOSE.read_text())}
    example = env_example()
    assert used == set(example), (
        f"missing from .env.example: {sorted(used - set(example))}; "
        f"unused there: {sorted(set(example) - used)}"
    )
    required = {m.group(1) for m in _VAR.finditer(COMPOSE.read_text()) if m.group(2) == ":?"}
    assert {"POSTGRES_PASSWORD", "S3_SECRET_ACCESS_KEY", "REGISTRY_ADMIN_TOKEN"} <= required
    assert all(example[name].startswith("change-me") for name in required if "SECRET" in name)


def test_an_unset_required_secret_stops_interpolation() -> None:
    env = env_example()
    del env["REGISTRY_ADMIN_TOKEN"]
    with pytest.raises(AssertionError, match=r"REGISTRY_ADMIN_TOKEN\} is required: set "):
        _resolve(yaml.safe_load(COMPOSE.read_text()), env)


def test_services_depend_on_services_that_exist_and_report_ready(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {
        "postgres", "minio", "create-bucket", "mlflow", "registry-migrate", "registry"
    }  # fmt: skip
    one_shot = {name for name, s in services.items() if "restart" not in s}
    assert one_shot == {"create-bucket", "registry-migrate"}
    for name, service in services.items():
        for dep, cond in service.get("depends_on", {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{dep} has no healthcheck"
            else:
                assert cond["condition"] == "service_completed_successfully"
                assert dep in one_shot, f"{name} waits for long-running {dep} to exit"
    assert set(services["registry"]["depends_on"]) == {"registry-migrate", "mlflow"}
    assert services["mlflow"]["image"] == services["registry"]["image"]  # one image


def test_named_volumes_are_declared_and_mounted_files_exist(compose: dict) -> None:
    declared, used = set(compose["volumes"]), set()
    for service in compose["services"].values():
        for spec in service.get("volumes", []):
            source = spec.split(":")[0]
            if source.startswith((".", "/")):
                assert (DEPLOY / source).resolve().is_file(), f"{source} does not exist"
            else:
                used.add(source)
    assert used == declared


def test_urls_name_the_services_and_ports_that_serve_them(compose: dict) -> None:
    s = compose["services"]
    mlflow_cmd, registry_env = s["mlflow"]["command"], s["registry"]["environment"]
    mlflow_port = int(_option(mlflow_cmd, "--port"))
    tracking = urlsplit(registry_env["MLOPS_REGISTRY_TRACKING_URI"])
    assert (tracking.hostname, tracking.port) == ("mlflow", mlflow_port)
    minio_port = int(_option(s["minio"]["command"], "--address").lstrip(":"))
    endpoint = urlsplit(s["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"])
    assert (endpoint.hostname, endpoint.port) == ("minio", minio_port)
    bucket = s["create-bucket"]["command"][-1].removeprefix("store/")
    assert _option(mlflow_cmd, "--artifacts-destination") == f"s3://{bucket}/mlflow"
    assert f"@minio:{minio_port}" in s["create-bucket"]["environment"]["MC_HOST_store"]
    created = re.findall(r"CREATE DATABASE (\w+)", (DEPLOY / "postgres-init.sql").read_text())
    databases = {s["postgres"]["environment"]["POSTGRES_DB"], *created}
    for url in (_option(mlflow_cmd, "--backend-store-uri"), registry_env[
        "MLOPS_REGISTRY_DATABASE_URL"
    ], s["registry-migrate"]["environment"]["MLOPS_REGISTRY_DATABASE_URL"]):  # fmt: skip
        parts = urlsplit(url)
        assert (parts.hostname, parts.port) == ("postgres", 5432)
        assert parts.path.lstrip("/") in databases
    registry_port = int(registry_env["MLOPS_REGISTRY_PORT"])
    assert registry_port in _published(s["registry"])
    assert mlflow_port in _published(s["mlflow"]) and minio_port in _published(s["minio"])
    assert f":{registry_port}/readyz" in s["registry"]["healthcheck"]["test"][-1]
    assert f":{mlflow_port}/health" in s["mlflow"]["healthcheck"]["test"][-1]


def test_registry_environment_is_valid_server_settings(
    compose: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from registry_server.settings import RegistrySettings, load_registry_settings

    env = compose["services"]["registry"]["environment"]
    fields = {f"MLOPS_REGISTRY_{name.upper()}" for name in RegistrySettings.model_fields}
    unknown = {k for k in env if k.startswith("MLOPS_REGISTRY_")} - fields
    assert not unknown, f"not registry settings: {unknown}"
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    settings = load_registry_settings()
    assert (settings.host, settings.port, settings.workers) == ("0.0.0.0", 8765, 4)
    mount = compose["services"]["registry"]["volumes"][0].split(":")
    assert mount[1] == str(settings.policy_path)
    from mlops.policy import load_policy

    assert load_policy(DEPLOY / mount[0]).targets["production"].protected


def test_mlflow_options_exist_and_its_host_guard_lets_the_registry_in(compose: dict) -> None:
    from mlflow.server.security_utils import is_allowed_host_header

    service = compose["services"]["mlflow"]
    command = service["command"]
    assert command[:2] == ["mlflow", "server"]
    help_text = subprocess.run(
        [str(BIN / "mlflow"), "server", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for option in (c for c in command if c.startswith("--")):
        assert re.search(rf"\s{option}\b", help_text), f"mlflow server has no {option}"
    allowed = service["environment"]["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    port = _option(command, "--port")
    assert is_allowed_host_header(allowed, f"mlflow:{port}")
    assert is_allowed_host_header(allowed, f"localhost:{port}")
    assert not is_allowed_host_header(allowed, "attacker.example:5000")


def test_the_image_installs_the_s3_extra_and_the_commands_it_runs(compose: dict) -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert 'pip install ".[s3]"' in dockerfile
    extras = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(dep.startswith("dvc-s3") for dep in extras["s3"])
    assert "mlops[s3]" in extras["dev"]  # `make test` installs .[dev]: the topology test runs
    s = compose["services"]
    assert s["registry"]["command"] == ["mlops", "server"]
    module = s["registry-migrate"]["command"][-1]
    assert s["registry-migrate"]["command"][:2] == ["python", "-m"]
    assert importlib.util.find_spec(module) is not None
    for package in ("mlops", "registry_server"):
        assert f"COPY {package} ./{package}" in dockerfile
        assert f"!{package}/**" in (DEPLOY / "Dockerfile.dockerignore").read_text()
