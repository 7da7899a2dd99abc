"""How the CLI prints: Rich tables that keep names whole, promotions, audit events, errors.

Example:
    >>> what({"model": "iris", "version": 2, "target": "production", "request_id": 7})
    'iris v2 -> production (request #7)'
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table

    from mlops.client import AliasHolder, Promotion

__all__ = ["console", "print_json", "show_holder", "show_promotion", "table", "what"]


def console(*, stderr: bool = False) -> Console:
    """A Rich console that prints text as given (no highlighting, no hard wrapping)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    """Stable, indented JSON on stdout."""
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def table(
    title: str,
    headers: Sequence[str],
    rows: Iterable[Iterable[Any]],
    *,
    wrap: Sequence[str] = (),
    optional: Sequence[str] = (),
    width: int | None = None,
) -> RenderableType:
    """A table whose names are never cut, fitted to the terminal.

    Rich shrinks every column of a wide table and ends cut words with "…", which turns
    ``iris-classifier`` into ``iris-cl…``. Names, ids and states are what a reader copies
    into the next command, so they keep their width; free text (``wrap``) folds onto more
    lines. When that still does not fit ``width`` (the terminal's), the ``optional``
    columns are left out, in order; failing that, each row is printed as ``key: value``
    lines.

    Example:
        >>> out = table("t", ["id", "comment"], [(1, "fine")], wrap=["comment"], width=80)
        >>> out.row_count
        1
    """
    cells = [["-" if v is None else str(v) for v in row] for row in rows]
    width = width or console().width
    shown = list(headers)
    for header in [None, *optional]:
        if header is not None and header in shown:
            shown.remove(header)
        if _needed(headers, cells, shown, wrap) <= width:
            return _grid(title, headers, cells, shown, wrap)
    return _records(title, headers, cells)


def _widths(headers: Sequence[str], cells: list[list[str]], shown: Sequence[str]) -> list[int]:
    return [max([len(h), *(len(row[headers.index(h)]) for row in cells)]) for h in shown]


def _needed(
    headers: Sequence[str], cells: list[list[str]], shown: Sequence[str], wrap: Sequence[str]
) -> int:
    widths = _widths(headers, cells, shown)
    # a folding column needs a little room; columns are 3 characters apart (padding + rule)
    folded = (min(w, 12) if h in wrap else w for h, w in zip(shown, widths, strict=True))
    return sum(folded) + 3 * len(shown)


def _grid(
    title: str,
    headers: Sequence[str],
    cells: list[list[str]],
    shown: Sequence[str],
    wrap: Sequence[str],
) -> Table:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    out = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for header, width in zip(shown, _widths(headers, cells, shown), strict=True):
        if header in wrap:
            out.add_column(header, overflow="fold")
        else:
            out.add_column(header, no_wrap=True, min_width=width)
    for row in cells:
        out.add_row(*(escape(row[headers.index(h)]) for h in shown))
    return out


def _records(title: str, headers: Sequence[str], cells: list[list[str]]) -> RenderableType:
    from rich.markup import escape
    from rich.text import Text

    pad = max(len(h) for h in headers)
    lines = [f"[bold]{escape(title)}[/]"]
    for row in cells:
        lines.append("")
        lines += [f"{h.rjust(pad)}: {escape(v)}" for h, v in zip(headers, row, strict=True)]
    return Text.from_markup("\n".join(lines))


def show_promotion(p: Promotion, *, as_json: bool) -> None:
    """A promotion request: state, quorum, what blocks it, checks and decisions."""
    if as_json:
        print_json(p.to_dict())
        return
    from rich.markup import escape

    out = console()
    colour = {"promoted": "green", "approved": "green", "pending": "yellow"}.get(p.state, "red")
    out.print(
        f"[bold]promotion #{p.id}[/]: {escape(p.model)} v{p.version} -> {escape(p.target)} "
        f"[{colour}]{p.state}[/]  approvals {p.quorum}  requester {escape(p.requester)}"
    )
    out.print(f"evidence {p.evidence_digest}")
    for reason in p.blocked_by if not p.final else ():
        out.print(f"[yellow]blocked: {escape(reason)}[/]")
    if p.soak and p.soak.get("until") and not p.final:
        out.print(f"soak on {escape(p.soak['held'])} ends {p.soak['until']}")
    for w in p.expiring:
        left = int(w["left_seconds"] // 60)
        out.print(
            f"[yellow]expiring: {escape(w['user'])}'s approval stops counting at "
            f"{w['expires_at']} ({left} min left)[/]"
        )
    if p.rules:
        rows = [(r.rule, "ok" if r.passed else "FAIL", r.reason) for r in p.rules]
        out.print(table("checks", ["rule", "", "reason"], rows, wrap=["reason"]))
    _show_verification(out, p.verification)
    if p.approvals:
        rows = [
            (a.user, a.decision, a.at, "yes" if a.counts else f"no: {a.why_not}", a.comment)
            for a in p.approvals
        ]
        headers = ["user", "decision", "at", "counts", "comment"]
        out.print(table("decisions", headers, rows, wrap=["at", "counts", "comment"]))


def _show_verification(out: Any, found: Mapping[str, Any] | None) -> None:
    """The server's re-derivation of the evidence: outcome, why, each differing value."""
    if not found:
        return
    from rich.markup import escape

    steps = ", ".join(found.get("steps") or ())
    state = found.get("state")
    colour = {"verified": "green", "running": "yellow"}.get(state, "red")
    out.print(f"verification ({escape(steps)}): [{colour}]{escape(str(state))}[/]")
    if state not in ("running", "verified") and found.get("reason"):
        out.print(f"[red]{escape(str(found.get('code')))}: {escape(str(found['reason']))}[/]")
    diffs = found.get("differences") or ()
    if diffs:
        rows = [(d["what"], repr(d["bundle"]), repr(d["recomputed"])) for d in diffs]
        out.print(table("differences", ["value", "bundle", "recomputed"], rows, wrap=["value"]))


def show_holder(h: AliasHolder, *, as_json: bool) -> None:
    """Which version holds an alias (text or JSON)."""
    if as_json:
        print_json(h.to_dict())
    else:
        from rich.markup import escape

        console().print(escape(str(h)))


def what(payload: Mapping[str, Any]) -> str:
    """A one-line summary of an audit event's payload: what it was about.

    Example:
        >>> what({"model": "iris", "alias": "production", "from_version": 3, "to_version": 2})
        'iris@production v3 -> v2'
        >>> what({"user": "olga", "roles": ["approver"], "token_id": "t1"})
        'token t1 for olga [approver]'
        >>> what({"digest": "4f0d1c2a77e3aa", "previous": "9ba838b24921ff", "path": "p.yaml"})
        'policy 4f0d1c2a77e3 in force (was 9ba838b24921)'
    """
    p = dict(payload)
    model = p.get("model")
    if model and "to_version" in p:
        text = f"{model}@{p.get('alias')} v{p.get('from_version')} -> v{p['to_version']}"
    elif model and "restored_version" in p:
        text = f"{model}@{p.get('alias')} v{p.get('found_version')} -> v{p['restored_version']}"
    elif model:
        to = p.get("target") or p.get("alias")
        text = f"{model} v{p.get('version')}" + (f" -> {to}" if to else "")
        if p.get("request_id") is not None:
            text += f" (request #{p['request_id']})"
    elif "digest" in p and "previous" in p:  # policy_loaded
        was = f" (was {p['previous'][:12]})" if p.get("previous") else ""
        text = f"policy {p['digest'][:12]} in force{was}"
    elif "in_force" in p and "error" in p:  # policy_rejected
        text = f"policy file refused, {p['in_force'][:12]} stays in force: {p['error']}"
    elif "user" in p:
        roles = ", ".join(p.get("roles") or ())
        text = f"token {p.get('token_id')} for {p['user']}" + (f" [{roles}]" if roles else "")
    else:
        shown = {k: v for k, v in p.items() if not isinstance(v, dict | list)}
        text = " ".join(f"{k}={v}" for k, v in sorted(shown.items()))
    comment = p.get("comment")
    return f"{text}: {comment}" if comment else text
