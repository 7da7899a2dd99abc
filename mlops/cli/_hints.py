"""What to do next, said in the command line's own words.

The library's errors carry a Python hint (``mlops.registry.versions(name)``) and the
registry server's a REST one (``GET /v1/promotions``); both stay as they are for their
callers. The CLI prints its own hint instead, looked up by the error's stable ``code``:
first for the command that failed, then for the code alone, then a generic one. Every hint
names an ``mlops`` command.

Example:
    >>> cli_hint("not_found", command="status")
    'List the promotion requests and their ids with `mlops list --state all`.'
"""

from __future__ import annotations

__all__ = ["BY_CODE", "BY_COMMAND", "FALLBACK", "cli_hint"]

_REQUEST_IDS = "List the promotion requests and their ids with `mlops list --state all`."

#: The hint for an error code, whatever the command.
BY_CODE: dict[str, str] = {
    "mlops_error": "Rerun with `mlops --verbose COMMAND` for details; `mlops --help` lists them.",
    "config_error": "Check the MLOPS_* variables and the options (`mlops env`, `mlops COMMAND "
    "--help`).",
    "missing_dependency": "Install the missing package, then retry; `mlops --help` lists what "
    "works without it.",
    "not_found": "Check the name or id: `mlops list --state all` lists requests, "
    "`mlops token list` tokens.",
    "model_version_not_found": "List the registered versions with `mlops versions MODEL`.",
    "alias_not_found": "See which versions held it with `mlops history MODEL ALIAS`, or request "
    "one with `mlops request MODEL VERSION --to ALIAS`.",
    "data_error": "Check the dataset is tracked with DVC, then run the pipeline with `dvc repro` "
    '(`eval "$(mlops env)"` first).',
    "not_in_dvc_repo": "Run it inside the project (a git + DVC repository; `dvc init` once), "
    "or set MLOPS_DVC_ROOT; `mlops env` shows it.",
    "data_not_tracked": "Track it with `dvc add PATH` (or as a stage output) and commit; "
    "`mlops env` shows the DVC root.",
    "revision_not_found": "Use a commit, branch or tag that exists (`git log --oneline`); "
    "`mlops env` shows the project root.",
    "data_not_in_cache": "Produce the data in this repository first (`dvc repro`, or `dvc pull` "
    "it), then `dvc push`; `dvc status -c` shows what the remote lacks.",
    "data_not_in_remote": "Push the data to the DVC remote with `dvc push`, then request again "
    "with `mlops request MODEL VERSION --to ALIAS`.",
    "stale_data": "Run `dvc repro` and commit before requesting; `mlops env` shows the stores.",
    "data_validation_failed": "Read the failed expectations; fix the data or the suite and run "
    "`dvc repro` again.",
    "tracking_error": "Check the MLflow store that `mlops env` prints (MLOPS_TRACKING_URI).",
    "registry_error": "Check the MLflow registry that `mlops env` prints, and the model name "
    "with `mlops versions MODEL`.",
    "registry_unavailable": "Start the registry server with `mlops server`, or pass its URL "
    "with `--url` (or MLOPS_REGISTRY_URL).",
    "evaluation_error": "Check the evaluation data and target column in params.yaml, then "
    "`dvc repro`.",
    "packaging_error": "Rerun with `mlops --verbose` to see BentoML's output; check the "
    "model's requirements.",
    "evidence_error": "Record the evidence again with `dvc repro` (the request stage), then "
    "`mlops request MODEL VERSION --to ALIAS`.",
    "evidence_mismatch": "The evidence changed since it was recorded: run `dvc repro`, then "
    "`mlops request MODEL VERSION --to ALIAS` again.",
    "evidence_unverified": "The server re-ran the checks and got other values (`mlops status "
    "ID` names them): run `dvc repro`, then `mlops request MODEL VERSION --to ALIAS` again.",
    "evidence_unverifiable": "The server could not fetch the data or model the evidence names "
    "(`mlops status ID` says which): `dvc push`, then `mlops request MODEL VERSION --to ALIAS`.",
    "evidence_verifying": "The server is still re-deriving the evidence: wait until "
    "`mlops status ID` shows it pending, then approve.",
    "policy_error": "Fix promotion-policy.yaml (the message names the key); the server "
    "reloads it when the file changes (`mlops policy history` shows what is in force).",
    "policy_violation": "See which rule failed with `mlops status ID`; fix the evidence and "
    "request again with `mlops request`.",
    "gate_error": "See the request's state and what blocks it with `mlops status ID`.",
    "freeze_window": "Wait for the freeze window to end (`mlops status ID` shows until when), "
    "or ask an admin to change the policy.",
    "soak_pending": "The version is still soaking on the ladder's previous alias: "
    "`mlops status ID` shows the time left; approve after it.",
    "conflict": "The request changed meanwhile: look again with `mlops status ID`.",
    "unauthenticated": "Pass a valid token with --token or MLOPS_TOKEN; an admin creates one "
    "with `mlops token create USER --role ROLE`.",
    "forbidden": "Ask an admin for a token with the needed role "
    "(`mlops token create USER --role ROLE`); `mlops me` shows yours.",
    "invalid_request": "Check the arguments with `mlops COMMAND --help`.",
    "promotion_timeout": "The request is still open: follow it with `mlops status ID`.",
    "suite_error": "Fix the suite file named in the message, then run `dvc repro`.",
    "suite_not_found": "Check params.yaml validate.suite and the suites/ folder, then `dvc repro`.",
    "quickstart_failed": "Read the output above; rerun `mlops quickstart --workdir DIR` to keep "
    "the workspace.",
    "champion_changed": "The champion moved since the evaluation: run `dvc repro` (or "
    "`mlops.promote`) to evaluate against the new holder, then `mlops request` again.",
    "nothing_to_roll_back": "Nothing approved lies below the holder: see `mlops history MODEL "
    "ALIAS`; to move forward, `mlops request MODEL VERSION --to ALIAS`.",
    "alias_holder_missing": "The recorded holder is gone or changed in MLflow: look with "
    "`mlops history MODEL ALIAS` and `mlops versions MODEL`, then promote a version with "
    "`mlops request`.",
    "model_not_ready": "Log the model again (its run failed); `mlops versions MODEL` shows "
    "what is registered.",
    "untrusted_model_type": "Trust the named type in code (`mlops.log_model(..., trusted=[...])`) "
    "and rerun `dvc repro`.",
    "invalid_dataset_ref": "Name the data as PATH@REV (`mlops lineage affected data/train.csv@v1`) "
    "or by md5 (`mlops lineage affected --md5 MD5`, 32 hex characters from the .dvc file).",
    "dataset_not_recorded": "No run recorded that path at that commit: run `mlops lineage "
    "affected PATH@REV` inside the project, or pass `--md5 MD5`.",
    "verification_failed": "Do not serve it; see the failing link with `mlops verify NAME@ALIAS`.",
    "verify_attestation_missing": "Promote the version through the server (`mlops request "
    "MODEL VERSION --to ALIAS`): it signs every promotion and rollback.",
    "verify_signature": "Check --key is the server's public key (`mlops key create` printed "
    "it); an edited attestation never verifies: `mlops audit verify` next.",
    "verify_alias": "The alias moved outside the server: `mlops history MODEL ALIAS` shows the "
    "approved holder.",
    "verify_model_artifact": "The model files in MLflow changed after approval: do not serve; "
    "`mlops versions MODEL` and `mlops audit list` next.",
    "verify_bento": "The local Bento is not the approved one: rebuild it with `dvc repro` and "
    "request again (`mlops request`), or fetch the approved Bento.",
    "verify_evidence": "The evidence changed after approval: `mlops status ID` and "
    "`mlops audit list` show what was approved.",
    "verify_data": "The data the evidence names is not what MLflow or DVC hold: `dvc status` "
    "and `mlops versions MODEL` next.",
    "verify_approvals": "The recorded approvals do not meet the recorded policy: "
    "`mlops status ID` shows them.",
    "verify_key_invalid": "Pass the server's public key PEM with `mlops verify --key FILE` "
    "(`mlops key create` writes one).",
    "signing_key_missing": "Make a key with `mlops key create FILE`, set "
    "MLOPS_REGISTRY_SIGNING_KEY_FILE=FILE on every worker, then `mlops server`.",
    "signing_key_invalid": "Point MLOPS_REGISTRY_SIGNING_KEY_FILE at a key made by "
    "`mlops key create FILE`, then `mlops server`.",
    "backup_error": "Check the database URL (`mlops server --help`) and the backup path.",
}

#: Hints that depend on the command that failed: ``(command, code) -> hint``.
BY_COMMAND: dict[tuple[str, str], str] = {
    **{
        (command, "not_found"): _REQUEST_IDS
        for command in ("status", "approve", "reject", "cancel")
    },
    ("token_revoke", "not_found"): "List the tokens and their ids with `mlops token list`.",
    ("history", "not_found"): "List the models and targets that have requests with "
    "`mlops list --state all`.",
    ("list", "not_found"): "List every request with `mlops list --state all`.",
    ("alias", "not_found"): "See which versions held it with `mlops history MODEL ALIAS`.",
    ("rollback", "not_found"): "See the alias journal with `mlops history MODEL ALIAS`.",
    ("rollback", "gate_error"): "See the alias journal with `mlops history MODEL ALIAS`.",
    ("request", "gate_error"): "Check the target against promotion-policy.yaml and the "
    "request with `mlops list --model MODEL`.",
    ("request", "forbidden"): "Requests need the requester role: ask an admin for one "
    "(`mlops token create USER --role requester`).",
    ("approve", "forbidden"): "Approvals need a role the policy names: ask an admin "
    "(`mlops token create USER --role approver`); `mlops me` shows yours.",
    ("reject", "forbidden"): "Rejections need a role the policy names: ask an admin "
    "(`mlops token create USER --role approver`); `mlops me` shows yours.",
    ("server", "config_error"): "Pick another port with `mlops server --port PORT`, or stop "
    "the process that holds it.",
    ("token_create", "config_error"): "Check --database-url (see `mlops token create --help`) "
    "and that the database is reachable.",
    ("token_create", "gate_error"): "Pass one or more roles: `mlops token create USER --role "
    "requester|approver|admin`.",
    ("request", "not_found"): "List the experiments with `dvc exp show`, then "
    "`mlops request --from-exp NAME`; `mlops versions MODEL` lists versions.",
    ("request", "config_error"): "Pick an experiment that passed the pre-check (`dvc exp show`), "
    "or request a version with `mlops request MODEL VERSION --to ALIAS`.",
    ("affected", "revision_not_found"): "Use a commit, branch or tag that exists (`git log "
    "--oneline -- PATH`), e.g. `mlops lineage affected PATH@HEAD~1`.",
    ("affected", "data_not_tracked"): "Name a DVC-tracked path at that rev (`dvc list . -R "
    "--dvc-only --rev REV`), then `mlops lineage affected PATH@REV`.",
    ("affected", "nothing_to_roll_back"): "The journal changed since the plan: ask again "
    "with `mlops lineage affected PATH@REV`, or see `mlops history MODEL ALIAS`.",
    ("affected", "conflict"): "An alias moved meanwhile: ask again with `mlops lineage "
    "affected PATH@REV` and roll back the new plan.",
    ("serve", "not_found"): "See which versions held the alias with `mlops history MODEL ALIAS`.",
    ("serve", "packaging_error"): "Build it again with `dvc repro` (the package stage); "
    "`mlops serve --help` explains which Bento is served.",
}

FALLBACK = "Run `mlops COMMAND --help` for the command's options."


def cli_hint(code: str, *, command: str | None = None) -> str:
    """The hint the CLI prints for an error ``code`` raised by ``command``.

    Example:
        >>> cli_hint("registry_unavailable").startswith("Start the registry server")
        True
    """
    if command is not None and (command, code) in BY_COMMAND:
        return BY_COMMAND[(command, code)]
    return BY_CODE.get(code, FALLBACK)
