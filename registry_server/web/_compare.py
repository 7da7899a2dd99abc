"""What changed between a candidate and its champion: model, parameters, data and code.

Everything is read by the server itself: the run's params, tags and dataset inputs and the
logged model's flavors through the MLflow gateway, the rows of each dataset from the
version's own evidence bundle. Nothing here decides anything; it lines the two versions
up and marks what differs.

Example:
    >>> rows = param_rows({"C": "1.0", "seed": "42"}, {"C": "0.5", "seed": "42"})
    >>> [(r["name"], r["differs"]) for r in rows]
    [('C', True), ('seed', False)]
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from mlops.errors import MlopsError
from registry_server.mlflow_gateway import VersionRun
from registry_server.services.context import ServerContext
from registry_server.services.evidence import current_evidence

__all__ = ["compare", "data_rows", "param_rows", "version_facts"]

MODEL_CLASS_TAGS = ("mlops.model.class", "estimator_class")
_FLAVOR_SKIP = {"python_function"}


def _short_class(name: str | None) -> str | None:
    return name.rsplit(".", 1)[-1] if name else None


def _flavor(run: VersionRun) -> str | None:
    """The model's own flavor (``sklearn 1.9.1``), not the generic ``python_function``."""
    for flavor, conf in run.flavors.items():
        if flavor not in _FLAVOR_SKIP:
            ver = next((str(v) for k, v in conf.items() if k.endswith("_version")), "")
            return f"{flavor} {ver}".strip()
    return "python_function" if run.flavors else None


def _links(ui: str | None, run: VersionRun) -> dict[str, str | None]:
    if not ui:
        return {"run": None, "version": None}
    version = f"{ui}/#/models/{quote(run.name, safe='')}/versions/{run.version}"
    if not run.run_id or not run.experiment_id:
        return {"run": None, "version": version}
    return {"run": f"{ui}/#/experiments/{run.experiment_id}/runs/{run.run_id}", "version": version}


def _columns(run: VersionRun) -> list[str]:
    """The columns the model was trained on (its input signature), in order."""
    return [str(c.get("name")) for c in run.signature if c.get("name") is not None]


def _rows_for(bundle: dict[str, Any] | None, md5: str | None) -> int | None:
    """Rows of the data with ``md5``, as counted by a validation report of the evidence."""
    for report in (bundle or {}).get("validation") or []:
        if md5 and (report.get("dataset") or {}).get("md5") == md5:
            return report.get("rows")
    return None


def _datasets(run: VersionRun, bundle: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Training data (from the evidence lineage, else the run's DVC inputs) and eval data."""
    lineage = ((bundle or {}).get("lineage") or {}).get("datasets")
    if lineage is None:
        lineage = [
            d["source"]
            for d in run.datasets
            if d.get("source_type") == "dvc" and d.get("context") != "evaluation"
        ]
    columns = _columns(run)
    out = [
        {
            "role": "training",
            "path": d.get("path"),
            "md5": d.get("md5"),
            "rev": d.get("rev"),
            "committed": str(d.get("committed", True)).lower() != "false",
            "rows": _rows_for(bundle, d.get("md5")),
            "columns": columns,
        }
        for d in lineage
    ]
    evaluation = (bundle or {}).get("evaluation") or {}
    if evaluation.get("dataset"):
        d = evaluation["dataset"]
        out.append(
            {
                "role": "evaluation",
                "path": d.get("path"),
                "md5": d.get("md5"),
                "rev": d.get("rev"),
                "committed": str(d.get("committed", True)).lower() != "false",
                "rows": evaluation.get("rows"),
                "columns": columns,
            }
        )
    return out


def version_facts(
    ctx: ServerContext,
    model: str,
    version: int,
    *,
    bundle: dict[str, Any] | None = None,
    mlflow_ui: str | None = None,
) -> dict[str, Any]:
    """Model, params, data and code of one version; ``error`` says what could not be read.

    ``bundle`` is the version's evidence if the caller has it; else it is read here (a
    champion registered without evidence still shows what MLflow knows).
    """
    error = None
    if bundle is None:
        try:
            bundle, _ = current_evidence(ctx.gateway, model, version)
        except MlopsError as exc:
            error = f"its evidence cannot be read ({exc.code})"
    try:
        run = ctx.gateway.describe_version(model, version)
    except MlopsError as exc:
        return {"version": version, "error": f"MLflow cannot describe it: {exc.message}"}
    tags = run.tags
    klass = next((tags[t] for t in MODEL_CLASS_TAGS if tags.get(t)), None)
    dirty = tags.get("mlops.git_dirty")
    return {
        "version": version,
        "error": error,
        "run_id": run.run_id,
        "run_name": run.run_name,
        "experiment": run.experiment_name,
        "links": _links(mlflow_ui, run),
        "model_class": klass,
        "model_class_short": _short_class(klass),
        "flavor": _flavor(run),
        "params": run.params,
        "commit": tags.get("mlops.git_commit") or tags.get("mlflow.source.git.commit"),
        "dirty": None if dirty is None else dirty == "true",
        "dvc_exp": tags.get("mlops.dvc.exp_name"),
        "dvc_baseline": tags.get("mlops.dvc.exp_baseline"),
        "datasets": _datasets(run, bundle),
    }


def param_rows(cand: dict[str, str], champ: dict[str, str] | None) -> list[dict[str, Any]]:
    """One row per parameter of either version; ``differs`` when the values are not equal."""
    champ = champ if champ is not None else {}
    return [
        {
            "name": key,
            "candidate": cand.get(key),
            "champion": champ.get(key),
            "differs": bool(champ) and cand.get(key) != champ.get(key),
        }
        for key in sorted(set(cand) | set(champ))
    ]


def data_rows(
    cand: list[dict[str, Any]], champ: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """Candidate and champion datasets paired by role and path, differences named."""
    champ = champ or []
    keys = list(dict.fromkeys((d["role"], d["path"]) for d in [*cand, *champ]))
    rows = []
    for role, path in keys:
        c = next((d for d in cand if (d["role"], d["path"]) == (role, path)), None)
        h = next((d for d in champ if (d["role"], d["path"]) == (role, path)), None)
        rows.append({"role": role, "path": path, "candidate": c, "champion": h})
        rows[-1]["differs"] = _data_differences(c, h) if champ else []
    return rows


def _data_differences(c: dict[str, Any] | None, h: dict[str, Any] | None) -> list[str]:
    if c is None or h is None:
        return ["only the candidate uses it" if h is None else "only the champion used it"]
    out = []
    if c["md5"] != h["md5"]:
        out.append("md5")
    if c["rows"] is not None and h["rows"] is not None and c["rows"] != h["rows"]:
        out.append("rows")
    if c["columns"] and h["columns"] and c["columns"] != h["columns"]:
        out.append("columns")
    return out


def _changes(cand: dict[str, Any], champ: dict[str, Any], data: list, params: list) -> list[str]:
    """One sentence per difference, for the summary at the top of the request."""
    out = []
    if cand["model_class"] != champ["model_class"]:
        out.append(
            f"Model class: {champ['model_class_short'] or 'not recorded'} (champion) → "
            f"{cand['model_class_short'] or 'not recorded'} (candidate)"
        )
    if cand["flavor"] != champ["flavor"]:
        out.append(f"Flavor: {champ['flavor']} → {cand['flavor']}")
    for p in params:
        if p["differs"]:
            out.append(f"Parameter {p['name']}: {p['champion']} → {p['candidate']}")
    for d in data:
        if d["differs"]:
            out.append(f"{d['role'].capitalize()} data {d['path']}: {_data_sentence(d)}")
    out += _code_changes(cand, champ)
    return out


def _data_sentence(d: dict[str, Any]) -> str:
    c, h = d["candidate"], d["champion"]
    if c is None or h is None:
        return d["differs"][0]
    parts = []
    if "md5" in d["differs"]:
        parts.append(f"md5 {h['md5'][:8]} → {c['md5'][:8]}")
    if "rows" in d["differs"]:
        parts.append(f"rows {h['rows']} → {c['rows']}")
    if "columns" in d["differs"]:
        added = sorted(set(c["columns"]) - set(h["columns"]))
        gone = sorted(set(h["columns"]) - set(c["columns"]))
        parts.append(f"columns +{added} -{gone}" if added or gone else "column order")
    return ", ".join(parts)


def _code_changes(cand: dict[str, Any], champ: dict[str, Any]) -> list[str]:
    out = []
    if cand["commit"] != champ["commit"]:
        out.append(
            f"Code commit: {(champ['commit'] or 'not recorded')[:8]} → "
            f"{(cand['commit'] or 'not recorded')[:8]}"
        )
    elif cand["dirty"] or champ["dirty"]:
        who = " and ".join(
            n for n, f in (("the champion", champ), ("the candidate", cand)) if f["dirty"]
        )
        out.append(
            f"Code: same commit {(cand['commit'] or '-')[:8]}, but {who} ran with uncommitted "
            "changes: the code may differ"
        )
    if cand["dvc_exp"] != champ["dvc_exp"] and (cand["dvc_exp"] or champ["dvc_exp"]):
        out.append(f"DVC experiment: {champ['dvc_exp'] or 'none'} → {cand['dvc_exp'] or 'none'}")
    return out


def compare(
    ctx: ServerContext,
    model: str,
    version: int,
    bundle: dict[str, Any] | None,
    *,
    mlflow_ui: str | None = None,
) -> dict[str, Any]:
    """The candidate next to its champion (the version its evaluation was judged against,
    else the alias holder now), with the list of what changed."""
    cand = version_facts(ctx, model, version, bundle=bundle or None, mlflow_ui=mlflow_ui)
    evaluation = (bundle or {}).get("evaluation") or {}
    champ_version = evaluation.get("champion_version")
    champ = None
    if champ_version:
        champ = version_facts(ctx, model, int(champ_version), mlflow_ui=mlflow_ui)
    usable = champ is not None and "params" in champ and "params" in cand
    params = param_rows(cand.get("params") or {}, champ["params"] if usable else None)
    data = data_rows(cand.get("datasets") or [], champ["datasets"] if usable else None)
    return {
        "candidate": cand,
        "champion": champ,
        "champion_alias": evaluation.get("champion_alias"),
        "params": params,
        "data": data,
        "changes": _changes(cand, champ, data, params) if usable else [],
    }
