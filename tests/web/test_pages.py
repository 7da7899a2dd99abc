"""The reviewer pages through Starlette's TestClient: sessions, CSRF, permissions, errors."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from registry_server.web._charts import metric_bars
from registry_server.web._queries import age
from tests.server.conftest import Clock
from tests.web.conftest import MlflowModel, issue_tokens, new_candidate, web_app

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Site:
    def __init__(self, client: TestClient, tokens: dict[str, str], model: MlflowModel) -> None:
        self.client, self.tokens, self.model = client, tokens, model

    def csrf(self, path: str = "/ui/login") -> str:
        match = _CSRF.search(self.client.get(path).text)
        assert match, f"no CSRF field on {path}"
        return match.group(1)

    def login(self, user: str) -> Any:
        form = {"token": self.tokens[user], "csrf_token": self.csrf(), "next": "/ui/requests"}
        return self.client.post("/ui/login", data=form, follow_redirects=False)

    def h(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def request(self, name: str) -> int:
        cand = new_candidate(self.model, name)
        body = {
            "model": name,
            "version": cand.version,
            "target": "production",
            "evidence_digest": cand.digest,
        }
        res = self.client.post("/v1/promotions", json=body, headers=self.h("rita"))
        assert res.status_code == 201, res.text
        return res.json()["id"]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def site(
    tmp_path: Path, policy_file: Path, mlflow_model: MlflowModel, clock: Clock
) -> Iterator[Site]:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    app = web_app(url, policy_file, mlflow_model.tracking_uri, clock=clock)
    with TestClient(app) as client:
        yield Site(client, issue_tokens(app), mlflow_model)


def test_pages_need_sign_in(site: Site) -> None:
    res = site.client.get("/ui/requests", follow_redirects=False)
    assert res.status_code == 303
    assert res.headers["location"] == "/ui/login?next=/ui/requests"
    page = site.client.get("/ui/login").text
    assert '<label for="token">Token</label>' in page and "<main" in page


def test_sign_in_sets_a_signed_httponly_lax_cookie(site: Site) -> None:
    res = site.login("ann")
    assert res.status_code == 303 and res.headers["location"] == "/ui/requests"
    cookie = res.headers["set-cookie"]
    assert cookie.startswith("mlops_ui=")
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    assert "path=/ui" in cookie.lower()
    assert site.tokens["ann"] not in cookie
    page = site.client.get("/ui/requests").text
    assert "Signed in as <strong>ann</strong> (approver)" in page


def test_unknown_token_is_refused_on_the_form(site: Site) -> None:
    form = {"token": "not-a-token", "csrf_token": site.csrf(), "next": ""}
    res = site.client.post("/ui/login", data=form)
    assert res.status_code == 401
    assert "The bearer token is unknown or revoked." in res.text
    assert site.client.get("/ui/requests", follow_redirects=False).status_code == 303


def test_sign_out_ends_the_session(site: Site) -> None:
    site.login("ann")
    res = site.client.post("/ui/logout", data={"csrf_token": site.csrf("/ui/requests")})
    assert res.status_code == 200 and "Signed out." in res.text
    assert site.client.get("/ui/audit", follow_redirects=False).status_code == 303


def test_revoked_token_ends_its_page_session(site: Site) -> None:
    site.login("ann")
    tokens = site.client.get("/v1/tokens", headers=site.h("root")).json()["items"]
    ann = next(t for t in tokens if t["user"] == "ann")
    assert site.client.delete(f"/v1/tokens/{ann['id']}", headers=site.h("root")).status_code == 204
    res = site.client.get("/ui/requests", follow_redirects=False)
    assert res.status_code == 303 and res.headers["location"].startswith("/ui/login")


@pytest.mark.parametrize("sent", [None, "", "forged-token"])
def test_form_posts_without_the_session_csrf_token_are_refused(site: Site, name: str, sent) -> None:
    rid = site.request(name)
    site.login("ann")
    data = {"comment": "sneaky"} | ({} if sent is None else {"csrf_token": sent})
    res = site.client.post(f"/ui/requests/{rid}/approve", data=data)
    assert res.status_code == 403
    assert "CSRF token is missing or does not match" in res.text
    assert site.client.get(f"/v1/promotions/{rid}").json()["approvals"] == []


def test_sign_in_form_needs_csrf_too(site: Site) -> None:
    res = site.client.post("/ui/login", data={"token": site.tokens["ann"]})
    assert res.status_code == 403
    assert site.client.get("/ui/requests", follow_redirects=False).status_code == 303


def test_requester_is_not_offered_approval_and_the_server_refuses_it(site: Site, name: str) -> None:
    rid = site.request(name)
    site.login("rita")
    page = site.client.get(f"/ui/requests/{rid}").text
    assert ">Approve</button>" not in page and ">Reject</button>" not in page
    assert "cannot approve promotions to production" in page
    forged = {"comment": "mine", "csrf_token": site.csrf(f"/ui/requests/{rid}")}
    res = site.client.post(f"/ui/requests/{rid}/approve", data=forged)
    assert res.status_code == 403
    assert "may not approve promotions to &#39;production&#39;" in res.text
    assert site.client.get(f"/v1/promotions/{rid}").json()["approvals"] == []


def test_approve_reject_through_the_page_use_the_gate(site: Site, name: str) -> None:
    rid = site.request(name)
    site.login("ann")
    page = site.client.get(f"/ui/requests/{rid}").text
    assert ">Approve</button>" in page and ">Reject</button>" in page
    csrf = site.csrf(f"/ui/requests/{rid}")
    res = site.client.post(
        f"/ui/requests/{rid}/approve", data={"comment": "ok", "csrf_token": csrf}
    )
    assert res.status_code == 200
    assert f"Approved request {rid}: now pending (1 of 2)." in res.text
    again = site.client.post(f"/ui/requests/{rid}/approve", data={"csrf_token": csrf})
    assert again.status_code == 409 and "already approved" in again.text
    res = site.client.post(f"/ui/requests/{rid}/reject", data={"comment": "no", "csrf_token": csrf})
    assert f"Rejected request {rid}." in res.text
    body = site.client.get(f"/v1/promotions/{rid}").json()
    assert body["state"] == "rejected"
    assert [(a["user"], a["decision"], a["comment"]) for a in body["approvals"]] == [
        ("ann", "approve", "ok"),
        ("ann", "reject", "no"),
    ]


def test_request_page_shows_the_evidence(site: Site, name: str) -> None:
    rid = site.request(name)
    site.login("ann")
    page = site.client.get(f"/ui/requests/{rid}").text
    for text in (
        "<code>data/iris.csv</code>",
        "5ba2c4a1b5c4cd5e3a3f54ea2bb1b4d1",
        "Data Docs for iris_train",
        '<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img"',
        "Dependency parity",
        "<code>checks.smoke_test</code>",
        "approvals: 0 of 2 required",
    ):
        assert text in page, text
    docs = site.client.get(f"/ui/requests/{rid}/data-docs/iris_train")
    assert docs.status_code == 200 and "Validation of suite iris_train" in docs.text
    assert docs.headers["content-security-policy"] == "sandbox allow-scripts"
    missing = site.client.get(f"/ui/requests/{rid}/data-docs/other_suite")
    assert missing.status_code == 404 and "no validation report for suite" in missing.text


def test_unknown_request_and_route_are_html_error_pages(site: Site) -> None:
    site.login("ann")
    res = site.client.get("/ui/requests/999999")
    assert res.status_code == 404 and "No promotion request with id 999999." in res.text
    assert site.client.get("/ui/nowhere").status_code == 404
    api = site.client.get("/v1/nowhere")
    assert api.status_code == 404 and api.json()["code"] == "not_found"


def test_next_cannot_leave_the_pages(site: Site) -> None:
    form = {"token": site.tokens["ann"], "csrf_token": site.csrf(), "next": "//evil.example/x"}
    res = site.client.post("/ui/login", data=form, follow_redirects=False)
    assert res.headers["location"] == "/ui/requests"


def test_chart_and_age_helpers() -> None:
    svg = metric_bars([("accuracy", 0.9, 0.8), ("rmse", 2.0, None)])
    assert svg.count("<rect") == 2 + 3  # legend (2) + candidate, champion, candidate
    assert 'width="300.0"' in svg and 'width="266.7"' in svg
    assert "<title>accuracy champion 0.8</title>" in svg
    assert "&lt;b&gt;" in metric_bars([("<b>", 1.0, 1.0)])
    from datetime import timedelta

    assert [age(timedelta(seconds=s)) for s in (5, 125, 7300, 90000)] == ["5s", "2m", "2h", "1d"]


def test_freeze_window_fails_the_live_verdict_and_blocks_decisions(
    site: Site, name: str, clock: Clock
) -> None:
    rid = site.request(name)
    clock.now = datetime(2026, 12, 25, 9, 0, tzinfo=UTC)
    site.login("ann")
    page = site.client.get(f"/ui/requests/{rid}").text
    failed = re.search(
        r'<tr class="failed"><th scope="row"><code>([^<]+)</code>'
        r'.*?<td data-label="Why">([^<]+)</td>',
        page,
    )
    assert failed and failed.groups() == (
        "freeze",
        "frozen until 2026-12-27T00:00:00+00:00: holidays",
    )
    assert ">Approve</button>" not in page
    assert "Promotions to production are frozen until 2026-12-27T00:00:00+00:00 (holidays)." in page
    csrf = site.csrf(f"/ui/requests/{rid}")
    res = site.client.post(f"/ui/requests/{rid}/approve", data={"csrf_token": csrf})
    assert res.status_code == 409 and "is frozen until" in res.text
    assert site.client.get(f"/v1/promotions/{rid}").json()["approvals"] == []


def test_requester_cancels_own_request_from_the_page(site: Site, name: str) -> None:
    rid = site.request(name)
    site.login("rita")
    page = site.client.get(f"/ui/requests/{rid}").text
    assert ">Cancel this request</button>" in page
    csrf = site.csrf(f"/ui/requests/{rid}")
    res = site.client.post(f"/ui/requests/{rid}/cancel", data={"csrf_token": csrf})
    assert res.status_code == 200 and f"Cancelled request {rid}." in res.text
    assert site.client.get(f"/v1/promotions/{rid}").json()["state"] == "cancelled"
    assert ">Cancel this request</button>" not in res.text


def test_rollback_is_offered_only_to_rollback_roles(site: Site, name: str) -> None:
    for _ in range(2):
        rid = site.request(name)
        for user in ("ann", "bob"):
            res = site.client.post(f"/v1/promotions/{rid}/approve", json={}, headers=site.h(user))
            assert res.status_code == 200, res.text
    site.login("rita")
    page = site.client.get(f"/ui/aliases/{name}/production").text
    assert "Roll back to version 1" not in page
    assert "Rolling back production needs one of: approver, admin." in page
    csrf = site.csrf(f"/ui/aliases/{name}/production")
    res = site.client.post(f"/ui/aliases/{name}/production/rollback", data={"csrf_token": csrf})
    assert res.status_code == 403 and "may not roll back" in res.text
    assert site.client.get(f"/v1/aliases/{name}/production").json()["version"] == 2


def test_bad_query_is_an_html_error_page_with_the_user_header(site: Site) -> None:
    site.login("ann")
    res = site.client.get("/ui/requests?state=bogus")
    assert res.status_code == 422
    assert "The request is not valid: query.state:" in res.text
    assert "Signed in as <strong>ann</strong>" in res.text


def test_mount_is_idempotent_and_ui_root_leads_to_requests(site: Site) -> None:
    from registry_server.web import mount

    app = site.client.app
    assert mount(app) is mount(app, secret_key="other") is app.state.ui
    assert [getattr(r, "path", None) for r in app.routes].count("/ui") == 1
    site.login("ann")
    res = site.client.get("/ui")
    assert res.status_code == 200 and str(res.url).endswith("/ui/requests")
    assert "Pending promotion requests" in res.text
