"""End to end in headless Chromium: sign in, review the evidence, approve to quorum, see
the alias move in MLflow, roll back, check the audit chain, and a forged form refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.web.conftest import (
    LiveServer,
    MlflowModel,
    TrainedRun,
    new_candidate,
    new_lineage_candidate,
)

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "install Debian's chromium: apt-get install -y chromium"
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield browser
        browser.close()


class Reviewer:
    """One person's browser context (own cookies) on the live server."""

    def __init__(self, browser: Any, server: LiveServer, user: str) -> None:
        self.server, self.user = server, user
        self.context = browser.new_context(
            base_url=server.url, viewport={"width": 1200, "height": 900}
        )
        self.context.set_default_timeout(15_000)
        self.page = self.context.new_page()

    def sign_in(self, then: str = "/ui/requests") -> Any:
        page = self.page
        page.goto(then)
        assert page.url.endswith("/ui/login?next=" + then), page.url
        page.get_by_label("Token").fill(self.server.tokens[self.user])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"**{then}")
        return page

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


def _promote_via_rest(server: LiveServer, model: MlflowModel, name: str) -> int:
    """v1 of ``name`` promoted to production over REST: the champion of the browser flow."""
    cand = new_candidate(model, name, accuracy=0.93)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        body = {
            "model": name,
            "version": cand.version,
            "target": "production",
            "evidence_digest": cand.digest,
        }
        rid = http.post("/v1/promotions", json=body, headers=server.h("rita")).json()["id"]
        for user in ("ann", "bob"):
            res = http.post(f"/v1/promotions/{rid}/approve", json={}, headers=server.h(user))
            assert res.status_code == 200, res.text
        assert res.json()["state"] == "promoted"
    return cand.version


def test_review_approve_promote_rollback_audit(
    browser: Any, live_server: LiveServer, mlflow_model: MlflowModel, name: str
) -> None:
    from playwright.sync_api import expect

    champion = _promote_via_rest(live_server, mlflow_model, name)
    cand = new_candidate(
        mlflow_model,
        name,
        accuracy=0.97,
        champion={"version": champion, "metrics": {"accuracy": 0.93, "f1_macro": 0.92}},
    )
    body = {
        "model": name,
        "version": cand.version,
        "target": "production",
        "evidence_digest": cand.digest,
    }
    created = httpx.post(
        f"{live_server.url}/v1/promotions", json=body, headers=live_server.h("rita"), timeout=30
    )
    assert created.status_code == 201, created.text
    rid = created.json()["id"]

    # the requester sees the request but is not offered a decision
    rita = Reviewer(browser, live_server, "rita")
    page = rita.sign_in()
    row = page.locator("#requests tbody tr", has_text=name)
    expect(row).to_contain_text(f"{cand.version}")
    expect(row).to_contain_text("0/2")
    row.get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Request #{rid}: {name} v{cand.version} to production"
    )
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    expect(page.locator("#why-not")).to_contain_text("cannot approve promotions to production")
    rita.shot("01-requester-sees-no-approve-button")
    rita.close()

    # approver 1 reads the evidence and approves with a comment
    ann = Reviewer(browser, live_server, "ann")
    page = ann.sign_in(f"/ui/requests/{rid}")
    expect(page.get_by_role("cell", name="5ba2c4a1b5c4cd5e3a3f54ea2bb1b4d1").first).to_be_visible()
    expect(page.get_by_role("link", name="Data Docs for iris_train")).to_be_visible()
    expect(page.locator("#metrics")).to_contain_text("+0.04")
    expect(page.locator("svg.chart rect")).to_have_count(2 + 4)
    expect(page.locator("#package")).to_contain_text("3 rows, 0 mismatches")
    expect(page.locator("#verdict")).to_contain_text("checks.must_beat_champion")
    ann.shot("02-approver-reads-evidence")
    page.get_by_label("Comment").fill("metrics and data look right")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_have_text(
        f"Approved request {rid}: now pending (1 of 2)."
    )
    expect(page.locator("#approvals")).to_contain_text("metrics and data look right")
    ann.shot("03-first-approval")
    page.get_by_role("link", name="Data Docs for iris_train").click()
    expect(page).to_have_title("Validation of suite iris_train")
    expect(page.locator("body")).to_contain_text("2/2 expectations")
    ann.shot("03b-data-docs")
    page.go_back()
    ann.close()

    # approver 2 reaches quorum: promoted, the alias moved in MLflow
    bob = Reviewer(browser, live_server, "bob")
    page = bob.sign_in(f"/ui/requests/{rid}")
    page.get_by_label("Comment").fill("second pair of eyes: ok")
    page.get_by_role("button", name="Approve").click()
    expect(page.locator("#state")).to_have_text("promoted")
    expect(page.locator("#quorum")).to_have_text("2 of 2")
    bob.shot("04-second-approval-promoted")
    client = mlflow_model.client()
    assert int(client.get_model_version_by_alias(name, "production").version) == cand.version

    # the alias history; a form post with a tampered CSRF token is refused, nothing moves
    page.get_by_role("link", name=f"History of {name}@production").click()
    expect(page.locator("#holder")).to_contain_text(f"version {cand.version}")
    expect(page.locator("#history tbody tr")).to_have_count(2)
    bob.shot("05-alias-history")
    page.locator("#rollback input[name=csrf_token]").evaluate("el => el.value = 'tampered'")
    page.get_by_role("button", name=f"Roll back to version {champion}").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("403: csrf_failed")
    expect(page.locator("#error-message")).to_contain_text(
        "CSRF token is missing or does not match"
    )
    assert int(client.get_model_version_by_alias(name, "production").version) == cand.version
    bob.shot("06-bad-csrf-refused")

    # a rollback to the champion; going forward again is not offered (it needs a request)
    page.goto(f"/ui/aliases/{name}/production")
    page.get_by_label("Reason for the rollback").fill("latency regression in canary")
    page.get_by_role("button", name=f"Roll back to version {champion}").click()
    expect(page.get_by_role("status")).to_have_text(
        f"Rolled back {name}@production to version {champion}."
    )
    expect(page.locator("#holder")).to_contain_text(f"version {champion}")
    expect(page.locator("#in-mlflow")).to_have_text(f"version {champion}")
    assert int(client.get_model_version_by_alias(name, "production").version) == champion
    expect(page.get_by_role("button", name=f"Roll back to version {cand.version}")).to_have_count(0)
    expect(page.locator("#why-not")).to_contain_text("nothing to roll back to")
    bob.shot("07-rolled-back")

    # the audit chain verifies and shows the rollback
    page.get_by_role("link", name="Audit").click()
    expect(page.locator("#verify")).to_contain_text("The hash chain verifies")
    latest = page.locator("#events li").first
    expect(latest).to_contain_text("alias move: rolled back")
    expect(latest).to_contain_text(
        f"bob rolled back {name}@production from v{cand.version} to v{champion}"
    )
    bob.shot("08-audit-verifies")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("Signed out.")
    page.goto("/ui/audit")
    assert "/ui/login" in page.url
    bob.close()


def _request_against_champion(
    server: LiveServer, runs: tuple[TrainedRun, TrainedRun], name: str
) -> tuple[int, int]:
    """The champion run promoted over REST, then a request for the challenger; its id."""
    champion_run, challenger_run = runs
    champ = new_lineage_candidate(champion_run, name, accuracy=0.93)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        body = {"model": name, "version": champ.version, "target": "production"}
        res = http.post(
            "/v1/promotions",
            json=body | {"evidence_digest": champ.digest},
            headers=server.h("rita"),
        )
        champ_rid = res.json()["id"]
        for user in ("ann", "bob"):
            res = http.post(f"/v1/promotions/{champ_rid}/approve", json={}, headers=server.h(user))
        assert res.json()["state"] == "promoted", res.text
        metrics = {"accuracy": 0.93, "f1_macro": 0.92}
        cand = new_lineage_candidate(
            challenger_run,
            name,
            accuracy=0.97,
            champion={
                "version": champ.version,
                "metrics": metrics,
                "run_id": champion_run.model.run_id,  # the holder it was judged against
            },
        )
        body = {"model": name, "version": cand.version, "target": "production"}
        res = http.post(
            "/v1/promotions", json=body | {"evidence_digest": cand.digest}, headers=server.h("rita")
        )
        assert res.status_code == 201, res.text
    return champ.version, res.json()["id"]


def _fits(page: Any) -> tuple[int, int]:
    return page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")


def test_request_page_names_what_changed_and_fits_420_and_1280_px(
    browser: Any,
    live_server: LiveServer,
    champion_and_challenger: tuple[TrainedRun, TrainedRun],
    name: str,
) -> None:
    from playwright.sync_api import expect

    champion_run, challenger_run = champion_and_challenger
    champ, rid = _request_against_champion(live_server, champion_and_challenger, name)
    ann = Reviewer(browser, live_server, "ann")
    missing: list[str] = []
    ann.page.on("response", lambda r: missing.append(r.url) if r.status >= 400 else None)
    page = ann.sign_in(f"/ui/requests/{rid}")
    changes = page.locator("#changes")
    expect(changes).to_contain_text("Model class: LogisticRegression (champion) → SVC (candidate)")
    expect(changes).to_contain_text("Parameter C: 1.0 → 0.5")
    old, new = champion_run.train.md5[:8], challenger_run.train.md5[:8]
    expect(changes).to_contain_text(
        f"Training data data/train.csv: md5 {old} → {new}, rows 150 → 120"
    )
    expect(changes).to_contain_text("the candidate ran with uncommitted changes")
    expect(changes).to_contain_text("DVC experiment: none → spiky-svc")
    expect(page.locator("#params tr.differs")).to_have_count(1)
    expect(page.locator("#params tr.differs")).to_contain_text("changed")
    expect(page.locator("#model")).to_contain_text("SVC")
    expect(page.get_by_role("link", name=f"v{champ} in MLflow")).to_be_visible()

    for shot, url in (
        ("10-request", f"/ui/requests/{rid}"),
        ("11-pending", "/ui/requests"),
        ("12-audit", f"/ui/audit?model={name}"),
    ):
        for width in (1280, 420):
            page.set_viewport_size({"width": width, "height": 900})
            page.goto(url)
            scroll, inner = _fits(page)
            ann.shot(f"{shot}-{width}px")
            assert inner == width and scroll <= inner, (url, width, scroll)
    expect(page.locator("#events li").nth(0)).to_contain_text(f"rita requested request #{rid}")
    expect(page.locator("#events li").nth(1)).to_contain_text("alias move: promoted")
    assert not [u for u in missing if "favicon" in u], missing
    ann.close()
