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

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from mlops.client._types import (
    FINAL_STATES,
    AliasHolder,
    AliasMove,
    Approval,
    AuditCheck,
    AuditEvent,
    Identity,
    Promotion,
    Quorum,
    RuleResult,
    Token,
)
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
        timeout: float = 30.0,
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

        Filters: ``model``, ``target``, ``state`` (``None`` values are ignored). Pages are
        followed by the server's ``next_before`` (keyset): a request created while
        iterating neither repeats nor shifts one out of the listing.

        Example:
            >>> [p.id for p in client.list_promotions(state="pending")]  # doctest: +SKIP
        """
        params = {k: v for k, v in filters.items() if v is not None}
        params["limit"] = page_size
        while True:
            page = self._call("GET", "/v1/promotions", params=params)
            items = page.get("items", [])
            for item in items:
                yield Promotion.from_dict(item)
            if not items or page.get("next_before") is None:
                return
            params["before"] = page["next_before"]

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

    # --- lineage ----------------------------------------------------------------------
    def affected(
        self,
        *,
        md5: str | None = None,
        path: str | None = None,
        rev: str | None = None,
        model: str = "*",
    ) -> dict[str, Any]:
        """The blast radius of a dataset (by ``md5``, or ``path`` + commit ``rev``), raw.

        :func:`mlops.lineage.affected` wraps it (and resolves ``PATH@REV`` through DVC).

        Example:
            >>> client.affected(md5="5ba2c4a1b5c4cd5e3a3f54ea2bb1b4d1")["holders"]  # doctest: +SKIP
        """
        params = {"md5": md5, "path": path, "rev": rev, "model": model}
        params = {k: v for k, v in params.items() if v is not None}
        return self._call("GET", "/v1/lineage/affected", params=params)

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

    def verify_audit(
        self, *, incremental: bool = False, checkpoint: Mapping[str, Any] | None = None
    ) -> AuditCheck:
        """Recompute the audit hash chain on the server, against its newest signed
        checkpoint, or against ``checkpoint`` (a signed envelope kept elsewhere).

        ``incremental=True`` walks only the events after the newest valid checkpoint.

        Example:
            >>> client.verify_audit().ok                       # doctest: +SKIP
            True
        """
        if checkpoint is not None:
            body = {"envelope": dict(checkpoint)}
            return AuditCheck.from_dict(self._call("POST", "/v1/audit/verify", json=body))
        params = {"incremental": "true"} if incremental else None
        return AuditCheck.from_dict(self._call("GET", "/v1/audit/verify", params=params))

    def audit_checkpoint(self) -> dict[str, Any]:
        """The newest signed checkpoint of the audit chain (keep its ``envelope``).

        Example:
            >>> client.audit_checkpoint()["count"]              # doctest: +SKIP
            42
        """
        return self._call("GET", "/v1/audit/checkpoint")

    def attestation(self, request_id: int) -> dict[str, Any]:
        """The signed decision (DSSE envelope of an in-toto Statement) of a promotion.

        Example:
            >>> client.attestation(7)["envelope"]["payloadType"]   # doctest: +SKIP
            'application/vnd.in-toto+json'
        """
        return self._call("GET", f"/v1/promotions/{int(request_id)}/attestation")

    def public_key(self) -> str:
        """The server's Ed25519 public key (PEM), for ``mlops.verify(..., key=...)``.

        Example:
            >>> client.public_key().startswith("-----BEGIN PUBLIC KEY-----")  # doctest: +SKIP
            True
        """
        return self._call("GET", "/v1/keys")["public_key"]

    # --- the policy -------------------------------------------------------------------
    def policy_history(self, *, limit: int = 100) -> dict[str, Any]:
        """The policies the server ran under, newest first, and the digest in force.

        Example:
            >>> client.policy_history()["in_force"][:12]       # doctest: +SKIP
            '9ba838b24921'
        """
        return self._call("GET", "/v1/policy/history", params={"limit": limit})

    def policy(self, digest: str) -> dict[str, Any]:
        """One kept policy by digest (or a prefix of 8+ characters): its YAML text.

        Example:
            >>> client.policy("9ba838b2")["source"].splitlines()[0]  # doctest: +SKIP
            'version: 1'
        """
        return self._call("GET", f"/v1/policy/{digest}")

    def policy_dry_run(self, source: str) -> dict[str, Any]:
        """What the policy ``source`` (YAML text) would change, rule by rule; nothing moves.

        Example:
            >>> client.policy_dry_run(open("new.yaml").read())["summary"]  # doctest: +SKIP
            {'blocks': 1, 'unblocks': 0, 'holders_failing': 0}
        """
        return self._call("POST", "/v1/policy/dry-run", json={"policy": source})

    def reload_policy(self) -> dict[str, Any]:
        """Ask the server to read its policy file now (admin); an invalid file is refused.

        Example:
            >>> client.reload_policy()["changed"]              # doctest: +SKIP
            True
        """
        return self._call("POST", "/v1/policy/reload")

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
