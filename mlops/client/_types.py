"""Wire entities of the registry client: frozen dataclasses built from the server's JSON.

Each has ``from_dict`` (the server's JSON), ``to_dict`` (the same wire form back),
readable ``str`` and ``_repr_html_`` for notebooks. Import them from :mod:`mlops.client`.

Example:
    >>> from mlops.client import Quorum
    >>> str(Quorum(have=1, need=2))
    '1/2'
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

__all__ = [
    "FINAL_STATES",
    "AliasHolder",
    "AliasMove",
    "Approval",
    "AuditCheck",
    "AuditEvent",
    "Identity",
    "Promotion",
    "Quorum",
    "RuleResult",
    "State",
    "Token",
]

#: every state of a promotion request, in the order of its life; the last seven are final
#: (``verifying``: the server re-derives the evidence before approvals count). The one
#: definition: ``STATES`` lists it and the server's API schema uses it.
State = Literal[
    "verifying",
    "pending",
    "approved",
    "promoted",
    "rejected",
    "cancelled",
    "expired",
    "superseded",
    "stale",
    "voided",
]
STATES: tuple[str, ...] = get_args(State)
FINAL_STATES = frozenset(STATES[3:])


def _verification_lines(found: Mapping[str, Any] | None) -> list[str]:
    """The verifier's outcome as text: its code and reason, one line per differing value."""
    if not found or found.get("state") in (None, "running", "verified", "void"):
        return []
    lines = [f"  {found.get('code')}: {found.get('reason')}"]
    for d in found.get("differences") or ():
        lines.append(
            f"    {d.get('what')}: bundle {d.get('bundle')!r}, recomputed {d.get('recomputed')!r}"
        )
    return lines


def _plain(value: Any) -> Any:
    """Tuples to lists and mappings to dicts, recursively (what ``json.loads`` gives back)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class _Entity:
    """Shared ``to_dict`` / ``_repr_html_`` for the wire entities below."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict in the server's wire form."""
        return _plain(asdict(self))  # type: ignore[call-overload]

    def _repr_html_(self) -> str:
        from mlops._render import html_section, html_table

        rows = [(k, v) for k, v in self.to_dict().items()]
        return html_section(str(self), html_table(["field", "value"], rows))


@dataclass(frozen=True)
class Quorum(_Entity):
    """Approvals that count now (``have``) against the policy's ``need``."""

    have: int
    need: int

    def __str__(self) -> str:
        return f"{self.have}/{self.need}"


@dataclass(frozen=True)
class RuleResult(_Entity):
    """One policy rule as the server judged it."""

    rule: str
    passed: bool
    reason: str = ""

    def __str__(self) -> str:
        return f"[{'ok' if self.passed else 'FAIL'}] {self.rule}: {self.reason}"


@dataclass(frozen=True)
class Approval(_Entity):
    """One decision on a request: who, what, on which evidence digest, and whether it counts."""

    user: str
    decision: str
    comment: str = ""
    digest: str | None = None
    at: str | None = None
    counts: bool = True
    why_not: str | None = None
    #: the policy in force when the decision was taken
    policy_digest: str | None = None

    def __str__(self) -> str:
        counted = "" if self.counts else f" (does not count: {self.why_not})"
        note = f": {self.comment}" if self.comment else ""
        return f"{self.decision} by {self.user} at {self.at}{counted}{note}"


@dataclass(frozen=True)
class Promotion(_Entity):
    """A promotion request as the server sees it.

    Example:
        >>> p = Promotion.from_dict({"id": 1, "model": "churn", "version": 3,
        ...     "target": "production", "evidence_digest": "ab12", "requester": "ann",
        ...     "state": "pending", "quorum": {"have": 0, "need": 2},
        ...     "blocked_by": ["needs 2 approvals, has 0"]})
        >>> p.blocked, str(p).splitlines()[0]
        (True, 'promotion #1: churn v3 -> production [pending]')
    """

    id: int | str
    model: str
    version: int
    target: str
    evidence_digest: str
    requester: str
    state: str
    created_at: str | None = None
    updated_at: str | None = None
    approvals: tuple[Approval, ...] = ()
    verdict_passed: bool | None = None
    rules: tuple[RuleResult, ...] = ()
    quorum: Quorum = field(default_factory=lambda: Quorum(0, 0))
    blocked_by: tuple[str, ...] = ()
    #: the champion the evidence was judged against (model, version, run id), bound at create
    champion: Mapping[str, Any] | None = None
    #: the server's re-derivation of the evidence (``state``, ``code``, ``differences``),
    #: ``None`` when the target's policy asks for none
    verification: Mapping[str, Any] | None = None
    #: a pending request's ladder step: ``{"held", "left_seconds", "until", "done", ...}``
    soak: Mapping[str, Any] | None = None
    #: counted approvals about to pass their ttl: ``{"user", "expires_at", "left_seconds"}``
    expiring: tuple[Mapping[str, Any], ...] = ()
    #: the policy in force when the request was opened
    policy_digest: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Promotion:
        """Build from the server's JSON."""
        verdict = d.get("verdict") or {}
        quorum = d.get("quorum") or {}
        return cls(
            id=d["id"],
            model=d["model"],
            version=int(d["version"]),
            target=d["target"],
            evidence_digest=d["evidence_digest"],
            requester=d.get("requester", ""),
            state=d["state"],
            created_at=d.get("created_at"),
            updated_at=d.get("updated_at"),
            approvals=tuple(
                Approval(**{k: a.get(k) for k in Approval.__dataclass_fields__ if k in a})
                for a in d.get("approvals") or ()
            ),
            verdict_passed=verdict.get("passed"),
            rules=tuple(
                RuleResult(r["rule"], bool(r["passed"]), r.get("reason") or "")
                for r in verdict.get("rules") or ()
            ),
            quorum=Quorum(int(quorum.get("have", 0)), int(quorum.get("need", 0))),
            blocked_by=tuple(d.get("blocked_by") or ()),
            champion=d.get("champion"),
            verification=d.get("verification"),
            soak=d.get("soak"),
            expiring=tuple(d.get("expiring") or ()),
            policy_digest=d.get("policy_digest"),
        )

    @property
    def final(self) -> bool:
        """True once the request can change no more."""
        return self.state in FINAL_STATES

    @property
    def blocked(self) -> bool:
        """True while something (named in ``blocked_by``) stops it from moving on."""
        return bool(self.blocked_by) and not self.final

    def to_dict(self) -> dict[str, Any]:
        """The server's wire form (``verdict`` nested, as the REST API returns it)."""
        d = _plain(asdict(self))
        d["verdict"] = {"passed": d.pop("verdict_passed"), "rules": d.pop("rules")}
        return d

    def __str__(self) -> str:
        lines = [
            f"promotion #{self.id}: {self.model} v{self.version} -> {self.target} [{self.state}]",
            f"  requester {self.requester}, evidence {self.evidence_digest[:12]}, "
            f"approvals {self.quorum}",
        ]
        lines += [f"  blocked: {reason}" for reason in self.blocked_by if not self.final]
        lines += [
            f"  expiring: {w['user']}'s approval stops counting at {w['expires_at']}"
            for w in self.expiring
        ]
        lines += [f"  {r}" for r in self.rules if not r.passed]
        lines += _verification_lines(self.verification)
        lines += [f"  {a}" for a in self.approvals]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from mlops._render import badge, html_section, html_table

        passed = {"promoted": True, "approved": True, "pending": None}.get(self.state, False)
        title = (
            f"{self.model} v{self.version} -> {self.target}: {self.state} "
            f"(request #{self.id}, approvals {self.quorum})"
        )
        who, digest = html.escape(self.requester), html.escape(self.evidence_digest)
        body = f"<p>requester {who}, evidence {digest}</p>"
        if self.blocked:
            items = "".join(f"<li>{html.escape(r)}</li>" for r in self.blocked_by)
            body += f"<p><strong>Why blocked</strong></p><ul>{items}</ul>"
        if self.rules:
            rows = [(r.rule, badge(r.passed, html_out=True), r.reason) for r in self.rules]
            body += html_table(["rule", "", "reason"], rows, caption="Checks", raw_columns=[1])
        if self.approvals:
            rows = [
                (a.user, a.decision, a.at, "yes" if a.counts else f"no: {a.why_not}", a.comment)
                for a in self.approvals
            ]
            headers = ["user", "decision", "at", "counts", "comment"]
            body += html_table(headers, rows, caption="Decisions")
        return html_section(title, body, passed=passed)


@dataclass(frozen=True)
class AliasHolder(_Entity):
    """The version holding an alias now.

    Example:
        >>> str(AliasHolder("churn", "production", 3, "2026-01-01T00:00:00Z", 7))
        'churn@production = v3 since 2026-01-01T00:00:00Z (request 7)'
    """

    model: str
    alias: str
    version: int | None
    since: str | None = None
    request_id: int | str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AliasHolder:
        """Build from the server's JSON."""
        version = d.get("version")
        return cls(
            model=d["model"],
            alias=d["alias"],
            version=None if version is None else int(version),
            since=d.get("since"),
            request_id=d.get("request_id"),
        )

    def __str__(self) -> str:
        return (
            f"{self.model}@{self.alias} = v{self.version} since {self.since} "
            f"(request {self.request_id})"
        )


@dataclass(frozen=True)
class AliasMove(_Entity):
    """One journal entry: ``version`` held the alias from ``start`` to ``end`` (None: now)."""

    version: int | None
    start: str | None
    end: str | None
    request_id: int | str | None
    action: str

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AliasMove:
        """Build from the server's JSON (``from``/``to`` become ``start``/``end``)."""
        version = d.get("version")
        return cls(
            version=None if version is None else int(version),
            start=d.get("from"),
            end=d.get("to"),
            request_id=d.get("request_id"),
            action=d.get("action", ""),
        )

    def to_dict(self) -> dict[str, Any]:
        """The server's wire form, with ``from`` and ``to``."""
        return {
            "version": self.version,
            "from": self.start,
            "to": self.end,
            "request_id": self.request_id,
            "action": self.action,
        }

    def __str__(self) -> str:
        return f"v{self.version} {self.action} {self.start} -> {self.end or 'now'}"


@dataclass(frozen=True)
class AuditEvent(_Entity):
    """One append-only audit event; ``data`` keeps every field the server sent."""

    id: int
    action: str
    actor: str | None
    at: str | None
    data: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AuditEvent:
        """Build from the server's JSON."""
        return cls(
            id=int(d["id"]),
            action=str(d.get("action") or d.get("kind") or ""),
            actor=d.get("actor") or d.get("user"),
            at=d.get("at") or d.get("created_at"),
            data=dict(d),
        )

    def to_dict(self) -> dict[str, Any]:
        """The event exactly as the server sent it."""
        return _plain(self.data)

    def __str__(self) -> str:
        return f"#{self.id} {self.at} {self.actor}: {self.action}"


@dataclass(frozen=True)
class AuditCheck(_Entity):
    """Result of verifying the audit hash chain."""

    ok: bool
    count: int
    first_bad_id: int | None = None
    reason: str | None = None
    #: the signed checkpoint (count, head_id, head_hash, at) the chain was checked against
    checkpoint: dict[str, Any] | None = None
    mode: str = "full"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AuditCheck:
        """Build from the server's JSON."""
        return cls(
            bool(d["ok"]),
            int(d["count"]),
            d.get("first_bad_id"),
            d.get("reason"),
            d.get("checkpoint"),
            d.get("mode", "full"),
        )

    def __str__(self) -> str:
        signed = (
            f"; signed checkpoint at {self.checkpoint['count']} events"
            if self.checkpoint
            else "; no signed checkpoint"
        )
        if self.ok:
            return f"audit chain ok ({self.count} events{signed}, {self.mode} walk)"
        where = f" at event {self.first_bad_id}" if self.first_bad_id is not None else ""
        return f"audit chain BROKEN{where}: {self.reason}"


@dataclass(frozen=True)
class Token(_Entity):
    """An API token; ``token`` (the secret) is only set right after creation."""

    id: int | str
    user: str
    roles: tuple[str, ...]
    token: str | None = None
    created_at: str | None = None
    revoked: bool = False

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Token:
        """Build from the server's JSON."""
        return cls(
            id=d["id"],
            user=d["user"],
            roles=tuple(d.get("roles") or ()),
            token=d.get("token"),
            created_at=d.get("created_at"),
            revoked=bool(d.get("revoked") or d.get("revoked_at")),
        )

    def to_dict(self) -> dict[str, Any]:
        """The wire form; ``token`` only when this object carries the secret."""
        d = _plain(asdict(self))
        if d["token"] is None:
            del d["token"]
        return d

    def __str__(self) -> str:
        state = " (revoked)" if self.revoked else ""
        return f"token {self.id}: {self.user} [{', '.join(self.roles)}]{state}"


@dataclass(frozen=True)
class Identity(_Entity):
    """The caller as the server knows it."""

    user: str
    roles: tuple[str, ...]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Identity:
        """Build from the server's JSON."""
        return cls(user=d["user"], roles=tuple(d.get("roles") or ()))

    def __str__(self) -> str:
        return f"{self.user} [{', '.join(self.roles)}]"
