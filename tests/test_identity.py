"""``mlops.identity``: one normal form for user names, and the policy's approval rules
comparing people by it, so the library and the server agree on who is who."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from mlops.errors import GateError
from mlops.identity import check_user_name, normalise_identity, same_person
from mlops.policy import ApprovalRecord, evaluate_approvals, parse_policy

NOW = datetime(2026, 6, 1, tzinfo=UTC)
TP = parse_policy(
    {
        "targets": {
            "production": {"approvals": {"count": 2, "exclude_requester": True, "distinct": True}}
        }
    }
).targets["production"]
TWINS = [
    "Ci-Bot",
    "CI-BOT",
    "ci-bot ",
    " ci-bot",
    "ci-bot\t",
    "ci-bot\n",
    "ci\u200b-bot",
    "\ufeffci-bot",
    "\uff43\uff49\uff0d\uff42\uff4f\uff54",
]


@pytest.mark.parametrize("twin", TWINS)
def test_spellings_of_one_name_have_one_identity(twin: str) -> None:
    assert normalise_identity(twin) == "ci-bot"
    assert same_person(twin, "ci-bot")


def test_other_scripts_and_other_names_are_other_people() -> None:
    assert not same_person("\u0441i-bot", "ci-bot")  # Cyrillic es
    assert not same_person("ci bot", "ci-bot")
    assert not same_person("ann", "anna")


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("ci-bot ", "U+0020"),
        ("ci\u200b-bot", "U+200B"),
        ("ci-bot\t", "U+0009"),
        ("\u0441i-bot", "U+0441"),
        ("-bot", "start and end with a letter or digit"),
        ("", "it is empty"),
        ("x" * 201, "longer than 200"),
    ],
)
def test_check_user_name_refuses_invisible_and_foreign_characters(name: str, why: str) -> None:
    with pytest.raises(GateError, match=f"User name .* is not valid: .*{re.escape(why)}") as info:
        check_user_name(name)
    assert "ASCII letters, digits" in info.value.hint


def test_check_user_name_returns_the_nfkc_form() -> None:
    assert check_user_name("\uff43\uff49\uff0d\uff42\uff4f\uff54") == "ci-bot"
    assert check_user_name("Ann.Lee@example.com") == "Ann.Lee@example.com"


@pytest.mark.parametrize("twin", TWINS)
def test_requester_rule_compares_identities(twin: str) -> None:
    approvals = [
        ApprovalRecord(twin, ("approver",), "approve", "d", NOW),
        ApprovalRecord("ann", ("approver",), "approve", "d", NOW),
    ]
    tally = evaluate_approvals(TP, approvals, requester="ci-bot", digest="d", now=NOW)
    assert (tally.have, tally.quorum, tally.counted) == (1, False, ("ann",))
    assert tally.why_not(twin) == "the requester may not approve their own request"


@pytest.mark.parametrize("twin", TWINS)
def test_distinct_rule_counts_one_person_once(twin: str) -> None:
    approvals = [
        ApprovalRecord("ci-bot", ("approver",), "approve", "d", NOW),
        ApprovalRecord(twin, ("approver",), "approve", "d", NOW),
    ]
    tally = evaluate_approvals(TP, approvals, requester="rita", digest="d", now=NOW)
    assert (tally.have, tally.quorum) == (1, False)
    assert tally.ignored == ((twin, "already counted once for this person"),)


def test_approval_record_exposes_its_identity() -> None:
    assert ApprovalRecord("Ann ", (), "approve", "d", NOW).identity == "ann"
