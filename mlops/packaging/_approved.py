"""Which Bento serves an alias: the one recorded in the evidence the approvals were bound to.

Example:
    >>> approved_bento("iris-classifier@production")  # doctest: +SKIP
    'iris-classifier:v3-5k2mqx4d'
"""

from __future__ import annotations

import os

from mlops.errors import ConfigError, PackagingError
from mlops.packaging._bento_runtime import _bentoml

__all__ = ["approved_bento"]


def approved_bento(ref: str, *, digest: str | None = None) -> str:
    """The Bento tag recorded in the evidence of the version holding ``NAME@ALIAS``.

    ``digest`` is the evidence the approvals were bound to (the promotion request's); by
    default the digest tagged on the version.

    Example:
        >>> approved_bento("iris-classifier@production")  # doctest: +SKIP
        'iris-classifier:v3-5k2mqx4dxkkwx3y4'
    """
    from mlops import evidence, registry

    if "@" not in ref:
        raise ConfigError(f"Expected NAME@ALIAS, got {ref!r}.", ref=ref)
    mv = registry.resolve(ref)
    bundle = evidence.load(mv.name, mv.version, digest=digest)
    tag = (bundle.package or {}).get("bento_tag")
    if not tag:
        raise PackagingError(f"The evidence of {mv.name!r} version {mv.version} names no Bento.")
    bentoml = _bentoml()
    try:
        labels = bentoml.bentos.get(tag).info.labels
    except bentoml.exceptions.NotFound as exc:
        raise PackagingError(
            f"Bento {tag!r} of {ref} (version {mv.version}) is not in the Bento store "
            f"{os.environ.get('BENTOML_HOME')!r}."
        ) from exc
    if (labels.get("mlops.model"), labels.get("mlops.version")) != (mv.name, str(mv.version)):
        raise PackagingError(
            f"Bento {tag!r} is labelled {labels.get('mlops.model')!r} version "
            f"{labels.get('mlops.version')!r}, not {mv.name!r} version {mv.version}."
        )
    return tag
