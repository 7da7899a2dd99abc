"""``/v1/policy``: the policies kept by digest, reload without restart, and the dry-run."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from registry_server.deps import AuthorizeDep, CallerDep, ContextDep
from registry_server.schemas import (
    PolicyDryRunIn,
    PolicyDryRunOut,
    PolicyHistory,
    PolicyReloadOut,
    PolicyVersionOut,
    error_responses,
)
from registry_server.services import policies, policy_diff

router = APIRouter(
    dependencies=[AuthorizeDep],
    prefix="/v1/policy",
    tags=["policy"],
    responses=error_responses(401, 403, 422),
)


@router.get("/history", response_model=PolicyHistory)
def policy_history(ctx: ContextDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict:
    """Every policy the server ran under, newest first, and the digest in force."""
    return policies.history(ctx, limit=limit)


@router.get("/{digest}", response_model=PolicyVersionOut, responses=error_responses(404))
def policy_version(
    digest: Annotated[str, Path(pattern=r"^[0-9a-f]{8,64}$", description="Digest or prefix.")],
    ctx: ContextDep,
) -> dict:
    """One kept policy: its YAML text and parsed form."""
    return policies.get_version(ctx, digest)


@router.post("/reload", response_model=PolicyReloadOut)
def reload_policy(ctx: ContextDep, caller: CallerDep) -> dict:
    """Read the policy file now; an invalid file is refused and the old policy stays."""
    return policies.reload(ctx, actor=caller.user, force=True)


@router.post("/dry-run", response_model=PolicyDryRunOut)
def dry_run(body: PolicyDryRunIn, ctx: ContextDep) -> dict:
    """Judge pending requests and protected holders under the policy now and the new one."""
    return policy_diff.dry_run(ctx, body.policy)


__all__ = ["router"]
