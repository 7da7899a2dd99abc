"""``mlops.verify``: check offline, with only the server's public key, what serves an alias.

The registry server signs every promotion and rollback (an in-toto Statement in a DSSE
envelope) and attaches it to the model version in MLflow. :func:`verify` reads it from
there and walks the chain, naming the first link that does not hold:

1. ``attestation``: the alias holder carries a signed decision for this alias;
2. ``signature``: it verifies with the public key (an edited statement never does);
3. ``alias``: it is for this model, alias and version;
4. ``model_artifact``: the version's files in MLflow hash to the signed subject;
5. ``bento``: the Bento in the local store hashes to the signed subject;
6. ``evidence``: the signed evidence digest is the one MLflow holds, and its content;
7. ``data``: the datasets (path, md5) in the evidence are the ones the run recorded and,
   where the DVC repository is at hand, the ones DVC records at that revision;
8. ``approvals``: the approvals in the statement meet the approval rules signed with it.

No registry server is asked: MLflow, the Bento store and the key file are enough. MLflow
is read without importing it where the store allows (``mlops._mlflow_reader``: a SQLite
store or an MLflow server), else through the MLflow client, with the same result.

Example:
    >>> import mlops
    >>> mlops.verify("churn@production", key="registry.pub")          # doctest: +SKIP
    Verified churn@production = v3 (promote, key 6ae16812cbd8)
"""

from __future__ import annotations

import hashlib
import html
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from mlops import _render
from mlops.errors import (
    AliasNotFound,
    AttestationMissing,
    ConfigError,
    EvidenceError,
    PackagingError,
    VerifyAliasMismatch,
    VerifyApprovalsInsufficient,
    VerifyBentoMismatch,
    VerifyDataMismatch,
    VerifyEvidenceMismatch,
    VerifyKeyInvalid,
    VerifyModelArtifactMismatch,
    VerifySignatureInvalid,
)
from mlops.signatures import IN_TOTO, PREDICATE_TYPE, STATEMENT_TYPE, key_id, open_sealed

__all__ = ["ATTESTATION_TAG", "Verification", "verify"]

ATTESTATION_TAG = "mlops.attestation"
LINKS = (
    "attestation",
    "signature",
    "alias",
    "model_artifact",
    "bento",
    "evidence",
    "data",
    "approvals",
)


@dataclass(frozen=True)
class Verification:
    """What :func:`verify` checked: every link held (else it raised, naming the link).

    Example:
        >>> v = Verification("churn", "production", 3, "promote", "ab" * 32, "cd" * 32,
        ...                  (("signature", "key cdcd"),))
        >>> str(v).splitlines()[0]
        'Verified churn@production = v3 (promote, key cdcdcdcdcdcd)'
    """

    model: str
    alias: str
    version: int
    action: str
    statement_digest: str
    key_id: str
    links: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        head = (
            f"Verified {self.model}@{self.alias} = v{self.version} "
            f"({self.action}, key {self.key_id[:12]})"
        )
        return "\n".join([head, *(f"  {_render.badge(True)} {n:15} {d}" for n, d in self.links)])

    def _repr_html_(self) -> str:
        rows = [[_render.badge(True, html_out=True), n, html.escape(d)] for n, d in self.links]
        table = _render.html_table(["", "link", "checked"], rows, raw_columns=[0])
        title = f"Verified {self.model}@{self.alias} = v{self.version}"
        return _render.html_section(title, table)


def verify(ref: str, *, key: str | os.PathLike[str], bento: bool = True) -> Verification:
    """Check the signed decision behind ``NAME@ALIAS`` against MLflow, DVC and the Bento store.

    ``key`` is the server's public key: a PEM file (``mlops key create`` printed it,
    ``GET /v1/keys`` serves it) or the PEM text. ``bento=False`` skips the Bento link where
    no Bento store is at hand. Raises a :class:`~mlops.errors.VerificationFailed` subclass
    whose ``details["link"]`` names the first link that fails.

    Example:
        >>> verify("churn@production", key="registry.pub").version          # doctest: +SKIP
        3
    """
    from mlops._mlflow_reader import MlflowReads, Unanswered, open_reader

    _split(ref)  # a malformed reference fails before the key is read
    public = _read_key(key)
    with open_reader() as reads:
        try:
            return _verify(ref, public, bento, reads)
        except Unanswered:
            pass  # the fast reader met something only MLflow reads: check through MLflow
    return _verify(ref, public, bento, MlflowReads())


def _verify(ref: str, public: str, bento: bool, reads: Any) -> Verification:
    """The chain, with MLflow read through ``reads`` (see ``mlops._mlflow_reader``)."""
    name, alias = _split(ref)
    try:
        mv = reads.resolve(name, alias)
    except AliasNotFound as exc:
        raise AttestationMissing(f"{ref}: {exc.message}") from exc
    envelope, tag = _envelope(mv, alias, ref, reads)
    payload = open_sealed(envelope, public, IN_TOTO)
    if hashlib.sha256(payload).hexdigest() != tag:
        raise VerifySignatureInvalid(
            f"The statement attached to {ref} hashes to another digest than its tag {tag}."
        )
    statement = _statement(payload, ref)
    predicate = statement["predicate"]
    links = [("attestation", f"{predicate['action']} at {predicate['at']}")]
    links.append(("signature", f"Ed25519 key {key_id(public)[:16]}"))
    links.append(("alias", _check_alias(predicate, name, alias, mv.version)))
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    links.append(("model_artifact", _check_model(mv, subjects, reads)))
    bundle = _check_evidence(mv, predicate, reads)
    if bento:
        links.append(("bento", _check_bento(subjects, bundle)))
    links.append(("evidence", f"sha256 {predicate['evidence']['digest'][:16]}"))
    links.append(("data", _check_data(mv, bundle, reads)))
    links.append(("approvals", _check_approvals(predicate)))
    order = {n: i for i, n in enumerate(LINKS)}
    return Verification(
        model=name,
        alias=alias,
        version=mv.version,
        action=predicate["action"],
        statement_digest=tag,
        key_id=key_id(public),
        links=tuple(sorted(links, key=lambda item: order[item[0]])),
    )


# --- reading ------------------------------------------------------------------------------
def _split(ref: str) -> tuple[str, str]:
    name, sep, alias = ref.removeprefix("models:/").rpartition("@")
    if not sep or not name or not alias:
        raise ConfigError(f"Expected NAME@ALIAS, got {ref!r}.", hint="e.g. churn@production")
    return name, alias


def _read_key(key: str | os.PathLike[str]) -> str:
    text = str(key)
    if text.lstrip().startswith("-----BEGIN"):
        return text
    path = Path(key)
    if not path.is_file():
        raise VerifyKeyInvalid(f"The public key file {text!r} does not exist.")
    return path.read_text()


def _envelope(mv: Any, alias: str, ref: str, reads: Any) -> tuple[dict[str, Any], str]:
    tag = (mv.tags or {}).get(f"{ATTESTATION_TAG}.{alias}")
    if not tag or not mv.run_id:
        raise AttestationMissing(
            f"{ref} (version {mv.version}) carries no signed decision for {alias!r} "
            f"(no {ATTESTATION_TAG}.{alias} tag): the alias was not set by the registry server."
        )
    try:
        data = reads.artifact(mv.run_id, f"mlops/attestations/{tag}.json")
        return json.loads(data), tag
    except (EvidenceError, ValueError) as exc:
        raise AttestationMissing(
            f"The signed decision {tag} of {ref} cannot be read from run {mv.run_id}: {exc}"
        ) from exc


def _statement(payload: bytes, ref: str) -> dict[str, Any]:
    try:
        statement = json.loads(payload)
        ok = (
            statement["_type"] == STATEMENT_TYPE
            and statement["predicateType"] == PREDICATE_TYPE
            and isinstance(statement["subject"], list)
        )
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise VerifySignatureInvalid(f"The signed payload of {ref} is not a decision statement.")
    return statement


# --- the links ----------------------------------------------------------------------------
def _check_alias(predicate: dict[str, Any], name: str, alias: str, version: int) -> str:
    move = predicate["alias"]
    signed = (move["model"], move["alias"], move["version"])
    if signed != (name, alias, version):
        raise VerifyAliasMismatch(
            f"MLflow says {name}@{alias} is version {version}, but the signed decision put "
            f"{move['model']}@{move['alias']} on version {move['version']}."
        )
    previous = move.get("previous_version")
    return f"v{version}" + (f", after v{previous}" if previous is not None else ", first holder")


def _check_model(mv: Any, subjects: dict[str, str], reads: Any) -> str:
    signed = subjects.get(f"models:/{mv.name}/{mv.version}")
    if signed is None:
        raise VerifyModelArtifactMismatch(f"The signed decision names no files of {mv.uri}.")
    actual = reads.model_digest(mv)
    if actual != signed:
        raise VerifyModelArtifactMismatch(
            f"The files of {mv.uri} in MLflow hash to {actual[:16]}, but {signed[:16]} was "
            "approved: the model artifact was swapped after the decision."
        )
    return f"sha256 {actual[:16]} ({mv.download_uri})"


def _check_evidence(mv: Any, predicate: dict[str, Any], reads: Any) -> Any:
    from mlops import evidence

    digest = predicate["evidence"]["digest"]
    tagged = (mv.tags or {}).get(evidence.DIGEST_TAG)
    if digest != tagged:
        raise VerifyEvidenceMismatch(
            f"{mv.name} v{mv.version} is tagged with evidence {tagged}, but the decision was "
            f"signed for {digest}: the evidence was recorded again after approval."
        )
    try:
        return reads.evidence(mv, digest)
    except EvidenceError as exc:
        raise VerifyEvidenceMismatch(f"The signed evidence {digest}: {exc.message}") from exc


def _check_bento(subjects: dict[str, str], bundle: Any) -> str:
    from mlops.packaging import bento_digest

    found = [(n.removeprefix("bento:"), d) for n, d in subjects.items() if n.startswith("bento:")]
    if not found:
        raise VerifyBentoMismatch("The signed decision names no Bento.")
    (tag, signed) = found[0]
    if (bundle.package or {}).get("bento_tag") != tag:
        raise VerifyBentoMismatch(f"The evidence names another Bento than the signed {tag!r}.")
    try:
        actual = bento_digest(tag)
    except PackagingError as exc:
        raise VerifyBentoMismatch(exc.message) from exc
    if actual != signed:
        raise VerifyBentoMismatch(
            f"Bento {tag!r} in the local store hashes to {actual[:16]}, but {signed[:16]} was "
            "approved: it was changed or rebuilt after the decision."
        )
    return f"{tag} sha256 {actual[:16]}"


def _check_data(mv: Any, bundle: Any, reads: Any) -> str:
    claimed = sorted((d.get("path"), d.get("md5")) for d in bundle.lineage.get("datasets", []))
    recorded = sorted((d.path, d.md5) for d in reads.datasets(mv))
    if recorded != claimed:
        raise VerifyDataMismatch(
            f"The evidence names data {claimed}, but the run in MLflow recorded {recorded}."
        )
    at_hand = [_dvc_md5_matches(d) for d in bundle.lineage.get("datasets", [])]
    checked = sum(1 for ok in at_hand if ok)
    return f"{len(claimed)} dataset(s) as MLflow recorded; {checked} checked against DVC"


def _dvc_md5_matches(dataset: dict[str, Any]) -> bool:
    """True when DVC records the same md5 at the revision; False if the repo is not here."""
    from mlops import data

    repo, rev = dataset.get("repo"), dataset.get("rev")
    if not repo or not rev or not Path(repo).is_dir():
        return False
    try:
        found = data.version(dataset["path"], repo=repo, rev=rev).md5
    except Exception as exc:  # a repository at hand that cannot answer is a failure
        raise VerifyDataMismatch(
            f"DVC cannot read {dataset['path']!r} at {rev} in {repo}: {exc}"
        ) from exc
    if found != dataset.get("md5"):
        raise VerifyDataMismatch(
            f"DVC records md5 {found} for {dataset['path']!r} at {rev}, but the evidence "
            f"names {dataset.get('md5')}."
        )
    return True


def _check_approvals(predicate: dict[str, Any]) -> str:
    from mlops.policy import Approvals, TargetPolicy, evaluate_approvals

    rules = predicate["policy"].get("approvals")
    if rules is None:
        return "no approval rules for this target"
    ttl = rules.get("ttl_seconds")
    policy = TargetPolicy(
        approvals=Approvals(
            count=rules["count"],
            roles=tuple(rules["roles"]),
            exclude_requester=rules["exclude_requester"],
            distinct=rules["distinct"],
            ttl=timedelta(seconds=ttl) if ttl is not None else None,
        )
    )
    request = predicate.get("request") or {}
    records = [
        (a["user"], tuple(a["roles"]), a["decision"], a["digest"], datetime.fromisoformat(a["at"]))
        for a in predicate.get("approvals", [])
    ]
    at = predicate["policy"].get("evaluated_at") or predicate["at"]
    tally = evaluate_approvals(
        policy,
        records,
        requester=request.get("requester", ""),
        digest=predicate["evidence"]["digest"],
        now=datetime.fromisoformat(at),
    )
    if not tally.quorum:
        why = "; ".join(f"{u}: {r}" for u, r in tally.ignored) or "none given"
        raise VerifyApprovalsInsufficient(
            f"The signed approvals reach {tally.have} of the {tally.need} the signed policy "
            f"({predicate['policy']['digest'][:12]}) requires; ignored: {why}."
        )
    return f"{tally.have}/{tally.need} by {', '.join(tally.counted) or 'nobody needed'}"
