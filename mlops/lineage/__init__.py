"""Blast radius: which model versions used a dataset, and which protected aliases hold them.

The reverse of :func:`mlops.registry.lineage`. A dataset is named by ``PATH@REV`` (DVC
resolves it to its md5 in the project, as :func:`mlops.data.version` does) or by its DVC
md5. MLflow is searched with filters, never run by run: one ``search_runs`` over every
experiment for the runs whose dataset inputs carry that digest (``mlops.start_run`` logs
training data, ``mlops.evaluate`` evaluation data), one ``search_model_versions`` per 100
of those runs, and for the aliases one registered-model read per model (up to 10 models),
else pages of 1000 registered models.

:func:`versions_using` reads MLflow only. :func:`affected` asks the registry server, which
adds what only it knows: the protected aliases that hold those versions now and, for each,
a rollback plan down the alias journal to the newest earlier holder that did not use the
data. :func:`roll_back` carries the plans out through the server's rollback route (its
permission rule and audit), one journal step at a time.

Example:
    >>> import mlops
    >>> radius = mlops.lineage.affected("data/train.csv@v1.2")   # doctest: +SKIP
    >>> [(h.model, h.alias, h.version) for h in radius.holders]  # doctest: +SKIP
    [('churn', 'production', 7)]
    >>> mlops.lineage.roll_back(radius)                           # doctest: +SKIP
"""

from mlops.lineage._radius import BlastRadius, Holder, affected, roll_back
from mlops.lineage._search import UsedBy, check_md5, recorded_md5, versions_using

__all__ = [
    "BlastRadius",
    "Holder",
    "UsedBy",
    "affected",
    "check_md5",
    "recorded_md5",
    "roll_back",
    "versions_using",
]
