"""``/v1/lineage``: which versions used a dataset, the protected aliases they hold, the plans."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from registry_server.deps import AuthorizeDep, ContextDep
from registry_server.schemas import NO_NUL, LineageAffected, error_responses
from registry_server.services import lineage

MD5_PATTERN = r"^[0-9a-f]{32}(\.dir)?$"

router = APIRouter(
    dependencies=[AuthorizeDep],
    prefix="/v1/lineage",
    tags=["lineage"],
    responses=error_responses(401, 404, 422, 502, 503),
)


@router.get("/affected", response_model=LineageAffected)
def affected(
    ctx: ContextDep,
    md5: Annotated[
        str | None,
        Query(pattern=MD5_PATTERN, description="The DVC md5 of the data (`.dir`: a folder)."),
    ] = None,
    path: Annotated[
        str | None,
        Query(max_length=1000, pattern=NO_NUL, description="The data's path (with rev)."),
    ] = None,
    rev: Annotated[
        str | None,
        Query(
            max_length=1000,
            pattern=NO_NUL,
            description="The git commit sha (or a prefix) a run recorded the path at.",
        ),
    ] = None,
    model: Annotated[
        str, Query(max_length=256, pattern=NO_NUL, description="Glob over model names.")
    ] = "*",
) -> dict:
    """Every model version trained or evaluated on the data, the protected aliases holding
    them now, and for each a rollback plan down the alias journal.

    Name the data by ``md5``, or by ``path`` and ``rev`` together (a commit sha a run
    recorded); anything else is ``422 invalid_dataset_ref``."""
    return lineage.affected(ctx, md5=md5, path=path, rev=rev, model=model)


__all__ = ["router"]
