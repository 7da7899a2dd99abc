"""The OpenAPI schema names the policy's targets, so schema-valid input is accepted.

The routes are defined once for every policy; the targets a request or a rollback may name
are known only when the server loads its policy. :func:`describe_policy` adds them as an
``enum`` to the generated schema (``PromotionIn.target`` and the rollback's ``alias``), so
a client or a fuzzer that follows the schema never sends a target the server refuses.

Example:
    >>> describe_policy(app)                       # doctest: +SKIP
    >>> app.openapi()["components"]["schemas"]["PromotionIn"]["properties"]["target"]["enum"]
    ['production', 'staging']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["describe_policy"]

ROLLBACK = "/v1/aliases/{model}/{alias}/rollback"


def _targets(app: FastAPI) -> list[str]:
    return sorted(app.state.ctx.policy.targets)


def _name_targets(schema: dict[str, Any], targets: list[str]) -> None:
    props = schema.get("components", {}).get("schemas", {}).get("PromotionIn", {})
    target = props.get("properties", {}).get("target")
    if target is not None:
        target["enum"] = targets
    for param in schema.get("paths", {}).get(ROLLBACK, {}).get("post", {}).get("parameters", []):
        if param.get("in") == "path" and param.get("name") == "alias":
            param["schema"]["enum"] = targets
            param["description"] = "A target alias of the promotion policy."


def describe_policy(app: FastAPI) -> None:
    """Make ``app.openapi()`` list the loaded policy's targets where a target is named."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            _name_targets(schema, _targets(app))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
