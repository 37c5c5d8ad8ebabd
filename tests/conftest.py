"""Shared fixtures and the CI rule.

* ``mnist_dir``: a small synthetic digit set written as gzipped MNIST IDX files, so every
  end-to-end test runs on a fresh clone with nothing downloaded and nothing beside the project.
* ``one_torch_thread``: tiny models on one torch thread.
* Under ``CI=true`` (or ``1``/``yes``) a skipped test is a failure: a skip in the test body, in a
  fixture, from a ``skip``/``skipif`` mark or from ``pytest.importorskip`` (also at module level).
  Locally skips stay skips.
* Marks for what a test needs beyond the package (declared in pyproject.toml, ``--strict-markers``):
  ``anvil`` (the Anvil binary), ``nodes`` (``cohep node`` processes), ``ray`` (Flower's Ray engine),
  ``slow`` (a long training). A test that names ``Anvil``, ``LocalNet`` or ``start_ray``, itself or in
  a fixture it uses, is marked here; so is every test of a module-scoped training run; the rest carry
  their marks in their own files. ``make test-fast`` runs what needs none of them.
"""
from __future__ import annotations

import contextlib
import os
import types
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("COHEP_PROGRESS", "0")

# -- synthetic MNIST ------------------------------------------------------------------------------

# the builders live in cohep.testing.synthetic (bench/ draws the same digits); synthetic_digits is
# also importable from here for the tests that still say ``from conftest import synthetic_digits``
from cohep.testing.synthetic import SYNTHETIC_MNIST_SIZE, synthetic_digits, synthetic_mnist  # noqa: F401


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory) -> Path:
    """A folder with t10k-images-idx3-ubyte.gz / t10k-labels-idx1-ubyte.gz: 1,200 synthetic digits."""
    return synthetic_mnist(tmp_path_factory.mktemp("mnist"), SYNTHETIC_MNIST_SIZE, seed=0)


@contextlib.contextmanager
def torch_threads(n: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_torch_thread():
    """Tiny models on one torch thread: OpenMP barriers stall badly when other jobs share the cores."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def one_torch_thread_module():
    """``one_torch_thread`` for module-scoped fixtures (a run shared by several tests)."""
    with torch_threads(1):
        yield


# -- CI: no silent skips --------------------------------------------------------------------------


def running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: reason")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _skip_message(report) -> str:
    return (f"skipped under CI={os.environ.get('CI')}: {_skip_reason(report)} "
            "(a skip in CI hides untested code; make the test run here, or unset CI locally)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A skip in setup (marks, fixtures) or in the test body becomes a failure under CI."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and running_in_ci() and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = _skip_message(report)
        report.ci_skip = True


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A module skipped at import (``pytest.importorskip`` at top level) is an error under CI."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and running_in_ci():
        report.outcome = "failed"
        report.longrepr = _skip_message(report)


def pytest_report_teststatus(report, config):
    """Show a skip turned failure as FAILED, also when it happened in setup (not as ERROR)."""
    if getattr(report, "ci_skip", False):
        return "failed", "F", "FAILED"
    return None


# -- marks: what a test needs beyond the package ------------------------------------------------

#: A name a test (or one of its fixtures) uses -> what that test needs: it starts the component itself.
MARKS_BY_NAME = {
    "Anvil": ("anvil",),
    "LocalNet": ("anvil", "nodes", "slow"),
    "start_ray": ("ray", "slow"),
}

#: Module-scoped fixtures that train a whole run for the tests of one file: each of those tests
#: needs the run (the first one pays for it), so none of them belongs to the fast subset.
TRAINED_RUNS = ("colearn_run", "average_run", "stepped_run", "weighted_run", "flipped_run", "duel")


#: Long tests (over about 2 s on a quiet core) in files that carry no marks of their own, by module:
#: a test's name marks all its parameters, a name with ``[id]`` that parameter only.
SLOW_ELSEWHERE = {
    "test_cli.py": ("test_demo_success",),
    "test_ballots.py": ("test_64_member_rounds_with_the_default_config",
                        "test_majority_credit_and_tallies_match_vote_transactions_and_the_rule"),
    "test_draw.py": ("test_contract_draw_equals_python[64]", "test_real_rounds_follow_the_python_draw_through_suspensions",
                     "test_reencoding_attack_cannot_repick_the_proposer", "test_sequence_is_identical_whatever_is_accepted"),
    "test_ledger.py": ("test_artifact_recompiles_to_committed_json", "test_64_members_worst_case_fits_the_gas_cap"),
    "test_privacy.py": ("test_epsilon_grows_with_every_step_and_the_prediction_matches",
                        "test_learner_stops_at_its_budget_end_to_end"),
    "test_variants.py": (
        "test_a_norm_outlier_does_not_set_the_direction_for_the_honest_slots",
        "test_a_stepped_round_adopts_what_was_judged_and_a_fresh_member_rebuilds_it",
        "test_a_struck_member_is_held_to_a_direction_floor_of_0",
        "test_each_leaves_a_rejected_slot_out_of_the_average",
        "test_k_distinct_proposers_match_the_python_draw[7]",
        "test_the_direction_floor_keeps_a_reversed_update_out_of_the_screened_average",
        "test_the_direction_share_keeps_a_random_slot_out_that_the_floor_passes",
        "test_the_norm_bound_rejects_a_boosted_slot_that_the_vote_alone_approves",
        "test_the_peer_margin_rejects_a_slot_that_beats_random_weights_but_not_its_peers",
        "test_the_screened_average_accepts_slots_that_lose_alone_but_win_together",
        "test_the_screened_average_keeps_a_gross_slot_out_and_adopts_the_others",
        "test_the_vote_on_the_average_rejects_an_attacked_average",
    ),
    "test_weight_averaging.py": ("test_the_proposal_is_the_mean_of_the_last_iterates[resnet50v2]",),
}


def _names_in(function) -> set[str]:
    """Global, attribute and imported names a function's code (nested functions included) refers to."""
    names: set[str] = set()
    stack = [getattr(function, "__code__", None)]
    while stack:
        code = stack.pop()
        if code is not None:
            names.update(code.co_names)
            stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return names


def _needs(item) -> set[str]:
    functions = [getattr(item, "function", None)]
    functions += [d.func for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs]
    named = set().union(*(_names_in(f) for f in functions if f is not None))
    marks = {m for name, ms in MARKS_BY_NAME.items() if name in named for m in ms}
    listed = SLOW_ELSEWHERE.get(item.path.name, ())
    if any(f in item.fixturenames for f in TRAINED_RUNS) or item.name in listed or item.originalname in listed:
        marks.add("slow")
    return marks


def pytest_collection_modifyitems(config, items):
    """Mark each test by what it needs: Anvil, node processes, Ray, a long training (see above)."""
    for item in items:
        have = {m.name for m in item.iter_markers()}
        for mark in sorted(_needs(item) - have):
            item.add_marker(mark)


def one_line(capsys) -> str:
    """What a command printed on stderr, checked to be the one line a bad input gets."""
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err
