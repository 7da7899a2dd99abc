"""``mlops lineage affected``: what used a dataset, what is in production because of it.

Example:
    $ mlops lineage affected data/train.csv@v1.2
    $ mlops lineage affected --md5 5ba2c4a1b5c4cd5e3a3f54ea2bb1b4d1 --json
    $ mlops lineage affected data/train.csv@v1.2 --rollback -m "labels were shifted"
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from mlops.cli._base import Json, Token, Url, app, client, handles_errors
from mlops.cli._output import console, print_json, table

if TYPE_CHECKING:
    from mlops.lineage import BlastRadius

lineage_app = typer.Typer(
    help="Which model versions used a dataset (the reverse of a version's lineage).",
    no_args_is_help=True,
)
app.add_typer(lineage_app, name="lineage")


@lineage_app.command()
@handles_errors
def affected(
    ref: Annotated[
        str | None,
        typer.Argument(
            metavar="PATH@REV",
            help="A DVC-tracked path at a git rev (PATH alone: HEAD), resolved through DVC.",
        ),
    ] = None,
    md5: Annotated[str | None, typer.Option("--md5", help="The data's DVC md5 instead.")] = None,
    model: Annotated[str, typer.Option("--model", help="Only models matching this glob.")] = "*",
    rollback: Annotated[
        bool,
        typer.Option(
            "--rollback",
            help="Roll every affected protected alias back to its plan's target through the "
            "server (the rollback route and its roles; one call per journal step).",
        ),
    ] = False,
    message: Annotated[str, typer.Option("--message", "-m", help="Rollback comment.")] = "",
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """List the versions trained or evaluated on the data, the protected aliases holding
    them now, and a rollback plan for each."""
    from mlops.lineage import affected as blast_radius
    from mlops.lineage import roll_back

    if (ref is None) == (md5 is None):
        raise typer.BadParameter("Give PATH@REV or --md5 MD5 (one of them).", param_hint="PATH@REV")
    registry = client(url, token)
    radius = blast_radius(ref, md5=md5, model=model, registry=registry)
    moved = roll_back(radius, registry=registry, comment=message) if rollback else None
    if as_json:
        print_json({**radius.to_dict(), **({"rolled_back": moved} if rollback else {})})
        return
    _show(radius, moved)


def _show(radius: BlastRadius, moved: list[dict[str, Any]] | None) -> None:
    out = console()
    name = f"{radius.path}@{radius.rev}" if radius.path else "md5"
    out.print(f"Data {name}: md5 {radius.md5}")
    if not radius.versions:
        out.print("No registered model version trained or was evaluated on it.")
        return
    rows = [(v.model, v.version, ", ".join(v.uses), ", ".join(v.aliases)) for v in radius.versions]
    out.print(table("Versions that used it", ["model", "version", "uses", "aliases"], rows))
    if not radius.holders:
        out.print("No protected alias holds any of them.")
    else:
        plan = [
            (h.model, h.alias, h.version, "-" if h.target is None else h.target, h.steps, h.reason)
            for h in radius.holders
        ]
        headers = ["model", "alias", "holder", "roll back to", "steps", "why"]
        out.print(table("Protected aliases held now", headers, plan, wrap=["why"]))
    for m in moved or ():
        out.print(f"rolled back {m['model']}@{m['alias']}: v{m['from']} -> v{m['to']}")
    stuck = [h for h in radius.holders if h.target is None]
    if moved is not None and stuck:
        names = ", ".join(f"{h.model}@{h.alias}" for h in stuck)
        out.print(
            f"Not moved (no clean earlier holder): {names}; promote a clean version with "
            "`mlops request MODEL VERSION --to ALIAS`."
        )
