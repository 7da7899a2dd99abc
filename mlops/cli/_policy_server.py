"""The policy as the registry server holds it: history, a dry-run of a new file, reload.

Example:
    $ mlops policy diff new-policy.yaml
    $ mlops policy history
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mlops.cli._base import Json, Token, Url, client, handles_errors
from mlops.cli._output import console, print_json, table
from mlops.cli._policy import policy_app
from mlops.errors import PolicyError

_CHANGE = {"blocks": "[red]blocks[/]", "unblocks": "[green]unblocks[/]", "same": "same"}


def _result(value: dict[str, Any] | None) -> str:
    if value is None:
        return "-"
    return f"{'ok' if value['passed'] else 'FAIL'}: {value['reason']}"


def _show_item(title: str, item: dict[str, Any], *, all_rules: bool) -> None:
    out = console()
    if item.get("error"):
        out.print(f"[bold]{title}[/]: [red]not judged: {item['error']}[/]")
        return
    out.print(f"[bold]{title}[/]: {_CHANGE.get(item['change'], item['change'])}")
    rows = [
        (r["rule"], _result(r["old"]), _result(r["new"]))
        for r in item["rules"]
        if all_rules or r["changed"]
    ]
    if rows:
        out.print(table("rules", ["rule", "now", "new"], rows, wrap=["now", "new"]))


@policy_app.command("diff")
@handles_errors
def diff(
    new: Annotated[Path, typer.Argument(help="The new policy file, before it is deployed.")],
    all_rules: Annotated[
        bool, typer.Option("--all", help="Show every rule, not only those that change.")
    ] = False,
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Which pending requests NEW would block or unblock, which protected holders would fail.

    The server judges each pending request and each holder of a protected alias under the
    policy in force and under NEW, rule by rule; nothing changes.
    """
    try:
        source = new.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"Cannot read {str(new)!r}: {exc.strerror}.") from exc
    out = client(url, token).policy_dry_run(source)
    if as_json:
        print_json(out)
        return
    console().print(f"policy {out['old_digest'][:12]} -> {out['new_digest'][:12]}")
    for item in out["requests"]:
        what = f"request #{item['id']} {item['model']} v{item['version']} -> {item['target']}"
        _show_item(what, item, all_rules=all_rules)
    for item in out["holders"]:
        what = f"holder {item['model']}@{item['alias']} v{item['version']}"
        _show_item(what, item, all_rules=all_rules)
    s = out["summary"]
    console().print(
        f"{s['blocks']} request(s) blocked, {s['unblocks']} unblocked, "
        f"{s['holders_failing']} holder(s) would no longer pass"
    )


@policy_app.command("history")
@handles_errors
def history(
    show: Annotated[
        str | None, typer.Option("--show", metavar="DIGEST", help="Print one kept policy's YAML.")
    ] = None,
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """The policies the server ran under, newest first (* marks the one in force)."""
    registry = client(url, token)
    if show is not None:
        kept = registry.policy(show)
        if as_json:
            print_json(kept)
        else:
            typer.echo(kept["source"], nl=False)
        return
    data = registry.policy_history()
    if as_json:
        print_json(data)
        return
    rows = [
        ("*" if i["in_force"] else "", i["digest"][:12], i["loaded_at"], i["loaded_by"])
        for i in data["items"]
    ]
    console().print(table("policies", ["", "digest", "loaded at", "by"], rows))
    if data.get("file_error"):
        console(stderr=True).print(f"[red]the policy file is refused: {data['file_error']}[/]")


@policy_app.command("reload")
@handles_errors
def reload(url: Url = None, token: Token = None, as_json: Json = False) -> None:
    """Ask the server to read its policy file now (admin); an invalid file is refused."""
    out = client(url, token).reload_policy()
    if as_json:
        print_json(out)
    elif out["changed"]:
        console().print(f"policy {out['digest'][:12]} in force (was {out['previous'][:12]})")
    else:
        console().print(f"policy {out['digest'][:12]} in force, unchanged")
