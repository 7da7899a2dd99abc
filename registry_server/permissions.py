"""Who may call which route: the one permissions table, enforced before every handler.

Keys are ``"METHOD /path"`` exactly as the routes are declared. ``PUBLIC`` routes need no
token; ``AUTHENTICATED`` routes need a valid token (any role); a tuple of roles means the
caller must hold one of them. Some routes add a rule of their own, checked by the service:
approve/reject take the target's ``approvals.roles`` from the policy, rollback its
``rollback.roles``, cancel only the request's requester or an admin. ``docs/operations.md``
shows the same table; a test calls every route of the app with every kind of caller and
compares the answers to it, so a new route without an entry fails the tests.

Example:
    >>> PERMISSIONS["POST /v1/tokens"].roles
    ('admin',)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PERMISSIONS", "Access", "access_for"]


@dataclass(frozen=True)
class Access:
    """The rule of one route: token needed, roles allowed, and the service's own rule."""

    token: bool
    roles: tuple[str, ...] | None = None
    policy: str | None = None  # "approvals", "rollback" or "owner": the service checks it

    def describe(self) -> str:
        """A short text for the documentation table.

        Example:
            >>> Access(True, ("admin",)).describe()
            'admin'
        """
        if not self.token:
            return "public"
        text = ", ".join(self.roles) if self.roles else "any valid token"
        rule = {
            "approvals": "the target's approvals.roles (policy)",
            "rollback": "the target's rollback.roles (policy)",
            "owner": "its requester or an admin",
        }.get(self.policy or "")
        return f"{text}; then {rule}" if rule else text


PUBLIC = Access(token=False)
AUTHENTICATED = Access(token=True)
ADMIN = Access(token=True, roles=("admin",))

PERMISSIONS: dict[str, Access] = {
    "GET /healthz": PUBLIC,
    "GET /readyz": PUBLIC,
    "GET /openapi.json": PUBLIC,
    "GET /docs": PUBLIC,
    "GET /docs/oauth2-redirect": PUBLIC,
    "GET /redoc": PUBLIC,
    "POST /v1/promotions": Access(token=True, roles=("requester", "admin")),
    "GET /v1/promotions": PUBLIC,
    "GET /v1/promotions/{request_id}": PUBLIC,
    "POST /v1/promotions/{request_id}/cancel": Access(token=True, policy="owner"),
    "POST /v1/promotions/{request_id}/approve": Access(token=True, policy="approvals"),
    "POST /v1/promotions/{request_id}/reject": Access(token=True, policy="approvals"),
    "POST /v1/mlflow/webhook": PUBLIC,  # authenticated by MLflow's HMAC signature instead
    "GET /v1/aliases/{model}/{alias}": PUBLIC,
    "GET /v1/aliases/{model}/{alias}/history": PUBLIC,
    "POST /v1/aliases/{model}/{alias}/rollback": Access(token=True, policy="rollback"),
    "GET /v1/policy/history": AUTHENTICATED,
    "GET /v1/policy/{digest}": AUTHENTICATED,
    "POST /v1/policy/reload": ADMIN,
    "POST /v1/policy/dry-run": Access(token=True, roles=("approver", "admin")),
    "GET /v1/lineage/affected": PUBLIC,
    "GET /v1/audit": AUTHENTICATED,
    "GET /v1/audit/verify": AUTHENTICATED,
    "POST /v1/audit/verify": AUTHENTICATED,
    "GET /v1/audit/checkpoint": AUTHENTICATED,
    "GET /v1/promotions/{request_id}/attestation": AUTHENTICATED,
    "GET /v1/keys": PUBLIC,
    "POST /v1/tokens": ADMIN,
    "GET /v1/tokens": ADMIN,
    "DELETE /v1/tokens/{token_id}": ADMIN,
    "GET /v1/me": AUTHENTICATED,
    "POST /v1/webhooks": ADMIN,
    "GET /v1/webhooks": ADMIN,
    "DELETE /v1/webhooks/{webhook_id}": ADMIN,
    "POST /v1/webhooks/{webhook_id}/secrets": ADMIN,
    "DELETE /v1/webhooks/{webhook_id}/secrets/{secret_id}": ADMIN,
    "GET /v1/webhooks/{webhook_id}/deliveries": ADMIN,
    "POST /v1/webhooks/deliveries/{delivery_id}/replay": ADMIN,
}


def access_for(method: str, path: str) -> Access:
    """The rule of ``METHOD path``; a route missing from the table is refused to everyone.

    Example:
        >>> access_for("GET", "/v1/me").token
        True
    """
    return PERMISSIONS.get(f"{method.upper()} {path}", Access(token=True, roles=()))
