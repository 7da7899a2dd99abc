"""The reviewer pages of a ladder: the soak countdown and the expiring approvals on the
request page, and the policy history with each kept policy's text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mlops.policy import parse_policy
from tests.server.conftest import LADDER, Clock
from tests.web.conftest import MlflowModel, issue_tokens, new_candidate, web_app
from tests.web.test_pages import Site


@pytest.fixture
def ladder_site(tmp_path: Path, mlflow_model: MlflowModel) -> Iterator[tuple[Site, Clock, Path]]:
    policy = tmp_path / "promotion-policy.yaml"
    policy.write_text(LADDER)
    clock = Clock()
    app = web_app(
        f"sqlite:///{tmp_path / 'registry.db'}", policy, mlflow_model.tracking_uri, clock=clock
    )
    with TestClient(app) as client:
        yield Site(client, issue_tokens(app), mlflow_model), clock, policy


def _ask(site: Site, name: str, version: int, digest: str, target: str) -> dict:
    body = {"model": name, "version": version, "target": target, "evidence_digest": digest}
    res = site.client.post("/v1/promotions", json=body, headers=site.h("rita"))
    assert res.status_code == 201, res.text
    return res.json()


def test_the_request_page_counts_the_soak_down_and_warns_of_expiring_approvals(
    ladder_site: tuple[Site, Clock, Path], name: str
) -> None:
    site, clock, _ = ladder_site
    cand = new_candidate(site.model, name)
    assert _ask(site, name, cand.version, cand.digest, "staging")["state"] == "promoted"
    req = _ask(site, name, cand.version, cand.digest, "production")
    site.login("ann")

    page = site.client.get(f"/ui/requests/{req['id']}").text
    until = req["soak"]["until"]
    assert f'<span class="countdown" data-until="{until}">2s</span> left' in page
    assert "soak: held staging for 0s of 2s: 2s left" in page  # in "Blocked by"
    assert '<script src="/ui/static/countdown.js" defer></script>' in page
    assert site.client.get("/ui/static/countdown.js").status_code == 200
    digest = parse_policy(LADDER).digest
    assert f'href="/ui/policy/{digest}"><code>{digest[:12]}</code>' in page

    clock.advance(seconds=3)
    page = site.client.get(f"/ui/requests/{req['id']}").text
    assert 'id="soak">done: held staging since' in page
    form = {"comment": "soaked", "csrf_token": site.csrf(f"/ui/requests/{req['id']}")}
    site.client.post(f"/ui/requests/{req['id']}/approve", data=form)

    clock.advance(minutes=50)
    page = site.client.get(f"/ui/requests/{req['id']}").text
    assert 'id="expiring"' in page
    assert "ann's approval stops counting at" in page
    assert '">10m 0s</span> left' in page


def test_approving_during_the_soak_shows_why_on_the_page(
    ladder_site: tuple[Site, Clock, Path], name: str
) -> None:
    site, _, _ = ladder_site
    cand = new_candidate(site.model, name)
    _ask(site, name, cand.version, cand.digest, "staging")
    rid = _ask(site, name, cand.version, cand.digest, "production")["id"]
    site.login("ann")
    form = {"comment": "early", "csrf_token": site.csrf(f"/ui/requests/{rid}")}

    res = site.client.post(f"/ui/requests/{rid}/approve", data=form)

    assert res.status_code == 409
    assert "is soaking" in res.text and "2s left" in res.text
    assert site.client.get(f"/v1/promotions/{rid}").json()["approvals"] == []


def test_the_policy_pages_list_every_policy_and_show_its_text(
    ladder_site: tuple[Site, Clock, Path],
) -> None:
    site, clock, policy = ladder_site
    old = parse_policy(LADDER).digest
    newer = LADDER.replace("for: 2s", "for: 1h")
    new = parse_policy(newer).digest
    clock.advance(seconds=5)
    policy.write_text(newer)
    assert site.client.post("/v1/policy/reload", headers=site.h("root")).json()["changed"]
    site.login("ann")

    page = site.client.get("/ui/policy").text

    assert f'In force: <a href="/ui/policy/{new}"><code>{new[:12]}</code>' in page
    rows = [line for line in page.splitlines() if "data-digest=" in line]
    assert [r.split('data-digest="')[1][:64] for r in rows] == [new, old]
    assert "in force</span>" in rows[0] and "in force</span>" not in rows[1]
    kept = site.client.get(f"/ui/policy/{old[:12]}").text
    assert "requires: {held: staging, for: 2s}" in kept
    assert 'id="status">no longer in force' in kept
    assert site.client.get("/ui/policy/zzzz").status_code == 422
    assert site.client.get("/ui/policy/00000000").status_code == 404
