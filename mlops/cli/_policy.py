"""``mlops policy show MODEL TARGET``: the rules one model gets, and where each was written.

Example:
    $ mlops policy show diabetes-ridge production
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from mlops.errors import MlopsError

policy_app = typer.Typer(help="Read the promotion policy.", no_args_is_help=True)


@policy_app.command("show")
def show(
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    target: Annotated[str, typer.Argument(help="Target alias, e.g. production.")],
    policy: Annotated[
        str | None,
        typer.Option(help="Policy file (default: MLOPS_POLICY_PATH or promotion-policy.yaml)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Print MODEL's resolved rules for TARGET: defaults, then its overrides by name or glob."""
    from mlops.policy import describe, load_policy

    try:
        rows = describe(load_policy(policy), model, target)
    except MlopsError as err:
        typer.echo(f"{err.code}: {err.message}", err=True)
        if err.hint:
            typer.echo(f"hint: {err.hint}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    typer.echo(f"{model} -> {target}")
    width = max(len(row["key"]) for row in rows)
    for row in rows:
        value = json.dumps(_compact(row["value"]))
        typer.echo(f"  {row['key']:<{width}}  {value}  <- {row['source']}")


def _compact(value: object) -> object:
    """Leave unset (None) options out of nested rules, e.g. a metric's unused changes."""
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items() if v is not None}
    return value
