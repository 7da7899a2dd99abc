"""The review flow over HTTP: requests, decisions, aliases and the audit log.

Example:
    $ mlops request churn 3 --to production
    $ mlops approve 1 -m "metrics look good"
    $ mlops list --state pending
"""

from __future__ import annotations

import difflib
from collections import deque
from collections.abc import Iterable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlops.cli._base import Json, Token, Url, app, audit_app, client, handles_errors
from mlops.cli._output import console, print_json, show_holder, show_promotion, table, what
from mlops.client import STATES
from mlops.errors import NotFoundError

if TYPE_CHECKING:
    from mlops.client import RegistryClient

StateChoice = Enum("StateChoice", {s: s for s in ("all", *STATES)}, type=str)  # type: ignore[misc]

Id = Annotated[str, typer.Argument(metavar="ID", help="Promotion request id (`mlops list`).")]
Model = Annotated[str, typer.Argument(help="Registered model name.")]
Alias = Annotated[str, typer.Argument(metavar="ALIAS", help="Alias, e.g. production.")]


# --- promotion requests -------------------------------------------------------------------
@app.command()
@handles_errors
def request(
    model: Annotated[str | None, typer.Argument(help="Registered model name.")] = None,
    version: Annotated[int | None, typer.Argument(help="Model version.")] = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="Target alias, e.g. production (default with --from-exp: "
            "the experiment's promotion.target).",
        ),
    ] = None,
    from_exp: Annotated[
        str | None,
        typer.Option(
            "--from-exp",
            metavar="EXP",
            help="Request the model version a DVC experiment trained (`dvc exp show`).",
        ),
    ] = None,
    digest: Annotated[
        str | None, typer.Option(help="Evidence digest (default: the version's tag).")
    ] = None,
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Request a promotion, bound to the evidence recorded on the version.

    Experiments (`dvc exp run`) never submit by themselves: pick one and request it with
    `mlops request --from-exp NAME`.
    """  # fmt: skip
    from mlops.promotion import recorded_digest

    if from_exp is not None:
        from mlops.cli._experiments import experiment_request

        if model is not None or version is not None:
            raise typer.BadParameter("Give MODEL VERSION or --from-exp, not both.")
        found = experiment_request(from_exp)
        model, version = found.model, found.version
        to, digest = to or found.target, digest or found.digest
    if model is None or version is None or to is None:
        raise typer.BadParameter(
            "Give MODEL VERSION --to ALIAS, or --from-exp NAME.", param_hint="MODEL VERSION"
        )
    digest = digest or recorded_digest(model, version)
    promotion = client(url, token).request_promotion(model, version, to, digest)
    show_promotion(promotion, as_json=as_json)


@app.command()
@handles_errors
def approve(
    promotion_id: Id,
    message: Annotated[str, typer.Option("--message", "-m", help="Comment.")] = "",
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Approve a promotion request."""
    show_promotion(client(url, token).approve(promotion_id, comment=message), as_json=as_json)


@app.command()
@handles_errors
def reject(
    promotion_id: Id,
    message: Annotated[str, typer.Option("--message", "-m", help="Why (required).")],
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Reject a promotion request, saying why."""
    show_promotion(client(url, token).reject(promotion_id, comment=message), as_json=as_json)


@app.command()
@handles_errors
def cancel(promotion_id: Id, url: Url = None, token: Token = None, as_json: Json = False) -> None:
    """Cancel your own pending request."""
    show_promotion(client(url, token).cancel(promotion_id), as_json=as_json)


@app.command()
@handles_errors
def status(promotion_id: Id, url: Url = None, token: Token = None, as_json: Json = False) -> None:
    """Show a request: state, approvals, checks and what blocks it."""
    show_promotion(client(url, token).get_promotion(promotion_id), as_json=as_json)


@app.command("list")
@handles_errors
def list_(
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    target: Annotated[str | None, typer.Option(help="Only this target alias.")] = None,
    state: Annotated[
        StateChoice, typer.Option(help="Only requests in this state.", case_sensitive=False)
    ] = StateChoice.all,  # type: ignore[attr-defined]
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """List promotion requests, newest first."""
    registry = client(url, token)
    wanted = None if state.value == "all" else state.value
    items = list(registry.list_promotions(model=model, target=target, state=wanted))
    if not items and model is not None:
        _require_known_model(registry, model)
    if as_json:
        print_json([p.to_dict() for p in items])
        return
    rows = [
        (p.id, p.model, p.version, p.target, p.state, str(p.quorum), p.requester, p.created_at)
        for p in items
    ]
    headers = ["id", "model", "version", "target", "state", "approvals", "requester", "created"]
    console().print(
        table("promotions", headers, rows, wrap=["created"], optional=["created", "approvals"])
    )


def _require_known_model(registry: RegistryClient, model: str) -> set[str]:
    """The targets ``model`` has requests for; :class:`NotFoundError` if it has none."""
    targets: dict[str, set[str]] = {}
    for p in registry.list_promotions(page_size=200):
        targets.setdefault(p.model, set()).add(p.target)
    if model not in targets:
        raise NotFoundError(
            f"The registry server has no promotion request for model {model!r}"
            f"{_did_you_mean(model, targets)}.",
            model=model,
        )
    return targets[model]


def _did_you_mean(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(known), n=3)
    return f" (did you mean {', '.join(map(repr, close))}?)" if close else ""


# --- aliases and audit ----------------------------------------------------------------------
@app.command()
@handles_errors
def alias(model: Model, name: Alias, url: Url = None, token: Token = None, as_json: Json = False):
    """Show which version holds an alias now."""
    show_holder(client(url, token).alias(model, name), as_json=as_json)


@app.command()
@handles_errors
def history(
    model: Model, name: Alias, url: Url = None, token: Token = None, as_json: Json = False
) -> None:
    """Show every version that held an alias, from when to when."""
    registry = client(url, token)
    moves = registry.history(model, name)
    if not moves:
        targets = _require_known_model(registry, model)
        if name not in targets:
            raise NotFoundError(
                f"No version of {model!r} has held or been requested for alias {name!r}"
                f"{_did_you_mean(name, targets)}.",
                model=model,
                alias=name,
            )
    if as_json:
        print_json([m.to_dict() for m in moves])
        return
    rows = [(m.version, m.action, m.start, m.end or "now", m.request_id) for m in moves]
    headers = ["version", "action", "from", "to", "request"]
    console().print(table(f"{model}@{name}", headers, rows, wrap=["from", "to"]))


@app.command()
@handles_errors
def rollback(
    model: Model,
    name: Alias,
    message: Annotated[str, typer.Option("--message", "-m", help="Why.")] = "",
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Move an alias back to the version that held it before."""
    show_holder(client(url, token).rollback(model, name, comment=message), as_json=as_json)


@audit_app.command("verify")
@handles_errors
def audit_verify(
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            help="A signed checkpoint kept outside the server (`mlops audit checkpoint`, "
            "or the audit_checkpoint webhook's body) to check the chain against.",
        ),
    ] = None,
    incremental: Annotated[
        bool,
        typer.Option(help="Walk only the events after the newest valid signed checkpoint."),
    ] = False,
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Recompute the audit hash chain and check it against a signed checkpoint; exit 1 if
    it is broken, shortened or rewritten."""
    kept = _checkpoint_envelope(checkpoint) if checkpoint is not None else None
    check = client(url, token).verify_audit(incremental=incremental, checkpoint=kept)
    if as_json:
        print_json(check.to_dict())
    else:
        console().print(f"[{'green' if check.ok else 'bold red'}]{check}[/]")
    if not check.ok:
        raise typer.Exit(1)


def _checkpoint_envelope(path: Path) -> dict:
    """The envelope in a kept checkpoint file: the envelope itself, the body of
    ``GET /v1/audit/checkpoint``, or an ``audit_checkpoint`` webhook delivery."""
    import json

    from mlops.errors import ConfigError

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Cannot read the checkpoint file {str(path)!r}: {exc}") from exc
    for candidate in (data, data.get("envelope"), (data.get("payload") or {}).get("envelope")):
        if isinstance(candidate, dict) and "payloadType" in candidate:
            return candidate
    raise ConfigError(
        f"{str(path)!r} holds no signed checkpoint (a DSSE envelope with payloadType).",
        hint="Save one with `mlops audit checkpoint --output FILE`.",
    )


@audit_app.command("checkpoint")
@handles_errors
def audit_checkpoint(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write it to this file.")
    ] = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """Print (or save) the newest signed checkpoint of the audit chain, to keep elsewhere."""
    import json

    body = client(url, token).audit_checkpoint()
    text = json.dumps(body, indent=2, sort_keys=True)
    if output is None:
        print(text)
        return
    output.write_text(text + "\n")
    console(stderr=True).print(f"checkpoint at {body['count']} events written to {output}")


_PAGE = 1000  # the server's largest page


@audit_app.command("list")
@handles_errors
def audit_list(
    after: Annotated[
        int | None, typer.Option(help="Events after this id, oldest first (default: the newest).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many events.")] = 50,
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Show the newest audit events (or those after --after), with what each was about."""
    registry = client(url, token)
    if after is not None:
        events = list(registry.audit(after=after, limit=min(limit, _PAGE)))
    else:
        newest: deque = deque(maxlen=limit)
        cursor = 0
        while page := registry.audit(after=cursor, limit=_PAGE):
            newest.extend(page)
            cursor = page[-1].id
            if len(page) < _PAGE:
                break
        events = list(newest)
    if as_json:
        print_json([e.to_dict() for e in events])
        return
    rows = [(e.id, e.at, e.actor, e.action, what(e.data.get("payload") or {})) for e in events]
    headers = ["id", "at", "actor", "action", "what"]
    console().print(table("audit", headers, rows, wrap=["at", "what"]))
