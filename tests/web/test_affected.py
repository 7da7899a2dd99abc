"""The "affected by data" page: reached from the data shown on a request, it lists the
versions that used the dataset, the protected aliases they hold and each rollback plan
(the blast-radius world of ``tests._blast``; real DVC and MLflow; SQLite and PostgreSQL)."""

from __future__ import annotations

import re
from html import unescape

from registry_server.web import mount
from tests import _blast
from tests._blast import World
from tests.server.conftest import Server
from tests.server.conftest import server as server  # the gate, with its users and clock
from tests.server.conftest import server_settings as server_settings  # what it runs with
from tests.web.conftest import SECRET

blast_world = _blast.blast_world
blast_models = _blast.blast_models
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _text(html: str, element_id: str) -> str:
    """The text of the element with ``element_id`` (tags dropped, spaces folded)."""
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</(table|dl|p)>', html, re.S)
    assert match, f"no #{element_id} on the page"
    text = " ".join(unescape(re.sub(r"<[^>]+>", " ", match.group(1))).split())
    return text.replace(" ,", ",")


def _signed_in(server: Server, user: str) -> None:
    mount(server.client.app, None, secret_key=SECRET)
    csrf = _CSRF.search(server.client.get("/ui/login").text)
    assert csrf
    form = {"token": server.tokens[user], "csrf_token": csrf.group(1), "next": "/ui/requests"}
    assert server.client.post("/ui/login", data=form, follow_redirects=False).status_code == 303


def test_affected_page_from_the_request_data(
    server: Server, blast_world: World, blast_models: dict[str, str]
) -> None:
    m1, m2, m3 = blast_models["m1"], blast_models["m2"], blast_models["m3"]
    md5 = blast_world.data["A"].md5
    listed = server.client.get("/v1/promotions", params={"model": m1}).json()["items"]
    request_id = next(p["id"] for p in listed if p["version"] == 2)
    _signed_in(server, "ann")

    page = server.client.get(f"/ui/requests/{request_id}").text
    link = f"/ui/lineage/affected?md5={md5}"
    assert f'href="{link}"' in page

    affected = server.client.get(link).text
    assert md5 in _text(affected, "dataset")
    versions = _text(affected, "versions")
    for row in (
        f"{m1} v2 training candidate, production",
        f"{m2} v2 training -",
        f"{m2} v3 training production",
    ):
        assert row in versions, versions
    assert m3 not in versions  # m3 was trained on B
    holders = _text(affected, "holders")
    assert f"{m1}@production v2 since" in holders
    assert "v1 (1 rollback)" in holders
    assert f"{m2}@production v3 since" in holders
    assert "v1 (2 rollbacks, through v2)" in holders
    assert f'href="/ui/aliases/{m2}/production"' in affected


def test_affected_page_needs_sign_in_and_names_a_bad_md5(server: Server) -> None:
    mount(server.client.app, None, secret_key=SECRET)
    res = server.client.get("/ui/lineage/affected?md5=" + "0" * 32, follow_redirects=False)
    assert res.status_code == 303
    assert res.headers["location"].startswith("/ui/login?next=/ui/lineage/affected")

    _signed_in(server, "ann")
    nobody = server.client.get("/ui/lineage/affected?md5=" + "0" * 32).text
    assert "No registered model version trained or was evaluated on this data." in nobody
    bad = server.client.get("/ui/lineage/affected?md5=xyz")
    assert bad.status_code == 422
    assert "invalid_dataset_ref" in bad.text and "&#39;xyz&#39;" in bad.text
