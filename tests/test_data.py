"""mlops.data against a real git + DVC repository with a local remote."""

from __future__ import annotations

import json
import shutil

import pytest

from mlops import data
from mlops.data import DatasetVersion
from mlops.errors import (
    DataError,
    DataNotTrackedError,
    NotInRepoError,
    RevisionNotFound,
    StaleDataError,
)


def _dvc_md5(repo, path: str, rev: str) -> str:
    """DVC's own answer for the md5 of ``path`` at ``rev`` (not our code path)."""
    parent, _, name = path.rpartition("/")
    out = repo.dvc("ls", "--json", "--show-hash", str(repo.root), parent or ".", "--rev", rev)
    (entry,) = [e for e in json.loads(out) if e["path"] == name]
    return entry["md5"]


@pytest.fixture
def tracked(dvc_repo):
    """data/train.csv (CRLF text, so dos2unix would change its hash) tracked and pushed."""
    (dvc_repo.root / "data").mkdir()
    (dvc_repo.root / "data" / "train.csv").write_bytes(b"x,y\r\n1,2\r\n3,4\r\n")
    dvc_repo.dvc("add", "-q", "data/train.csv")
    rev = dvc_repo.commit("v1 of train")
    dvc_repo.dvc("push", "-q")
    return dvc_repo, rev


def test_version_reads_dvc_file_at_head(tracked):
    repo, rev = tracked
    ds = data.version("data/train.csv")
    assert ds.path == "data/train.csv"
    assert ds.rev == rev
    assert ds.md5 == _dvc_md5(repo, "data/train.csv", rev)
    assert ds.remote == str(repo.remote)
    assert ds.repo == str(repo.root)
    assert ds.size == len(b"x,y\r\n1,2\r\n3,4\r\n")
    assert ds.uri == f"data/train.csv@{rev}"
    assert DatasetVersion.from_dict(json.loads(json.dumps(ds.to_dict()))) == ds
    assert "data/train.csv" in str(ds) and "<table>" in ds._repr_html_()


def test_version_of_absolute_path_and_explicit_repo(tracked, tmp_path, monkeypatch):
    repo, rev = tracked
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLOPS_DVC_ROOT")
    assert data.version(repo.root / "data" / "train.csv").rev == rev
    assert data.version("data/train.csv", repo=repo.root).rev == rev


def test_version_of_tracked_directory(dvc_repo):
    images = dvc_repo.root / "images"
    (images / "sub").mkdir(parents=True)
    (images / "a.csv").write_text("v\n1\n")
    (images / "sub" / "b.csv").write_text("v\n2\n")
    dvc_repo.dvc("add", "-q", "images")
    rev = dvc_repo.commit("track images")
    ds = data.version("images")
    assert ds.md5.endswith(".dir") and ds.is_dir
    assert ds.md5 == _dvc_md5(dvc_repo, "images", rev)
    assert ds.nfiles == 2
    assert sorted(data.read_dataframe(ds)["v"]) == [1, 2]
    (images / "sub" / "b.csv").write_text("v\n3\n")
    with pytest.raises(StaleDataError, match="'images' changed since it was versioned"):
        data.version("images")
    with pytest.raises(DataNotTrackedError, match="inside the tracked directory 'images'"):
        data.version("images/a.csv")


def test_version_of_pipeline_output_from_dvc_lock(dvc_repo):
    (dvc_repo.root / "dvc.yaml").write_text(
        "stages:\n  make:\n    cmd: mkdir -p out && printf 'a\\n1\\n' > out/made.csv\n"
        "    outs:\n      - out/made.csv\n"
    )
    dvc_repo.dvc("repro", "-q")
    rev = dvc_repo.commit("pipeline output")
    ds = data.version("out/made.csv")
    assert ds.md5 == _dvc_md5(dvc_repo, "out/made.csv", rev)
    assert ds.rev == rev


def test_past_rev_reads_that_commit_and_skips_staleness(tracked):
    repo, rev1 = tracked
    train = repo.root / "data" / "train.csv"
    train.write_bytes(b"x,y\n5,6\n")
    repo.dvc("add", "-q", "data/train.csv")
    rev2 = repo.commit("v2 of train")
    repo.dvc("push", "-q")
    v1 = data.version("data/train.csv", rev=rev1)
    v2 = data.version("data/train.csv")
    assert (v1.rev, v2.rev) == (rev1, rev2)
    assert v1.md5 == _dvc_md5(repo, "data/train.csv", rev1) != v2.md5
    assert list(data.read_dataframe(v1)["x"]) == [1, 3]
    assert list(data.read_dataframe(v2)["x"]) == [5]
    assert list(data.read_dataframe("data/train.csv", rev=rev1)["y"]) == [2, 4]
    with data.open(v1) as f:
        assert f.readline().strip() == "x,y"
    train.write_bytes(b"x,y\n7,8\n")  # dirty workspace: a past rev does not care
    assert data.version("data/train.csv", rev=rev1) == v1


def test_pinned_rev_is_read_from_the_remote_when_the_cache_is_empty(tracked):
    repo, _ = tracked
    ds = data.version("data/train.csv")
    shutil.rmtree(repo.root / ".dvc" / "cache")
    assert list(data.read_dataframe(ds)["x"]) == [1, 3]


def test_stale_workspace_is_refused(tracked):
    repo, _ = tracked
    (repo.root / "data" / "train.csv").write_bytes(b"x,y\r\n1,2\r\n3,5\r\n")
    with pytest.raises(StaleDataError, match=r"'data/train.csv' changed since it was versioned"):
        data.version("data/train.csv")


def test_crlf_file_hash_is_plain_md5(tracked):
    """DVC 3 hashes the bytes: converting CRLF to LF must count as a change."""
    repo, _ = tracked
    (repo.root / "data" / "train.csv").write_bytes(b"x,y\n1,2\n3,4\n")
    with pytest.raises(StaleDataError, match="workspace md5 is"):
        data.version("data/train.csv")


def test_added_but_not_committed_is_refused(tracked):
    repo, _ = tracked
    (repo.root / "data" / "train.csv").write_bytes(b"x,y\n9,9\n")
    repo.dvc("add", "-q", "data/train.csv")
    with pytest.raises(StaleDataError, match="HEAD recorded"):
        data.version("data/train.csv")
    (repo.root / "data" / "new.csv").write_text("a\n1\n")
    repo.dvc("add", "-q", "data/new.csv")
    with pytest.raises(DataNotTrackedError, match=r"data/new.csv.dvc exists .* not in git"):
        data.version("data/new.csv")


def test_untracked_path(tracked):
    repo, _ = tracked
    (repo.root / "notes.txt").write_text("hello")
    with pytest.raises(DataNotTrackedError, match=r"'notes\.txt' is not tracked by DVC"):
        data.version("notes.txt")
    with pytest.raises(DataNotTrackedError, match="is not tracked by DVC"):
        data.version("nope/missing.csv")


def test_path_outside_any_repo(tmp_path, monkeypatch):
    monkeypatch.delenv("MLOPS_DVC_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "loose.csv").write_text("a\n1\n")
    with pytest.raises(NotInRepoError, match="No DVC repository found"):
        data.version(tmp_path / "loose.csv")
    with pytest.raises(NotInRepoError, match="No DVC repository found"):
        data.version("loose.csv")


def test_path_outside_the_given_repo(tracked, tmp_path):
    repo, _ = tracked
    with pytest.raises(NotInRepoError, match="is outside the DVC repository"):
        data.version(tmp_path / "elsewhere.csv", repo=repo.root)


def test_unknown_revision(tracked):
    with pytest.raises(RevisionNotFound, match="'no-such-branch' does not exist"):
        data.version("data/train.csv", rev="no-such-branch")
    with pytest.raises(RevisionNotFound, match="'deadbeef' does not exist"):
        data.read_dataframe("data/train.csv", rev="deadbeef")


def test_repo_without_commits(tmp_path, monkeypatch):
    from tests.conftest import BIN, run

    run(["git", "init", "-q"], cwd=tmp_path)
    run([str(BIN / "dvc"), "init", "-q"], cwd=tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLOPS_DVC_ROOT", str(tmp_path))
    with pytest.raises(RevisionNotFound, match="has no commits yet"):
        data.version("data.csv")


def test_read_without_remote_or_cache_names_the_fix(tracked):
    repo, _ = tracked
    ds = data.version("data/train.csv")
    shutil.rmtree(repo.root / ".dvc" / "cache")
    shutil.rmtree(repo.remote)
    repo.remote.mkdir()
    with pytest.raises(DataError, match=r"data/train\.csv") as info:
        data.read_dataframe(ds)
    assert info.value.hint


def test_dvc_project_in_a_subfolder_of_the_git_repo(tmp_path, monkeypatch):
    from tests.conftest import BIN, run

    run(["git", "init", "-q"], cwd=tmp_path)
    project = tmp_path / "ml"
    project.mkdir()
    run([str(BIN / "dvc"), "init", "-q", "--subdir"], cwd=project)
    (project / "data.csv").write_text("a\n1\n")
    run([str(BIN / "dvc"), "add", "-q", "data.csv"], cwd=project)
    run(["git", "add", "-A"], cwd=tmp_path)
    run(["git", "commit", "-q", "-m", "subdir project"], cwd=tmp_path)
    monkeypatch.chdir(project)
    monkeypatch.delenv("MLOPS_DVC_ROOT", raising=False)
    ds = data.version("data.csv")
    assert (ds.path, ds.repo) == ("data.csv", str(project))
    assert ds.rev == run(["git", "rev-parse", "HEAD"], cwd=tmp_path).strip()
    assert list(data.read_dataframe(ds)["a"]) == [1]
