"""The shared validation: accounts file and event requests (used by the broker and management)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from event_queue.accounts import AccountDisabled, AccountsFileError, UnknownAccount, load_accounts
from event_queue.events import ExecCommand, NewEvent
from event_queue.requests import EventRequest
from event_queue.weights import InvalidTargets, check_weights


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "accounts.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_accounts_file_is_indexed_and_checks_enabled(tmp_path: Path) -> None:
    accounts = load_accounts(write(tmp_path, """
accounts:
  - {account_id: DU1, strategy: balanced, cash_reserve_percent: 2}
  - {account_id: DU2, enabled: false}
"""))
    assert accounts.require_enabled("DU1").strategy == "balanced"
    with pytest.raises(AccountDisabled):
        accounts.require_enabled("DU2")
    with pytest.raises(UnknownAccount):
        accounts.require_enabled("DU3")


@pytest.mark.parametrize(("text", "message"), [
    ("accounts:\n  - {account_id: DU1}\n  - {account_id: DU1}\n", "listed twice: DU1"),
    ("accounts:\n  - {account_id: DU1, colour: red}\n", "accounts.0.colour"),
    ("accounts:\n  - {account_id: 'bad id'}\n", "accounts.0.account_id"),
    ("accounts: [\n", "not valid YAML"),
    ("accounts:\n  - {account_id: DU1, cash_reserve_percent: 100}\n",
     "accounts.0.cash_reserve_percent: .*a reserve of 100 % leaves nothing to invest"),
])
def test_bad_accounts_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(AccountsFileError, match=message):
        load_accounts(write(tmp_path, text))


def test_missing_accounts_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(AccountsFileError, match=r"nope\.yaml: cannot read the accounts file: No such"):
        load_accounts(tmp_path / "nope.yaml")


def test_request_accepts_exec_alias_and_rejects_unknown_fields_by_name() -> None:
    request = EventRequest.model_validate({"account_id": "DU1", "exec": "print-equity"})
    assert request.exec_command.value == "print-equity"
    with pytest.raises(ValidationError, match="colour"):
        EventRequest.model_validate({"account_id": "DU1", "exec": "rebalance", "colour": 1})


@pytest.mark.parametrize("data", [
    {"allocations": [{"symbol": "SPY", "allocation": 70}, {"symbol": "AGG", "allocation": 40}]},
    {"allocations": [{"symbol": "SPY", "allocation": 10}, {"symbol": "SPY", "allocation": 10}]},
    {"allocations": [{"symbol": "spy", "allocation": 10}]},
    {"cash_reserve_percent": 101},
    {"cash_reserve_percent": 100},
    {"allocations": []},
    {"order_type": "STP"},
])
def test_bad_command_data_is_refused(data: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        EventRequest.model_validate({"account_id": "DU1", "exec": "rebalance", "data": data})


def test_health_is_not_a_command() -> None:
    with pytest.raises(ValidationError, match="exec"):
        EventRequest.model_validate({"account_id": "DU1", "exec": "health"})


@pytest.mark.parametrize(("weights", "message"), [
    ({}, "allocations is empty"),
    ({"SPY": float("nan")}, "from 0 to 100: SPY"),
    ({"SPY": -1.0}, "from 0 to 100: SPY"),
    ({"SPY": 60.0, "AGG": 40.000001}, "more than 100 percent"),
])
def test_weights_no_portfolio_can_meet_are_refused(weights: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidTargets, match=message):
        check_weights(weights)


def test_weights_summing_to_100_with_float_noise_are_met() -> None:
    check_weights({"A": 33.33, "B": 33.33, "C": 33.34})
    check_weights({"A": 0.0})  # sell A: a portfolio can meet that


@pytest.mark.parametrize("body", [
    {"account_id": "DU1", "exec": "print-equity"},
    {"account_id": "DU1", "exec_command": "rebalance",
     "data": {"allocations": [{"symbol": "SPY", "allocation": 60},
                              {"symbol": "AGG", "allocation": 40}],
              "cash_reserve_percent": 2.5, "order_type": "MOC", "strategy": "core"}},
])
def test_the_event_built_from_a_request_is_what_validating_it_again_gives(
    tmp_path: Path, body: dict[str, object]
) -> None:
    # to_new_event skips NewEvent's validation (the request already ran the same rules); this
    # proves nothing is lost that validation would have produced or refused.
    accounts = load_accounts(write(tmp_path, "accounts:\n  - {account_id: DU1}\n"))
    built = EventRequest.model_validate(body).to_new_event(accounts)
    assert built == NewEvent.model_validate(built.model_dump())
    assert type(built.exec_command) is ExecCommand
    assert all(value is not None for value in built.data.values())
