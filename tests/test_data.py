"""mlops.data against a real git + DVC repository with a local remote."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from mlops import data
from mlops.data import DatasetVersion
from mlops.errors import (
    ConfigError,
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


# --- uncommitted workspace records (a stage output inside a running `dvc repro`) -------
MAKE_STAGE = (
    "stages:\n  make:\n    cmd: mkdir -p out && printf '{body}' > out/made.csv\n"
    "    outs:\n      - out/made.csv\n"
)


def _lock_md5(repo, path: str) -> str:
    import yaml

    lock = yaml.safe_load((repo.root / "dvc.lock").read_text())
    (out,) = [o for st in lock["stages"].values() for o in st["outs"] if o["path"] == path]
    return out["md5"]


def test_workspace_version_of_a_stage_output_before_it_is_committed(dvc_repo):
    (dvc_repo.root / "dvc.yaml").write_text(MAKE_STAGE.format(body="a\\n1\\n2\\n"))
    dvc_repo.dvc("repro", "-q")  # dvc.lock now records out/made.csv, nothing committed
    head = dvc_repo.git("rev-parse", "HEAD")
    with pytest.raises(DataNotTrackedError, match=r"'out/made\.csv' is not tracked by DVC at rev"):
        data.version("out/made.csv")

    ds = data.version("out/made.csv", workspace=True)

    assert (ds.path, ds.md5, ds.rev, ds.committed) == (
        "out/made.csv",
        _lock_md5(dvc_repo, "out/made.csv"),
        head,
        False,
    )
    assert (ds.remote, ds.repo, ds.size) == (str(dvc_repo.remote), str(dvc_repo.root), 6)
    assert ds.to_dict()["committed"] is False
    assert DatasetVersion.from_dict(json.loads(json.dumps(ds.to_dict()))) == ds
    assert "uncommitted" in str(ds) and "committed" in ds._repr_html_()
    assert list(data.read_dataframe(ds)["a"]) == [1, 2]
    with data.open(ds) as f:
        assert f.read() == "a\n1\n2\n"

    rev = dvc_repo.commit("pipeline output")
    again = data.version("out/made.csv", workspace=True)
    assert again == data.version("out/made.csv")
    assert (again.committed, again.rev, again.md5) == (True, rev, ds.md5)
    assert set(again.to_dict()) == {"path", "md5", "rev", "remote", "repo", "size", "nfiles"}


def test_workspace_version_on_a_later_run_is_the_new_output_not_heads(dvc_repo):
    (dvc_repo.root / "dvc.yaml").write_text(MAKE_STAGE.format(body="a\\n1\\n"))
    dvc_repo.dvc("repro", "-q")
    rev = dvc_repo.commit("run 1")
    first = data.version("out/made.csv")
    (dvc_repo.root / "dvc.yaml").write_text(MAKE_STAGE.format(body="a\\n7\\n"))
    dvc_repo.dvc("repro", "-q")
    with pytest.raises(StaleDataError, match="HEAD recorded " + first.md5):
        data.version("out/made.csv")

    second = data.version("out/made.csv", workspace=True)

    assert second.md5 == _lock_md5(dvc_repo, "out/made.csv") != first.md5
    assert (second.rev, second.committed) == (rev, False)
    assert list(data.read_dataframe(second)["a"]) == [7]
    assert list(data.read_dataframe(first)["a"]) == [1]  # committed: read at its rev


def test_workspace_version_refuses_data_that_no_longer_matches_its_record(dvc_repo):
    (dvc_repo.root / "dvc.yaml").write_text(MAKE_STAGE.format(body="a\\n1\\n"))
    dvc_repo.dvc("repro", "-q")
    assert data.version("out/made.csv", workspace=True).committed is False
    made = dvc_repo.root / "out" / "made.csv"
    made.write_text("a\n5\n")
    with pytest.raises(
        StaleDataError, match=r"'out/made\.csv' changed .* the workspace dvc\.lock recorded"
    ) as info:
        data.version("out/made.csv", workspace=True)
    assert "dvc repro" in info.value.hint
    made.unlink()
    with pytest.raises(StaleDataError, match=r"recorded in the workspace dvc\.lock .* missing"):
        data.version("out/made.csv", workspace=True)


def test_uncommitted_version_is_read_by_md5_from_the_workspace_else_the_cache(dvc_repo):
    (dvc_repo.root / "dvc.yaml").write_text(MAKE_STAGE.format(body="a\\n1\\n"))
    dvc_repo.dvc("repro", "-q")
    ds = data.version("out/made.csv", workspace=True)
    made = dvc_repo.root / "out" / "made.csv"
    made.write_text("a\n5\n")  # the workspace moved on; `dvc repro` cached the version
    assert list(data.read_dataframe(ds)["a"]) == [1]
    with data.open(ds) as f:
        assert f.read() == "a\n1\n"
    shutil.rmtree(dvc_repo.root / ".dvc" / "cache")
    gone = rf"uncommitted version of 'out/made\.csv' \(md5 {ds.md5}\) is neither in the work"
    with pytest.raises(StaleDataError, match=gone + r".*has md5 [0-9a-f]{32} now") as info:
        data.read_dataframe(ds)
    assert "dvc push" in info.value.hint
    made.unlink()
    with pytest.raises(StaleDataError, match=gone + r".*the file is missing"), data.open(ds):
        pass


def test_workspace_version_of_an_added_file_and_directory_not_committed(tracked):
    repo, rev = tracked
    (repo.root / "data" / "train.csv").write_bytes(b"x,y\n9,9\n")
    repo.dvc("add", "-q", "data/train.csv")
    ds = data.version("data/train.csv", workspace=True)
    assert (ds.rev, ds.committed, ds.size) == (rev, False, 8)
    assert ds.md5 == hashlib.md5(b"x,y\n9,9\n").hexdigest()
    assert list(data.read_dataframe(ds)["x"]) == [9]

    images = repo.root / "images"
    (images / "sub").mkdir(parents=True)
    (images / "a.csv").write_text("v\n1\n")
    (images / "sub" / "b.csv").write_text("v\n2\n")
    repo.dvc("add", "-q", "images")
    folder = data.version("images", workspace=True)
    assert folder.is_dir and folder.nfiles == 2 and not folder.committed
    assert sorted(data.read_dataframe(folder)["v"]) == [1, 2]
    (images / "a.csv").write_text("v\n9\n")  # still readable: dvc add cached every file
    (images / "notes.txt").write_text("not data")
    assert sorted(data.read_dataframe(folder)["v"]) == [1, 2]
    with pytest.raises(DataError, match="'images' is a tracked directory; open"), data.open(folder):
        pass
    with pytest.raises(DataNotTrackedError, match="inside the tracked directory 'images' at the"):
        data.version("images/a.csv", workspace=True)


def test_workspace_version_names_untracked_paths_and_refuses_a_rev(tracked):
    with pytest.raises(
        DataNotTrackedError, match=r"'notes\.txt' is not tracked by DVC at the work"
    ):
        data.version("notes.txt", workspace=True)
    with pytest.raises(ConfigError, match=r"rev= or workspace=True, not both \(got rev='HEAD'\)"):
        data.version("data/train.csv", rev="HEAD", workspace=True)


def test_committed_flag_reads_back_from_json_and_from_tag_strings():
    base = {"path": "d.csv", "md5": "0" * 32, "rev": "a" * 40, "remote": None, "repo": "/r"}
    assert DatasetVersion.from_dict(base).committed is True
    assert DatasetVersion.from_dict({**base, "committed": False}).committed is False
    assert DatasetVersion.from_dict({**base, "committed": "False"}).committed is False
    assert DatasetVersion.from_dict({**base, "committed": "True"}).committed is True
    assert "committed" not in DatasetVersion.from_dict(base).to_dict()


# --- fetching by md5 from the remote (what the registry server's verifier does) -----------
def test_fetch_by_md5_reads_a_file_and_a_directory_from_the_remote_alone(dvc_repo, tmp_path):
    (dvc_repo.root / "images" / "sub").mkdir(parents=True)
    (dvc_repo.root / "images" / "a.csv").write_text("v\n1\n")
    (dvc_repo.root / "images" / "sub" / "b.csv").write_text("v\n2\n")
    (dvc_repo.root / "train.csv").write_bytes(b"x,y\r\n1,2\r\n")
    dvc_repo.dvc("add", "-q", "images", "train.csv")
    dvc_repo.commit("track")
    dvc_repo.dvc("push", "-q")
    shutil.rmtree(dvc_repo.root / ".dvc" / "cache")  # only the remote has the objects
    folder, single = data.version("images"), data.version("train.csv")

    files = data.fetch(folder.md5, remote=str(dvc_repo.remote), to=tmp_path, name="images")
    one = data.fetch(single.md5, remote=str(dvc_repo.remote), to=tmp_path, name="train.csv")

    assert sorted(name for _, name in files) == ["images/a.csv", "images/sub/b.csv"]
    assert sorted(data.read_fetched(files)["v"]) == [1, 2]
    assert one[0][0].read_bytes() == b"x,y\r\n1,2\r\n"  # the bytes, as DVC hashed them


def test_fetch_refuses_a_missing_or_changed_object_naming_it(tracked, tmp_path):
    repo, _ = tracked
    ds = data.version("data/train.csv")
    missing = "0123456789abcdef0123456789abcdef"
    with pytest.raises(data.DataNotInRemote, match=f"no object for 'x.csv' \\(md5 {missing}\\)"):
        data.fetch(missing, remote=str(repo.remote), to=tmp_path, name="x.csv")
    obj = repo.remote / "files" / "md5" / ds.md5[:2] / ds.md5[2:]
    obj.chmod(0o644)
    obj.write_bytes(b"x,y\r\n9,9\r\n")
    changed = r"hashes to [0-9a-f]{32}, not its md5 [0-9a-f]{32}: the remote's copy was changed"
    with pytest.raises(DataError, match=changed):
        data.fetch(ds.md5, remote=str(repo.remote), to=tmp_path / "again", name=ds.path)
    with pytest.raises(DataError, match="32 lowercase hex characters"):
        data.fetch("../../etc/passwd", remote=str(repo.remote), to=tmp_path)


# --- pushing by md5 to the remote (before a request the server verifies) -----------------
def _remote_objects(repo) -> set[str]:
    root = repo.remote / "files" / "md5"
    return {p.parent.name + p.name for p in root.glob("*/*")} if root.is_dir() else set()


def test_push_sends_exactly_the_named_objects_and_a_directory_with_its_files(dvc_repo, tmp_path):
    (dvc_repo.root / "images" / "sub").mkdir(parents=True)
    (dvc_repo.root / "images" / "a.csv").write_text("v\n1\n")
    (dvc_repo.root / "images" / "sub" / "b.csv").write_text("v\n2\n")
    (dvc_repo.root / "train.csv").write_text("x,y\n1,2\n")
    (dvc_repo.root / "other.csv").write_text("x,y\n3,4\n")
    dvc_repo.dvc("add", "-q", "images", "train.csv", "other.csv")
    dvc_repo.commit("track, push nothing")
    folder, single, other = (
        data.version("images"),
        data.version("train.csv"),
        data.version("other.csv"),
    )

    assert data.push([single.md5, folder.md5], repo=dvc_repo.root) == 4  # 1 + manifest + 2
    assert data.push([single.md5, folder.md5], repo=dvc_repo.root) == 0  # already there

    held = _remote_objects(dvc_repo)
    assert {single.md5, folder.md5} <= held and other.md5 not in held and len(held) == 4
    # what the server's verifier fetches with the remote alone
    files = data.fetch(folder.md5, remote=str(dvc_repo.remote), to=tmp_path, name="images")
    assert sorted(data.read_fetched(files)["v"]) == [1, 2]
    # DVC agrees: only other.csv is still to push
    status = dvc_repo.dvc("status", "-c", "--json")
    assert "other.csv" in status and "train.csv" not in status and "images" not in status


def test_push_of_data_the_cache_lacks_names_it_and_sends_nothing(tracked, tmp_path):
    repo, _ = tracked
    shutil.rmtree(repo.remote)
    missing = "0123456789abcdef0123456789abcdef"
    ds = data.version("data/train.csv")
    with pytest.raises(data.DataNotInCache, match=f"no object for md5 {missing}") as err:
        data.push([ds.md5, missing], repo=repo.root)
    assert err.value.code == "data_not_in_cache" and "dvc repro" in err.value.hint
    assert not repo.remote.exists()  # all or nothing: the present object was not sent either
    with pytest.raises(DataError, match="32 lowercase hex characters"):
        data.push(["../../etc/passwd"], repo=repo.root)
    with pytest.raises(NotInRepoError, match="is not in a DVC repository"):
        data.push([ds.md5], repo=tmp_path)
    assert data.push([], repo=tmp_path) == 0  # nothing to send asks nothing of the repo
