"""The ``mlops`` CLI (``CliRunner``) against a real ``mlops server`` process.

Tokens are bootstrapped straight into the server's SQLite database (``mlops token
create``), then every review command goes over HTTP like a user's shell would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from mlops.cli import app
from tests.conftest import free_port
from tests.test_client import (  # noqa: F401  (fixtures)
    ADMIN_TOKEN,
    ServerProcess,
    TrainedModel,
    policy_file,
    server_process,
    trained,
)

runner = CliRunner()


@dataclass(frozen=True)
class Cli:
    server: ServerProcess

    def __call__(self, *args: str, token: str | None = None, code: int = 0) -> str:
        env = {"MLOPS_REGISTRY_URL": self.server.url, "COLUMNS": "200"}
        if token:
            env["MLOPS_TOKEN"] = token
        result = runner.invoke(app, list(args), env=env)
        assert result.exit_code == code, result.output
        return result.output if code else result.stdout

    def json(self, *args: str, token: str | None = None) -> object:
        return json.loads(self(*args, "--json", token=token))

    def new_token(self, user: str, *roles: str) -> str:
        options = [x for r in roles for x in ("--role", r)]
        created = self.json("token", "create", user, *options, "--database-url", self.db)
        assert created["user"] == user and created["roles"] == list(roles)
        return created["token"]

    @property
    def db(self) -> str:
        return self.server.database_url


@pytest.fixture(scope="module")
def cli(server_process: ServerProcess) -> Cli:  # noqa: F811
    return Cli(server_process)


def test_token_create_writes_the_database_and_prints_once(cli: Cli):
    out = cli("token", "create", "olga", "--role", "approver", "--database-url", cli.db)
    token = out.splitlines()[1].strip()
    assert "Store it now" in out and len(token) > 20
    assert cli.json("me", token=token) == {"user": "olga", "roles": ["approver"]}
    listed = cli.json("token", "list", token=ADMIN_TOKEN)
    assert [t["user"] for t in listed].count("olga") == 1 and "token" not in listed[0]
    events = cli.json("audit", "list", "--limit", "1000", token=ADMIN_TOKEN)
    created = [e for e in events if e["action"] == "token_created"]
    assert any(e["payload"]["user"] == "olga" and e["actor"].startswith("cli:") for e in created)


def test_token_create_takes_the_user_as_option_too(cli: Cli):
    out = cli("token", "create", "--user", "pia", "-r", "requester", "--database-url", cli.db)
    assert out.splitlines()[0].endswith("for pia [requester]:")
    result = runner.invoke(app, ["token", "create", "--role", "admin"])
    assert result.exit_code == 2 and "Give the user once, as USER or --user" in result.output


def test_token_create_refuses_an_unknown_role(cli: Cli):
    out = cli("token", "create", "x", "--role", "boss", "--database-url", cli.db, code=1)
    assert "gate_error: Roles ['boss'] are not valid" in out and "hint:" in out


def test_review_flow(cli: Cli, trained: TrainedModel, model_name: str):  # noqa: F811
    first, _ = trained.new_version(model_name)
    second, digest = trained.new_version(model_name)
    rita, ann = cli.new_token("rita", "requester"), cli.new_token("ann", "approver")
    bob = cli.new_token("bob", "approver")

    out = cli("request", model_name, str(first), "--to", "staging", token=rita)
    assert "pending" in out and "blocked: approvals: 0 of 1 required" in out
    first_id = out.split("#", 1)[1].split(":", 1)[0]
    assert "promoted" in cli("approve", first_id, "-m", "looks good", token=ann)

    p = cli.json("request", model_name, str(second), "--to", "production", token=rita)
    assert (p["evidence_digest"], p["quorum"]) == (digest, {"have": 0, "need": 2})
    p = cli.json("approve", str(p["id"]), "-m", "first", token=ann)
    status = cli.json("status", str(p["id"]), token=ann)
    assert status["quorum"] == {"have": 1, "need": 2} and status["approvals"][0]["user"] == "ann"
    assert "approvals: 1 of 2 required" in cli("status", str(p["id"]), token=ann)
    assert cli.json("reject", str(p["id"]), "-m", "drift", token=bob)["state"] == "rejected"

    p = cli.json("request", model_name, str(second), "--to", "production", token=rita)
    assert cli.json("cancel", str(p["id"]), token=rita)["state"] == "cancelled"
    listed = cli.json("list", "--model", model_name, token=ann)
    assert [x["state"] for x in listed] == ["cancelled", "rejected", "promoted"]
    assert "cancelled" in cli("list", "--model", model_name, "--state", "cancelled")
    second_stage, _ = trained.new_version(model_name)
    p = cli.json("request", model_name, str(second_stage), "--to", "staging", token=rita)
    cli("approve", str(p["id"]), token=bob)
    assert cli.json("alias", model_name, "staging")["version"] == second_stage

    back = cli.json("rollback", model_name, "staging", "-m", "latency", token=ann)
    assert back["version"] == first
    history = cli.json("history", model_name, "staging", token=ann)
    assert [h["version"] for h in history][:3] == [first, second_stage, first]
    assert "audit chain ok" in cli("audit", "verify", token=ann)
    assert cli.json("audit", "verify", token=ann)["ok"] is True


def test_errors_print_code_message_hint_and_exit_1(cli: Cli, trained, model_name):  # noqa: F811
    version, _ = trained.new_version(model_name)
    rita = cli.new_token("rita2", "requester")
    p = cli.json("request", model_name, str(version), "--to", "staging", token=rita)
    out = cli("approve", str(p["id"]), token=rita, code=1)
    assert out.startswith("forbidden: User 'rita2' with roles ['requester'] may not approve")
    assert "hint: Ask an admin" in out
    assert "not_found: No promotion request with id 424242" in cli(
        "status", "424242", token=rita, code=1
    )
    out = cli("me", "--token", "wrong", code=1)
    assert out.startswith("unauthenticated: The bearer token is unknown or revoked")


def test_request_without_recorded_evidence_fails_before_http(cli: Cli, trained, model_name):  # noqa: F811
    from mlflow.tracking import MlflowClient

    client = MlflowClient(trained.tracking_uri, registry_uri=trained.tracking_uri)
    client.create_registered_model(model_name)
    client.create_model_version(model_name, trained.model_uri, run_id=trained.run_id)
    out = cli("request", model_name, "1", "--to", "staging", token="unused", code=1)
    assert out.startswith("evidence_error: Model") and "mlops.evidence.digest" in out


def test_unreachable_server_and_usage_errors():
    url = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["status", "1", "--url", url, "--token", "t"])
    assert result.exit_code == 1
    assert result.output.startswith(
        f"registry_unavailable: Cannot reach the registry server at '{url}'"
    )
    assert "mlops server" in result.output
    result = runner.invoke(app, ["reject", "1"])
    assert result.exit_code == 2 and "Missing option '--message'" in result.output


@pytest.mark.postgres
def test_token_bootstrap_on_postgres(pg_url: str, mlflow_home, policy_file):  # noqa: F811
    import os

    from fastapi.testclient import TestClient

    from mlops.client import RegistryClient
    from registry_server import create_app
    from registry_server.settings import RegistrySettings

    result = runner.invoke(
        app, ["token", "create", "pgadmin", "-r", "admin", "--database-url", pg_url, "--json"]
    )
    assert result.exit_code == 0, result.output
    token = json.loads(result.stdout)["token"]
    settings = RegistrySettings(
        database_url=pg_url,
        policy_path=policy_file,
        tracking_uri=os.environ["MLOPS_TRACKING_URI"],
        reconcile_interval=0,
    )
    with TestClient(create_app(settings)) as http:
        client = RegistryClient(http=http, token=token)
        assert (client.me().user, client.me().roles) == ("pgadmin", ("admin",))
        assert client.verify_audit().ok


def test_token_create_names_an_unreachable_database():
    url = f"postgresql+psycopg://postgres:secret@127.0.0.1:{free_port()}/nowhere"
    result = runner.invoke(app, ["token", "create", "x", "-r", "admin", "--database-url", url])
    assert result.exit_code == 1
    assert result.output.startswith("config_error: Cannot write the token to the server database")
    assert "postgres:***@127.0.0.1" in result.output and "secret" not in result.output
