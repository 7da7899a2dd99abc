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
from tests._registry import RegistryProcess
from tests.conftest import free_port
from tests.test_client import (  # noqa: F401  (fixtures)
    ADMIN_TOKEN,
    TrainedModel,
    policy_file,
    server_process,
    trained,
)

runner = CliRunner()


@dataclass(frozen=True)
class Cli:
    server: RegistryProcess

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
def cli(server_process: RegistryProcess) -> Cli:  # noqa: F811
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
    assert "hint: Approvals need a role the policy names: ask an admin" in out
    assert "`mlops token create USER --role approver`" in out
    assert "not_found: No promotion request with id 424242" in cli(
        "status", "424242", token=rita, code=1
    )
    out = cli("me", "--token", "wrong", code=1)
    assert out.startswith("unauthenticated: The bearer token is unknown or revoked")
    assert "`mlops token create USER --role ROLE`" in out


def test_request_without_recorded_evidence_fails_before_http(cli: Cli, trained, model_name):  # noqa: F811
    from mlflow.tracking import MlflowClient

    client = MlflowClient(trained.tracking_uri, registry_uri=trained.tracking_uri)
    client.create_registered_model(model_name)
    client.create_model_version(model_name, trained.model_uri, run_id=trained.run_id)
    out = cli("request", model_name, "1", "--to", "staging", token="unused", code=1)
    assert out.startswith("evidence_error: Model") and "mlops.evidence.digest" in out
    hint = out.split("hint: ", 1)[1]
    assert "`dvc repro`" in hint and "`mlops request MODEL VERSION --to ALIAS`" in hint
    assert "collect" not in hint and "build_evidence" not in hint  # the Python hint


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


# --- issue #12: the CLI speaks its own language -------------------------------------------
def _run(*args: str, columns: int = 200, **env: str):
    return runner.invoke(app, list(args), env={"COLUMNS": str(columns), **env})


def test_a_wrong_token_is_refused_on_reads_too(cli: Cli, trained, model_name):  # noqa: F811
    version, _ = trained.new_version(model_name)
    rita = cli.new_token("rita3", "requester")
    p = cli.json("request", model_name, str(version), "--to", "staging", token=rita)
    env = {"MLOPS_REGISTRY_URL": cli.server.url}
    assert _run("status", str(p["id"]), **env).exit_code == 0  # no token: a public read
    result = _run("status", str(p["id"]), MLOPS_TOKEN="not-a-token", **env)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("unauthenticated: The bearer token is unknown or revoked")
    assert "hint: Pass a valid token with --token or MLOPS_TOKEN" in result.output
    for args in (["list"], ["history", model_name, "staging"], ["alias", model_name, "x"]):
        result = _run(*args, "--token", "not-a-token", **env)
        assert (result.exit_code, result.output[:16]) == (1, "unauthenticated:"), args


def test_every_error_code_has_a_cli_hint_naming_a_command() -> None:
    import re

    from mlops.cli._hints import BY_CODE, BY_COMMAND, FALLBACK, cli_hint
    from mlops.client import InvalidRequest  # noqa: F401  (registers its code)
    from mlops.errors import _BY_CODE

    library = {code for code, cls in _BY_CODE.items() if cls.__module__.startswith("mlops")}
    assert library <= set(BY_CODE), library - set(BY_CODE)
    for hint in [*BY_CODE.values(), *BY_COMMAND.values(), FALLBACK]:
        assert re.search(r"`(mlops|dvc|git) ", hint), hint
        assert not re.search(r"\b(GET|POST|DELETE) /|mlops\.\w+\.\w+\(", hint), hint
    assert "mlops list" in cli_hint("not_found", command="status")
    assert "mlops token list" in cli_hint("not_found", command="token_revoke")


def test_hints_name_cli_commands_while_rest_and_python_keep_theirs(
    cli: Cli,
    trained,  # noqa: F811
    model_name,
) -> None:
    import httpx

    from mlops.errors import ModelVersionNotFound
    from mlops.registry import get

    out = cli("status", "424242", token=ADMIN_TOKEN, code=1)
    assert "hint: List the promotion requests and their ids with `mlops list --state all`" in out
    assert "/v1/" not in out
    body = httpx.get(f"{cli.server.url}/v1/promotions/424242").json()
    assert body["code"] == "not_found" and "GET /v1/promotions" in body["hint"]

    trained.new_version(model_name)
    out = cli("request", model_name, "99", "--to", "staging", token=ADMIN_TOKEN, code=1)
    assert out.startswith("model_version_not_found:")
    assert "hint: List the registered versions with `mlops versions MODEL`" in out
    assert "mlops.registry.versions" not in out
    with pytest.raises(ModelVersionNotFound, match="99") as raised:
        get(model_name, 99)
    assert "mlops.registry.versions(name)" in raised.value.hint

    out = cli("alias", model_name, "canary", token=ADMIN_TOKEN, code=1)
    assert "hint:" in out and "`mlops" in out.split("hint:", 1)[1] and "POST /v1" not in out


def test_a_misspelt_model_or_alias_is_an_error_not_an_empty_table(
    cli: Cli,
    trained,  # noqa: F811
    model_name,
) -> None:
    version, _ = trained.new_version(model_name)
    rita = cli.new_token("rita4", "requester")
    cli("request", model_name, str(version), "--to", "staging", token=rita)
    typo = model_name[:-1]
    out = cli("history", typo, "staging", code=1)
    assert out.startswith(
        f"not_found: The registry server has no promotion request for model {typo!r}"
    )
    assert f"did you mean {model_name!r}" in out and "`mlops list --state all`" in out
    out = cli("list", "--model", typo, code=1)
    assert out.startswith("not_found:") and f"did you mean {model_name!r}" in out
    out = cli("history", model_name, "stagin", code=1)
    assert "has held or been requested for alias 'stagin'" in out and "'staging'" in out
    # a known model with nothing in one state is an empty answer, not an error
    assert cli.json("list", "--model", model_name, "--state", "rejected") == []
    assert cli.json("history", model_name, "staging") == []


def test_me_shows_the_roles_in_brackets(cli: Cli) -> None:
    olga = cli.new_token("olga2", "approver", "requester")
    assert cli("me", token=olga).strip() == "olga2 [approver, requester]"


def test_list_takes_every_state_and_all_and_help_lists_them(
    cli: Cli,
    trained,  # noqa: F811
    model_name,
) -> None:
    version, _ = trained.new_version(model_name)
    rita = cli.new_token("rita5", "requester")
    p = cli.json("request", model_name, str(version), "--to", "staging", token=rita)
    cli("cancel", str(p["id"]), token=rita)
    everything = cli.json("list", "--model", model_name, "--state", "all")
    assert [x["state"] for x in everything] == ["cancelled"]
    assert cli.json("list", "--model", model_name, "--state", "CANCELLED") == everything
    assert cli.json("list", "--model", model_name) == everything
    help_text = _run("list", "--help", columns=200).output
    for state in ("all", "pending", "approved", "promoted", "rejected", "cancelled", "expired",
                  "superseded"):  # fmt: skip
        assert state in help_text
    bad = _run("list", "--state", "done", MLOPS_REGISTRY_URL=cli.server.url)
    assert bad.exit_code == 2 and "'done' is not one of" in bad.output


def test_tables_keep_names_whole_at_80_columns(cli: Cli, trained) -> None:  # noqa: F811
    name = "iris-classifier-with-a-long-name"
    version, _ = trained.new_version(name)
    rita = cli.new_token("requester-with-a-long-name", "requester")
    cli("request", name, str(version), "--to", "staging", token=rita)
    out = _run("list", "--model", name, columns=80, MLOPS_REGISTRY_URL=cli.server.url).output
    assert name in out and "requester-with-a-long-name" in out and "…" not in out
    assert max(len(line) for line in out.splitlines()) <= 80


def test_audit_list_shows_the_newest_events_and_what_they_were_about(
    cli: Cli,
    trained,  # noqa: F811
    model_name,
) -> None:
    from mlops.policy import parse_policy
    from tests.test_client import POLICY

    version, _ = trained.new_version(model_name)
    rita = cli.new_token("rita6", "requester")
    p = cli.json("request", model_name, str(version), "--to", "staging", token=rita)
    everything = cli.json("audit", "list", "--limit", "100000", token=ADMIN_TOKEN)
    newest = cli.json("audit", "list", "--limit", "2", token=ADMIN_TOKEN)
    assert [e["id"] for e in newest] == [e["id"] for e in everything[-2:]]
    assert (newest[-1]["action"], newest[-1]["payload"]["request_id"]) == ("requested", p["id"])
    oldest = cli.json("audit", "list", "--after", "0", "--limit", "2", token=ADMIN_TOKEN)
    assert [e["id"] for e in oldest] == [e["id"] for e in everything[:2]]
    table = cli("audit", "list", "--limit", "3", token=ADMIN_TOKEN)
    assert "what" in table.splitlines()[2]
    assert f"{model_name} v{version} -> staging (request #{p['id']})" in table
    first = cli("audit", "list", "--after", "0", "--limit", "1", token=ADMIN_TOKEN)
    assert "policy_loaded" in first  # the server's start put its policy in force, first
    assert f"policy {parse_policy(POLICY).digest[:12]} in force" in first


def test_server_on_a_busy_port_says_so_and_names_the_option() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run("server", "--port", str(port), "--database-url", "sqlite://")
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"config_error: Port {port} on 127.0.0.1 is already in use.")
    assert "hint: Pick another port with `mlops server --port PORT`" in result.output
    assert "registry server on" not in result.output


def test_env_prints_exports_for_the_project_found_from_any_subfolder(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shlex

    (tmp_path / ".dvc").mkdir()
    (tmp_path / "reports" / "deep").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "reports" / "deep")
    for name in ("MLOPS_HOME", "MLOPS_TRACKING_URI", "MLOPS_REGISTRY_URI", "MLOPS_DVC_ROOT",
                 "BENTOML_HOME"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    result = _run("env")
    assert result.exit_code == 0, result.output
    exports = dict(
        shlex.split(line.removeprefix("export "))[0].split("=", 1)
        for line in result.stdout.splitlines()
    )
    home = tmp_path / ".mlops"
    assert exports["MLOPS_HOME"] == str(home) and exports["MLOPS_DVC_ROOT"] == str(tmp_path)
    assert exports["MLFLOW_TRACKING_URI"] == f"sqlite:///{home / 'mlflow.db'}"
    assert exports["MLFLOW_REGISTRY_URI"] == exports["MLFLOW_TRACKING_URI"]
    assert exports["BENTOML_HOME"] == str(home / "bentoml")
    assert not list(tmp_path.rglob("mlflow.db"))


def test_versions_lists_the_registered_versions(cli: Cli, trained, model_name) -> None:  # noqa: F811
    first, _ = trained.new_version(model_name)
    second, _ = trained.new_version(model_name)
    listed = cli.json("versions", model_name)
    assert [v["version"] for v in listed] == [second, first]
    out = _run("versions", model_name + "x")
    assert out.exit_code == 1 and out.output.startswith("model_version_not_found:"), out.output
    assert "hint: List the registered versions with `mlops versions MODEL`" in out.output


def test_policy_diff_and_history_against_the_server(
    cli: Cli,
    trained,  # noqa: F811
    model_name,
    tmp_path,
) -> None:
    from mlops.policy import parse_policy
    from tests.test_client import POLICY

    version, _ = trained.new_version(model_name)
    rita, ann = cli.new_token("rita7", "requester"), cli.new_token("ann7", "approver")
    p = cli.json("request", model_name, str(version), "--to", "production", token=rita)
    cli("approve", str(p["id"]), token=ann)  # 1 of 2
    new = tmp_path / "new-policy.yaml"
    new.write_text(POLICY.replace("approvals: {count: 2,", "approvals: {count: 1,"))

    out = cli("policy", "diff", str(new), token=ann)

    old_digest, new_digest = parse_policy(POLICY).digest, parse_policy(new.read_text()).digest
    assert f"policy {old_digest[:12]} -> {new_digest[:12]}" in out
    assert f"request #{p['id']} {model_name} v{version} -> production: unblocks" in out
    assert "approvals.count" in out and "FAIL: 1 of 2 counted" in out and "ok: 1 of 1" in out
    judged = cli.json("policy", "diff", str(new), token=ann)
    (item,) = [r for r in judged["requests"] if r["id"] == p["id"]]
    assert [r["rule"] for r in item["rules"] if r["changed"]] == ["approvals.count"]
    assert "unblocked" in cli("policy", "diff", str(new), "--all", token=ann)
    denied = cli("policy", "diff", str(new), token=rita, code=1)
    assert "forbidden" in denied and "mlops token create" in denied

    history = cli.json("policy", "history", token=ann)
    assert history["in_force"] == old_digest
    (row,) = [ln for ln in cli("policy", "history", token=ann).splitlines() if "startup" in ln]
    assert row.split()[:2] == ["*", old_digest[:12]]
    assert cli("policy", "history", "--show", old_digest[:12], token=ann) == POLICY
    refused = cli("policy", "reload", token=ann, code=1)
    assert "forbidden" in refused
    cli("cancel", str(p["id"]), token=rita)


def test_status_shows_the_soak_and_the_expiring_approvals(capsys) -> None:
    from mlops.cli._output import show_promotion
    from mlops.client import Promotion

    p = Promotion.from_dict(
        {
            "id": 4,
            "model": "churn",
            "version": 3,
            "target": "production",
            "evidence_digest": "ab" * 32,
            "requester": "rita",
            "state": "pending",
            "quorum": {"have": 1, "need": 2},
            "blocked_by": ["soak: held staging for 1h of 1d: 23h left"],
            "soak": {"held": "staging", "until": "2026-11-27T12:00:00+00:00", "done": False},
            "expiring": [
                {"user": "ann", "expires_at": "2026-11-26T13:00:00+00:00", "left_seconds": 600}
            ],
        }
    )

    show_promotion(p, as_json=False)

    out = capsys.readouterr().out
    assert "blocked: soak: held staging for 1h of 1d: 23h left" in out
    assert "soak on staging ends 2026-11-27T12:00:00+00:00" in out
    assert "expiring: ann's approval stops counting at 2026-11-26T13:00:00+00:00 (10 min" in out
    assert "  expiring: ann's approval stops counting at 2026-11-26T13:00:00+00:00" in str(p)
