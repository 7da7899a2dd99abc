"""The one place the server talks to MLflow: versions, aliases and evidence artifacts.

Every MLflow exception is turned into an ``mlops.errors`` class here, so the rest of the
server never sees an MLflow type.

Example:
    >>> gw = MlflowGateway("sqlite:///mlflow.db")           # doctest: +SKIP
    >>> gw.version_exists("churn", 3)                        # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops.errors import (
    AliasNotFound,
    EvidenceError,
    ModelVersionNotFound,
    RegistryUnavailable,
)

__all__ = [
    "ALIAS_EVENTS",
    "ATTESTATION_TAG",
    "EVIDENCE_DIGEST_TAG",
    "EVIDENCE_PATH_TAG",
    "EvidenceArtifact",
    "MlflowGateway",
    "ModelAliases",
    "VersionIdentity",
    "VersionRun",
]

log = logging.getLogger("registry_server.mlflow")

EVIDENCE_DIGEST_TAG = "mlops.evidence.digest"
EVIDENCE_PATH_TAG = "mlops.evidence.path"
ATTESTATION_TAG = "mlops.attestation"


@dataclass(frozen=True)
class EvidenceArtifact:
    """The raw evidence JSON of a version and the digest its tag claims."""

    data: bytes
    tagged_digest: str
    path: str
    run_id: str = ""
    #: (path, md5) of each dataset the version's run recorded (``mlops.dataset.<i>.*`` tags)
    run_datasets: tuple[tuple[str, str], ...] | None = None


@dataclass(frozen=True)
class VersionRun:
    """What MLflow knows about the run and the logged model behind one model version.

    ``tags`` keeps the ``mlops.*`` run tags and MLflow's own source/estimator tags;
    ``datasets`` the run's dataset inputs; ``flavors`` and ``signature`` come from the
    logged model's ``MLmodel`` file (empty if it cannot be read).
    """

    name: str
    version: int
    run_id: str | None
    experiment_id: str | None = None
    experiment_name: str | None = None
    run_name: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    datasets: tuple[dict[str, Any], ...] = ()
    flavors: dict[str, dict[str, Any]] = field(default_factory=dict)
    signature: tuple[dict[str, Any], ...] = ()
    model_id: str | None = None


_RUN_TAGS = ("mlops.", "estimator_", "mlflow.source.git.", "mlflow.runName")


@dataclass(frozen=True)
class VersionIdentity:
    """Who a registered version is, beyond its number.

    ``model_created_ms`` and ``version_created_ms`` are MLflow's own creation times of
    the registered model and of the version: a name deleted and registered again, or a
    version deleted and its number reused, gets new ones even from the same run.
    """

    run_id: str | None
    evidence_digest: str | None
    model_created_ms: int | None
    version_created_ms: int | None


@dataclass(frozen=True)
class ModelAliases:
    """One registered model as a page of the alias sweep sees it."""

    name: str
    created_ms: int | None
    aliases: dict[str, int]
    #: MLflow's last-updated time of the model (moves when versions are added or deleted)
    updated_ms: int | None = None


#: modules the server's MLflow calls import lazily: loaded once, before readiness
_PRELOAD = (
    "mlflow",
    "mlflow.exceptions",
    "mlflow.tracking",
    "mlflow.artifacts",
    "mlflow.store.artifact.artifact_repository_registry",
)

#: MLflow webhook events the server subscribes to (alias set and alias deleted)
ALIAS_EVENTS = ("model_version_alias.created", "model_version_alias.deleted")


def _is_not_found(exc: Exception) -> bool:
    return getattr(exc, "error_code", "") in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}


class MlflowGateway:
    """Thin wrapper over ``MlflowClient`` for one tracking/registry URI."""

    def __init__(self, tracking_uri: str, registry_uri: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri or tracking_uri
        self._client: Any = None
        self._loaded: str | None = None  # "ok", or why MLflow cannot be used here
        self._load_lock = threading.Lock()

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(self.tracking_uri, registry_uri=self.registry_uri)
        return self._client

    @property
    def _registry(self) -> Any:
        """MLflow's registry client under ``MlflowClient``: the same calls without
        ``MlflowClient``'s check that the name is not a prompt, which reads the whole
        registered model (all its versions, aliases and tags) each time. Only for the
        calls of an alias move (the model digest, the signed decision's tag), whose
        :meth:`set_alias` keeps that check."""
        return self.client._get_registry_client()

    def _version(self, name: str, version: int) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version(name, str(version))
        except MlflowException as exc:
            if _is_not_found(exc):
                raise ModelVersionNotFound(
                    f"Model {name!r} has no version {version} in MLflow.",
                    hint="Register the version first (`mlops.register`) or fix name/version.",
                ) from exc
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: Exception) -> RegistryUnavailable:
        log.warning("MLflow at %s failed: %s", self.tracking_uri, exc)  # the log keeps where
        return RegistryUnavailable(
            f"MLflow failed ({type(exc).__name__}); the server log has the details.",
            hint="Check that the MLflow tracking server/store is reachable; the move is retried.",
        )

    def preload(self) -> None:
        """Import MLflow and build the client and its store now, once, in one thread.

        Called before the server reports ready, so request threads and background loops
        never race each other through MLflow's first import ("partially initialized
        module"). Reaching the store is not required: an outage is retried later.
        Raises what the import raised; :meth:`usable` reports it afterwards.
        """
        with self._load_lock:
            if self._loaded is not None:
                return
            try:
                self._load()
            except Exception as exc:
                self._loaded = f"unusable: {type(exc).__name__}: {exc}"[:500]
                raise
            self._loaded = "ok"

    def _load(self) -> None:
        import importlib

        for module in _PRELOAD:
            importlib.import_module(module)
        from mlflow.exceptions import MlflowException

        client = self.client
        try:
            client.search_registered_models(max_results=1)
        except (MlflowException, OSError) as exc:
            log.warning("MLflow at %s not reachable at start: %s", self.tracking_uri, exc)

    def usable(self) -> str:
        """``"ok"`` once MLflow is loaded in this process, else why not (loads it if needed)."""
        if self._loaded is None:
            try:
                self.preload()
            except Exception:  # reported, not raised: readiness says why
                log.exception("MLflow could not be loaded")
        return self._loaded or "unusable: not loaded"

    def identity(self, name: str, version: int) -> VersionIdentity | None:
        """Who ``name`` version ``version`` is in MLflow now; ``None`` if it does not exist."""
        from mlflow.exceptions import MlflowException

        try:
            model = self.client.get_registered_model(name)
            mv = self.client.get_model_version(name, str(version))
        except MlflowException as exc:
            if _is_not_found(exc):
                return None
            raise self._unavailable(exc) from exc
        except OSError as exc:
            raise self._unavailable(exc) from exc
        return VersionIdentity(
            run_id=mv.run_id or None,
            evidence_digest=dict(mv.tags or {}).get(EVIDENCE_DIGEST_TAG),
            model_created_ms=model.creation_timestamp,
            version_created_ms=mv.creation_timestamp,
        )

    def model_aliases(self, name: str) -> ModelAliases | None:
        """The aliases of one registered model; ``None`` if the model does not exist."""
        from mlflow.exceptions import MlflowException

        try:
            model = self.client.get_registered_model(name)
        except MlflowException as exc:
            if _is_not_found(exc):
                return None
            raise self._unavailable(exc) from exc
        except OSError as exc:
            raise self._unavailable(exc) from exc
        return _model_aliases(model)

    def alias_pages(self, page_size: int = 500) -> Iterator[list[ModelAliases]]:
        """Every registered model with its aliases, one page (one MLflow call) at a time."""
        from mlflow.exceptions import MlflowException

        token = None
        creds = self._rest_creds()
        while True:
            if creds is not None:  # an MLflow server: its JSON, read directly
                params = {"max_results": page_size, **({"page_token": token} if token else {})}
                body = self._rest_get(creds, "registered-models/search", params)
                yield [_model_aliases_json(m) for m in body.get("registered_models", ())]
                token = body.get("next_page_token")
            else:
                try:
                    page = self.client.search_registered_models(
                        max_results=page_size, page_token=token
                    )
                except (MlflowException, OSError) as exc:
                    raise self._unavailable(exc) from exc
                yield [_model_aliases(m) for m in page]
                token = page.token
            if not token:
                return

    def _rest_creds(self) -> Any:
        """MLflow's credentials for its registry server when the registry is an MLflow
        server over HTTP(S) (``None`` otherwise): the sweep's big pages are then read as
        JSON, without building an MLflow entity per model."""
        if not self.registry_uri.startswith(("http://", "https://")):
            return None
        store = self.client._get_registry_client().store
        creds = getattr(store, "get_host_creds", None)
        return creds() if callable(creds) else None

    def _rest_get(self, creds: Any, endpoint: str, params: dict[str, Any]) -> dict[str, Any]:
        """GET ``/api/2.0/mlflow/<endpoint>`` with MLflow's own HTTP client and ``creds``
        (from :meth:`_rest_creds`: credentials, TLS settings), parsed with orjson."""
        import orjson
        from mlflow.exceptions import MlflowException
        from mlflow.utils.rest_utils import http_request, verify_rest_response

        where = f"/api/2.0/mlflow/{endpoint}"
        try:
            res = http_request(creds, where, "GET", params=params)
            verify_rest_response(res, where)
            body = orjson.loads(res.content)
        except (MlflowException, OSError, orjson.JSONDecodeError) as exc:
            raise self._unavailable(exc) from exc
        if not isinstance(body, dict):
            raise self._unavailable(ValueError(f"{where} answered {type(body).__name__}"))
        return body

    def identities(
        self, wanted: list[tuple[str, int, int | None]]
    ) -> dict[tuple[str, int], VersionIdentity]:
        """The identity of many versions at once: one MLflow search per version number.

        ``wanted`` holds ``(name, version, model_created_ms)`` (the model's creation time as
        a page of :meth:`alias_pages` reported it); a version MLflow no longer has is
        absent from the answer. Names are searched ``name IN (...)`` in groups sharing a
        version number, at most 500 a call, so checking a page of holders costs one call
        when they hold the same number, instead of two calls a model.

        Example:
            >>> gw.identities([("churn", 3, 1764670000000)])[("churn", 3)].run_id
            ... # doctest: +SKIP
            'a1b2c3...'
        """

        created = {(n, v): ms for n, v, ms in wanted}
        groups: dict[int, list[str]] = {}
        found: dict[tuple[str, int], VersionIdentity] = {}
        for name, version, _ in wanted:
            if any(c in name for c in "'\"\\"):
                if (one := self.identity(name, version)) is not None:
                    found[(name, version)] = one
            else:
                groups.setdefault(version, []).append(name)
        creds = self._rest_creds()
        for version, names in sorted(groups.items()):
            for start in range(0, len(names), 500):
                chunk = names[start : start + 500]
                where = ", ".join(f"'{n}'" for n in chunk)
                query = f"name IN ({where}) AND version_number = {int(version)}"
                for mv in self._search_versions(creds, query, len(chunk) + 1):
                    key = (mv.name, int(mv.version))
                    if key in created:
                        found[key] = VersionIdentity(
                            run_id=mv.run_id or None,
                            evidence_digest=dict(mv.tags or {}).get(EVIDENCE_DIGEST_TAG),
                            model_created_ms=created[key],
                            version_created_ms=mv.creation_timestamp,
                        )
        return found

    def _search_versions(self, creds: Any, query: str, max_results: int) -> list[Any]:
        """One page of ``search_model_versions``: entities, or the same fields from JSON
        when ``creds`` (:meth:`_rest_creds`) name an MLflow server."""
        from mlflow.exceptions import MlflowException

        if creds is not None:
            params = {"filter": query, "max_results": max_results}
            body = self._rest_get(creds, "model-versions/search", params)
            return [_version_json(mv) for mv in body.get("model_versions", ())]
        try:
            return list(self.client.search_model_versions(query, max_results=max_results))
        except (MlflowException, OSError) as exc:
            raise self._unavailable(exc) from exc

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``alias`` from ``name`` (idempotent: a missing alias or model is fine)."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.delete_registered_model_alias(name, alias)
        except MlflowException as exc:
            if not _is_not_found(exc):
                raise self._unavailable(exc) from exc
        except OSError as exc:
            raise self._unavailable(exc) from exc
        log.info("mlflow alias deleted: %s@%s", name, alias)

    def ensure_alias_webhook(self, *, name: str, url: str, secret: str) -> str:
        """Subscribe ``url`` to MLflow's alias events with ``secret``; the webhook id.

        An existing webhook with the same name is updated (url, events, secret, active),
        so a restart or a new secret never leaves two subscriptions behind.
        """
        from mlflow.exceptions import MlflowException

        try:
            existing = [w for w in self._webhooks() if w.name == name]
            if existing:
                hook = self.client.update_webhook(
                    existing[0].webhook_id,
                    url=url,
                    events=list(ALIAS_EVENTS),
                    secret=secret,
                    status="ACTIVE",
                )
                for extra in existing[1:]:
                    self.client.delete_webhook(extra.webhook_id)
            else:
                hook = self.client.create_webhook(
                    name,
                    url,
                    list(ALIAS_EVENTS),
                    description="mlops registry: alias drift",
                    secret=secret,
                )
        except MlflowException as exc:
            raise self._unavailable(exc) from exc
        except OSError as exc:
            raise self._unavailable(exc) from exc
        return hook.webhook_id

    def _webhooks(self) -> list[Any]:
        hooks, token = [], None
        while True:
            page = self.client.list_webhooks(max_results=100, page_token=token)
            hooks.extend(page)
            token = page.token
            if not token:
                return hooks

    def version_exists(self, name: str, version: int) -> bool:
        """True if the registered model version exists."""
        try:
            self._version(name, version)
        except ModelVersionNotFound:
            return False
        return True

    def get_alias(self, name: str, alias: str) -> int | None:
        """The version holding ``alias`` in MLflow, or ``None``."""
        from mlflow.exceptions import MlflowException

        try:
            return int(self.client.get_model_version_by_alias(name, alias).version)
        except MlflowException as exc:
            if _is_not_found(exc):
                return None
            raise self._unavailable(exc) from exc

    def describe_alias(self, name: str, alias: str) -> dict[str, Any]:
        """What MLflow says holds ``alias``: version, run, creator and last update time."""
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version_by_alias(name, alias)
            model = self.client.get_registered_model(name)
        except MlflowException as exc:
            if _is_not_found(exc):
                return {"version": None}
            raise self._unavailable(exc) from exc
        return {
            "version": int(mv.version),
            "run_id": mv.run_id,
            "version_user_id": mv.user_id or None,
            "model_updated_at_ms": model.last_updated_timestamp,
        }

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` at ``version`` (idempotent)."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.set_registered_model_alias(name, alias, str(version))
        except MlflowException as exc:
            if _is_not_found(exc):
                raise AliasNotFound(
                    f"Cannot set {name}@{alias} to version {version}: {exc.message}"
                ) from exc
            raise self._unavailable(exc) from exc
        except OSError as exc:
            raise self._unavailable(exc) from exc
        log.info("mlflow alias set: %s@%s -> version %s", name, alias, version)

    def fetch_evidence(self, name: str, version: int) -> EvidenceArtifact:
        """Download the evidence artifact the version's tags point to.

        Three MLflow reads: the version (its tags), its run (artifact location and the
        dataset tags) and the file itself. The gate makes this read at each request,
        approval and alias move.
        """
        from mlflow.exceptions import MlflowException

        mv = self._version(name, version)
        tags = dict(mv.tags or {})
        path, digest = tags.get(EVIDENCE_PATH_TAG), tags.get(EVIDENCE_DIGEST_TAG)
        if not path or not digest or not mv.run_id:
            raise EvidenceError(
                f"Model {name!r} version {version} has no recorded evidence "
                f"(tags {EVIDENCE_PATH_TAG!r}/{EVIDENCE_DIGEST_TAG!r} missing).",
                hint="Record it with `mlops.evidence.record(mlops.evidence.collect(...))`.",
            )
        try:
            run = self.client.get_run(mv.run_id)
        except MlflowException as exc:
            raise self._unavailable(exc) from exc
        except OSError as exc:
            raise self._unavailable(exc) from exc
        data = self._read_file(run.info.artifact_uri, path, mv.run_id)
        return EvidenceArtifact(data, digest, path, mv.run_id, _run_datasets(run.data.tags))

    def _read_file(self, artifact_uri: str, path: str, run_id: str) -> bytes:
        """One file of a run's artifacts, in one read of the artifact store.

        ``mlflow.artifacts.download_artifacts`` asks for the run and then lists the path
        to learn whether it is a folder; the run is already known here and the path names
        a file, so the store's file download (``_download_file``, the method each artifact
        repository implements) is called directly.
        """
        from mlflow.exceptions import MlflowException
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        parts = path.split("/")
        if any(p in ("", ".", "..") for p in parts) or "\\" in path:
            raise EvidenceError(
                f"Evidence path {path!r} of run {run_id} is not a plain relative path.",
                hint="Record the evidence again with `mlops.evidence.record`.",
            )
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp, parts[-1])
            try:
                repo = get_artifact_repository(artifact_uri, tracking_uri=self.tracking_uri)
                repo._download_file(path, str(local))
                return local.read_bytes()
            except (MlflowException, OSError) as exc:
                raise _unreadable(path, run_id, exc) from exc

    def _download(self, run_id: str, path: str) -> bytes:
        """One file of run ``run_id``'s artifacts (``EvidenceError`` if it cannot be read)."""
        from mlflow.exceptions import MlflowException

        try:
            artifact_uri = self.client.get_run(run_id).info.artifact_uri
        except (MlflowException, OSError) as exc:
            raise _unreadable(path, run_id, exc) from exc
        return self._read_file(artifact_uri, path, run_id)

    def load_model(self, name: str, version: int) -> Any:
        """The registered version's model, loaded as an MLflow pyfunc model (for re-scoring).

        Example:
            >>> gw.load_model("churn", 3).predict(frame)               # doctest: +SKIP
        """
        import mlflow.pyfunc
        from mlflow.artifacts import download_artifacts
        from mlflow.exceptions import MlflowException

        self._version(name, version)  # ModelVersionNotFound / RegistryUnavailable
        try:
            uri = self.client.get_model_version_download_uri(name, str(version))
            with tempfile.TemporaryDirectory(prefix="mlops-model-") as tmp:
                local = download_artifacts(
                    artifact_uri=uri, dst_path=tmp, tracking_uri=self.tracking_uri
                )
                return mlflow.pyfunc.load_model(local)
        except (MlflowException, OSError) as exc:
            raise self._unavailable(exc) from exc

    # --- lineage: who used a dataset -------------------------------------------------------
    def versions_using(self, md5: str, *, model: str = "*") -> tuple[Any, ...]:
        """The versions whose runs trained or evaluated on ``md5`` (``mlops.lineage.UsedBy``).

        Example:
            >>> used = gw.versions_using("5ba2c4a1b5c4cd5e3a3f54ea2bb1b4d1")  # doctest: +SKIP
            >>> [v.ref for v in used]                                      # doctest: +SKIP
            ['churn/2']
        """
        from mlops.lineage import versions_using

        return versions_using(md5, model=model, client=self.client)

    def recorded_md5(self, path: str, rev: str) -> str:
        """The md5 MLflow runs recorded for ``path`` at commit ``rev``.

        Example:
            >>> gw.recorded_md5("data/train.csv", "3f2a9c0d")           # doctest: +SKIP
            '5ba2c4a1b5c4cd5e3a3f54ea2bb1b4d1'
        """
        from mlops.lineage import recorded_md5

        return recorded_md5(path, rev, client=self.client)

    # --- signed decisions -------------------------------------------------------------
    def model_digest(self, name: str, version: int) -> str:
        """SHA-256 tree digest of the version's model files as MLflow stores them."""
        from mlflow.artifacts import download_artifacts
        from mlflow.exceptions import MlflowException

        from mlops.signatures import tree_digest

        try:
            uri = self._registry.get_model_version_download_uri(name, str(version))
            with tempfile.TemporaryDirectory() as tmp:
                local = download_artifacts(
                    artifact_uri=uri, dst_path=tmp, tracking_uri=self.tracking_uri
                )
                return tree_digest(local)
        except (MlflowException, OSError) as exc:
            raise self._unavailable(exc) from exc

    def attach_attestation(
        self, name: str, version: int, alias: str, digest: str, envelope: str
    ) -> None:
        """Store a signed decision in the version's run and tag the version with it.

        The envelope goes to ``mlops/attestations/<digest>.json``; the version's tag
        ``mlops.attestation.<alias>`` holds the digest (envelopes outgrow tag values).
        """
        from mlflow.exceptions import MlflowException

        mv = self._version(name, version)
        if not mv.run_id:
            raise EvidenceError(f"Model {name!r} version {version} has no run to attach to.")
        try:
            self.client.log_text(mv.run_id, envelope, f"mlops/attestations/{digest}.json")
            self._registry.set_model_version_tag(
                name, str(version), f"{ATTESTATION_TAG}.{alias}", digest
            )
        except (MlflowException, OSError) as exc:
            raise self._unavailable(exc) from exc

    # --- read-only views for the reviewer pages -------------------------------------------
    def describe_version(self, name: str, version: int) -> VersionRun:
        """The run (params, tags, dataset inputs) and logged model (flavors, signature)
        behind ``name`` version ``version``.

        Example:
            >>> gw.describe_version("churn", 3).params                  # doctest: +SKIP
            {'C': '0.5', 'model': 'svc'}
        """
        from mlflow.exceptions import MlflowException

        mv = self._version(name, version)
        model_id = getattr(mv, "model_id", None) or _model_id(mv.source or "")
        if not mv.run_id:
            return VersionRun(name, version, None, model_id=model_id)
        try:
            run = self.client.get_run(mv.run_id)
            experiment = self.client.get_experiment(run.info.experiment_id)
        except MlflowException as exc:
            if _is_not_found(exc):
                return VersionRun(name, version, mv.run_id, model_id=model_id)
            raise self._unavailable(exc) from exc
        tags = {k: v for k, v in run.data.tags.items() if k.startswith(_RUN_TAGS)}
        flavors, signature = self._model_file(model_id, mv.source or "")
        return VersionRun(
            name,
            version,
            mv.run_id,
            experiment_id=run.info.experiment_id,
            experiment_name=experiment.name if experiment else None,
            run_name=run.info.run_name,
            params=dict(run.data.params),
            tags=tags,
            datasets=tuple(_dataset_input(i) for i in (run.inputs.dataset_inputs or ())),
            flavors=flavors,
            signature=signature,
            model_id=model_id,
        )

    def _model_file(
        self, model_id: str | None, source: str
    ) -> tuple[dict[str, dict[str, Any]], tuple[dict[str, Any], ...]]:
        """Flavors and input signature from the logged model's MLmodel ({} if unreadable)."""
        import yaml
        from mlflow.artifacts import download_artifacts
        from mlflow.exceptions import MlflowException

        try:
            if model_id:
                location = self.client.get_logged_model(model_id).artifact_location
            elif source and not source.startswith("models:/"):
                location = source
            else:
                return {}, ()
            with tempfile.TemporaryDirectory() as tmp:
                local = download_artifacts(
                    artifact_uri=f"{location.rstrip('/')}/MLmodel",
                    dst_path=tmp,
                    tracking_uri=self.tracking_uri,
                )
                meta = yaml.safe_load(Path(local).read_text()) or {}
        except (MlflowException, OSError, yaml.YAMLError) as exc:
            log.warning("cannot read the MLmodel of %s: %s", model_id or source, exc)
            return {}, ()
        raw = (meta.get("signature") or {}).get("inputs") or "[]"
        try:
            inputs = tuple(c for c in json.loads(raw) if isinstance(c, dict))
        except ValueError:
            inputs = ()
        return dict(meta.get("flavors") or {}), inputs


def _unreadable(path: str, run_id: str, exc: Exception) -> EvidenceError:
    """The error for an evidence file of run ``run_id`` that could not be read."""
    return EvidenceError(
        f"Cannot download evidence {path!r} of run {run_id}: {exc}",
        hint="Check the artifact store, or record the evidence again.",
    )


def _run_datasets(tags: dict[str, str]) -> tuple[tuple[str, str], ...] | None:
    """(path, md5) of each dataset a run recorded in its ``mlops.dataset.<i>.*`` tags, or
    ``None`` if it recorded no lineage."""
    if "mlops.dataset.count" not in tags:
        return None
    count = int(tags["mlops.dataset.count"])
    return tuple(
        sorted(
            (tags.get(f"mlops.dataset.{i}.path", ""), tags.get(f"mlops.dataset.{i}.md5", ""))
            for i in range(count)
        )
    )


def _model_id(source: str) -> str | None:
    """The logged model id of a ``models:/m-...`` source (MLflow 3), else None."""
    rest = source.removeprefix("models:/")
    return rest if rest != source and rest.startswith("m-") and "/" not in rest else None


def _dataset_input(item: Any) -> dict[str, Any]:
    """One MLflow dataset input as plain values (its DVC source parsed when it is one)."""
    ds = item.dataset
    try:
        source = json.loads(ds.source) if ds.source else {}
    except ValueError:
        source = {"uri": ds.source}
    try:
        schema = json.loads(ds.schema) if ds.schema else None
    except ValueError:
        schema = None
    context = next((t.value for t in item.tags or () if t.key == "mlflow.data.context"), None)
    return {
        "name": ds.name,
        "digest": ds.digest,
        "source_type": ds.source_type,
        "source": source if isinstance(source, dict) else {"uri": str(source)},
        "schema": schema,
        "context": context,
    }


def _ms(value: Any) -> int | None:
    return int(value) if value is not None else None


def _model_aliases_json(model: dict[str, Any]) -> ModelAliases:
    """:func:`_model_aliases` of a registered model as MLflow's REST API writes it."""
    return ModelAliases(
        name=model["name"],
        created_ms=_ms(model.get("creation_timestamp")),
        aliases={a["alias"]: int(a["version"]) for a in model.get("aliases", ())},
        updated_ms=_ms(model.get("last_updated_timestamp")),
    )


@dataclass(frozen=True)
class _VersionFields:
    """The fields :meth:`MlflowGateway.identities` reads of a model version."""

    name: str
    version: str
    run_id: str | None
    creation_timestamp: int | None
    tags: dict[str, str]


def _version_json(mv: dict[str, Any]) -> _VersionFields:
    return _VersionFields(
        name=mv["name"],
        version=str(mv["version"]),
        run_id=mv.get("run_id") or None,
        creation_timestamp=_ms(mv.get("creation_timestamp")),
        tags={t["key"]: t.get("value", "") for t in mv.get("tags", ())},
    )


def _model_aliases(model: Any) -> ModelAliases:
    raw = model.aliases or {}
    if not isinstance(raw, dict):  # older clients hand back a list of alias objects
        raw = {a.alias: a.version for a in raw}
    return ModelAliases(
        name=model.name,
        created_ms=model.creation_timestamp,
        aliases={alias: int(version) for alias, version in raw.items()},
        updated_ms=model.last_updated_timestamp,
    )
