"""A small client for the mlops registry server (the approval gate).

Every method is one REST call under ``/v1``. The server's error body
``{"code", "message", "hint"}`` comes back as the same :mod:`mlops.errors` class, so
``except PermissionDenied`` works on both sides of the wire. Any ``httpx.Client`` can
carry the calls, including Starlette's ``TestClient``.

Example:
    >>> from mlops.client import RegistryClient
    >>> client = RegistryClient("http://127.0.0.1:8765", token="...")  # doctest: +SKIP
    >>> p = client.request_promotion("churn", 3, "production", "9f2c...")  # doctest: +SKIP
    >>> p.state, p.quorum                                              # doctest: +SKIP
    ('pending', Quorum(have=0, need=2))
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from mlops.errors import (
    AuthenticationError,
    ConflictError,
    MlopsError,
    NotFoundError,
    PermissionDenied,
    RegistryError,
    RegistryUnavailable,
    error_class,
)

if TYPE_CHECKING:
    import httpx

__all__ = [
    "FINAL_STATES",
    "AliasHolder",
    "AliasMove",
    "Approval",
    "AuditCheck",
    "AuditEvent",
    "Identity",
    "InvalidRequest",
    "Promotion",
    "Quorum",
    "RegistryClient",
    "RuleResult",
    "Token",
]

FINAL_STATES = frozenset({"promoted", "rejected", "cancelled", "expired", "superseded"})


class InvalidRequest(MlopsError, ValueError):
    """The server refused the request's shape (a missing or malformed field)."""

    code = "invalid_request"
    default_hint = "Check the fields named in the message against the API schema at /docs."


# Used only when an error body carries an unknown ``code`` or none (e.g. a proxy's plain-text 502).
_BY_STATUS: dict[int, type[MlopsError]] = {
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFoundError,
    409: ConflictError,
    422: InvalidRequest,
}


# --- entities -------------------------------------------------------------------------
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
        lines += [f"  {r}" for r in self.rules if not r.passed]
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

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AuditCheck:
        """Build from the server's JSON."""
        return cls(bool(d["ok"]), int(d["count"]), d.get("first_bad_id"), d.get("reason"))

    def __str__(self) -> str:
        if self.ok:
            return f"audit chain ok ({self.count} events)"
        return f"audit chain BROKEN at event {self.first_bad_id}: {self.reason}"


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


class RegistryClient:
    """Talk to the registry server.

    Args:
        base_url: server URL; default ``MLOPS_REGISTRY_URL`` (or the ``http`` client's
            own ``base_url`` when one is given).
        token: bearer token; default ``MLOPS_TOKEN``.
        http: any ``httpx.Client`` to send the requests with (e.g. a ``TestClient``).
        timeout: seconds per request when the client builds its own ``httpx.Client``.

    Example:
        >>> client = RegistryClient(token="s3cret")           # doctest: +SKIP
        >>> client.me().user                                  # doctest: +SKIP
        'alice'
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        http: httpx.Client | None = None,
        timeout: float = 10.0,
    ) -> None:
        if base_url is None or token is None:
            from mlops.config import load_settings

            settings = load_settings()
            if base_url is None:
                base_url = str(http.base_url) if http is not None else settings.registry_url
            token = token if token is not None else settings.token
        self.base_url = base_url.rstrip("/")
        self.token = token
        if http is None:
            import httpx

            http = httpx.Client(timeout=timeout)
            self._owns_http = True
        else:
            self._owns_http = False
        self.http = http

    def __repr__(self) -> str:
        return f"RegistryClient({self.base_url!r}, token={'***' if self.token else None})"

    def close(self) -> None:
        """Close the underlying HTTP client if this object created it."""
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- promotions -----------------------------------------------------------------
    def request_promotion(
        self, model: str, version: int, target: str, evidence_digest: str
    ) -> Promotion:
        """Ask to move alias ``target`` of ``model`` to ``version``, bound to the evidence.

        Example:
            >>> client.request_promotion("churn", 3, "production", digest)  # doctest: +SKIP
        """
        body = {
            "model": model,
            "version": int(version),
            "target": target,
            "evidence_digest": evidence_digest,
        }
        return Promotion.from_dict(self._call("POST", "/v1/promotions", json=body))

    def list_promotions(self, *, page_size: int = 50, **filters: Any) -> Iterator[Promotion]:
        """Iterate over promotion requests, newest pages fetched lazily.

        Filters: ``model``, ``target``, ``state`` (``None`` values are ignored).

        Example:
            >>> [p.id for p in client.list_promotions(state="pending")]  # doctest: +SKIP
        """
        params = {k: v for k, v in filters.items() if v is not None}
        offset = 0
        while True:
            page = self._call(
                "GET", "/v1/promotions", params={**params, "limit": page_size, "offset": offset}
            )
            items = page.get("items", [])
            for item in items:
                yield Promotion.from_dict(item)
            offset += len(items)
            if not items or offset >= int(page.get("total", 0)):
                return

    def get_promotion(self, promotion_id: int | str) -> Promotion:
        """One promotion request by id.

        Example:
            >>> client.get_promotion(1).state                 # doctest: +SKIP
            'pending'
        """
        return Promotion.from_dict(self._call("GET", f"/v1/promotions/{promotion_id}"))

    def cancel(self, promotion_id: int | str) -> Promotion:
        """Cancel a pending request (its requester or an admin).

        Example:
            >>> client.cancel(1).state                        # doctest: +SKIP
            'cancelled'
        """
        return Promotion.from_dict(self._call("POST", f"/v1/promotions/{promotion_id}/cancel"))

    def approve(self, promotion_id: int | str, *, comment: str = "") -> Promotion:
        """Approve a request; the server binds the approval to its evidence digest.

        Example:
            >>> client.approve(1, comment="metrics look good").quorum  # doctest: +SKIP
        """
        path = f"/v1/promotions/{promotion_id}/approve"
        return Promotion.from_dict(self._call("POST", path, json={"comment": comment}))

    def reject(self, promotion_id: int | str, *, comment: str) -> Promotion:
        """Reject a request; say why in ``comment``.

        Example:
            >>> client.reject(1, comment="drift on feature x").state  # doctest: +SKIP
            'rejected'
        """
        path = f"/v1/promotions/{promotion_id}/reject"
        return Promotion.from_dict(self._call("POST", path, json={"comment": comment}))

    # --- aliases --------------------------------------------------------------------
    def alias(self, model: str, alias: str) -> AliasHolder:
        """Which version holds ``alias`` now, since when, through which request.

        Example:
            >>> client.alias("churn", "production").version   # doctest: +SKIP
            3
        """
        return AliasHolder.from_dict(self._call("GET", f"/v1/aliases/{model}/{alias}"))

    def history(self, model: str, alias: str) -> tuple[AliasMove, ...]:
        """The alias journal: every version that held ``alias``, from when to when.

        Example:
            >>> [m.version for m in client.history("churn", "production")]  # doctest: +SKIP
        """
        data = self._call("GET", f"/v1/aliases/{model}/{alias}/history")
        return tuple(AliasMove.from_dict(item) for item in data.get("items", []))

    def rollback(self, model: str, alias: str, *, comment: str = "") -> AliasHolder:
        """Move ``alias`` back to the version that held it before.

        Example:
            >>> client.rollback("churn", "production", comment="latency").version  # doctest: +SKIP
        """
        path = f"/v1/aliases/{model}/{alias}/rollback"
        return AliasHolder.from_dict(self._call("POST", path, json={"comment": comment}))

    # --- audit ------------------------------------------------------------------------
    def audit(self, *, after: int | None = None, limit: int = 100) -> tuple[AuditEvent, ...]:
        """Audit events with id greater than ``after`` (oldest first, at most ``limit``).

        Example:
            >>> [e.action for e in client.audit(limit=5)]     # doctest: +SKIP
        """
        params: dict[str, Any] = {"limit": limit}
        if after is not None:
            params["after"] = after
        data = self._call("GET", "/v1/audit", params=params)
        return tuple(AuditEvent.from_dict(item) for item in data.get("items", []))

    def verify_audit(self) -> AuditCheck:
        """Recompute the audit hash chain on the server.

        Example:
            >>> client.verify_audit().ok                       # doctest: +SKIP
            True
        """
        return AuditCheck.from_dict(self._call("GET", "/v1/audit/verify"))

    # --- tokens and identity ----------------------------------------------------------
    def create_token(self, user: str, roles: list[str] | tuple[str, ...]) -> Token:
        """Create a token for ``user`` (admin only); the secret is returned this once.

        Example:
            >>> client.create_token("bob", ["approver"]).token  # doctest: +SKIP
        """
        data = self._call("POST", "/v1/tokens", json={"user": user, "roles": list(roles)})
        return Token.from_dict(data)

    def tokens(self) -> tuple[Token, ...]:
        """Every token (without secrets).

        Example:
            >>> [t.user for t in client.tokens()]              # doctest: +SKIP
        """
        data = self._call("GET", "/v1/tokens")
        items = data.get("items", []) if isinstance(data, Mapping) else data
        return tuple(Token.from_dict(item) for item in items)

    def revoke_token(self, token_id: int | str) -> None:
        """Revoke a token by id (admin only).

        Example:
            >>> client.revoke_token(4)                         # doctest: +SKIP
        """
        self._call("DELETE", f"/v1/tokens/{token_id}")

    def me(self) -> Identity:
        """Who the server thinks this token belongs to.

        Example:
            >>> client.me().roles                              # doctest: +SKIP
            ('approver',)
        """
        return Identity.from_dict(self._call("GET", "/v1/me"))

    def health(self) -> dict[str, Any]:
        """The server's ``/healthz`` answer; raises :class:`RegistryUnavailable` if down.

        Example:
            >>> client.health()                                # doctest: +SKIP
            {'status': 'ok'}
        """
        return self._call("GET", "/healthz")

    # --- the wire -----------------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        url = f"{self.base_url}{path}"
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            response = self.http.request(method, url, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise RegistryUnavailable(
                f"Cannot reach the registry server at {self.base_url!r}: {exc}.",
                hint="Start it with `mlops server`, or point MLOPS_REGISTRY_URL (--url) at it.",
                url=self.base_url,
            ) from exc
        if response.is_success:
            return response.json() if response.content else None
        raise _error_from(response, method, url)


def _error_from(response: httpx.Response, method: str, url: str) -> MlopsError:
    """Turn an error response back into the :mod:`mlops.errors` class the server raised."""
    try:
        body = response.json()
    except ValueError:
        body = None
    status = response.status_code
    if isinstance(body, Mapping) and "code" in body:
        cls = error_class(str(body["code"]))
        if cls is MlopsError:
            cls = _BY_STATUS.get(status, RegistryError if status >= 500 else MlopsError)
        message = str(body.get("message") or f"{method} {url} failed with HTTP {status}.")
        details = dict(body.get("details") or {})
    else:
        cls = _BY_STATUS.get(status, RegistryError if status >= 500 else MlopsError)
        text = response.text[:500] if body is None else str(body)[:500]
        message = f"{method} {url} failed with HTTP {status}: {text}"
        body, details = {}, {}
    details = {k: v for k, v in details.items() if k not in {"message", "hint"}}
    details.setdefault("status", status)
    return cls(message, hint=body.get("hint") or None, **details)
