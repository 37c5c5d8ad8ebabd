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
import gzip
import itertools
import os
import types
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("COHEP_PROGRESS", "0")

# -- synthetic MNIST ------------------------------------------------------------------------------

#: Each class is a few strokes (polylines in a unit box, y pointing down), loosely shaped like the
#: digit so the classes differ the way digits do: in where the ink is and how it bends.
_ARC = np.linspace(0.0, 2.0 * np.pi, 17)
DIGIT_STROKES: dict[int, list[list[tuple[float, float]]]] = {
    0: [[(0.5 + 0.38 * np.sin(t), 0.5 - 0.48 * np.cos(t)) for t in _ARC]],
    1: [[(0.35, 0.2), (0.55, 0.0), (0.55, 1.0)]],
    2: [[(0.1, 0.25), (0.3, 0.02), (0.7, 0.02), (0.88, 0.28), (0.1, 1.0), (0.92, 1.0)]],
    3: [[(0.1, 0.05), (0.85, 0.1), (0.45, 0.48), (0.9, 0.72), (0.6, 1.0), (0.1, 0.92)]],
    4: [[(0.7, 1.0), (0.7, 0.0), (0.05, 0.68), (0.95, 0.68)]],
    5: [[(0.88, 0.02), (0.15, 0.02), (0.1, 0.45), (0.75, 0.45), (0.9, 0.75), (0.6, 1.0), (0.08, 0.92)]],
    6: [[(0.8, 0.02), (0.2, 0.5), (0.15, 0.85), (0.5, 1.0), (0.85, 0.8), (0.6, 0.55), (0.18, 0.65)]],
    7: [[(0.05, 0.05), (0.95, 0.05), (0.35, 1.0)], [(0.35, 0.5), (0.8, 0.5)]],
    8: [[(0.5 + 0.3 * np.sin(t), 0.26 - 0.24 * np.cos(t)) for t in _ARC],
        [(0.5 + 0.38 * np.sin(t), 0.74 - 0.26 * np.cos(t)) for t in _ARC]],
    9: [[(0.5 + 0.35 * np.sin(t), 0.3 - 0.28 * np.cos(t)) for t in _ARC], [(0.85, 0.3), (0.6, 1.0)]],
}


def _segments(label: int) -> np.ndarray:
    """[S, 2, 2] segment end points (x, y) of one class's strokes, in the unit box."""
    segs = [(a, b) for line in DIGIT_STROKES[label] for a, b in itertools.pairwise(line)]
    return np.asarray(segs, dtype=np.float64)


def synthetic_digits(n: int = 1200, seed: int = 0, *, noise: float = 0.08, max_shift: int = 1,
                     slant: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 28 x 28 uint8 images of 10 stroke templates (balanced, shuffled labels uint8).

    Every image draws its class's strokes with its own size, slant, stroke width, brightness and a
    shift of up to ``max_shift`` pixels, then adds Gaussian pixel noise. With the defaults the small
    CNN learns it about as fast as real MNIST from a few hundred images (larger shifts make a
    3-round run on 600 images barely leave chance level).
    """
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float32)
    px_, py_ = xx.ravel()[None, None, :], yy.ravel()[None, None, :]  # [1, 1, 784]
    images = np.zeros((n, 28 * 28), dtype=np.float32)
    for label in range(10):
        idx = np.flatnonzero(labels == label)
        m = len(idx)
        segs = _segments(label)  # [S, 2, 2]
        # per image: box size, slant, shift; the digit box is about 13 x 19 pixels, centred
        sx = rng.uniform(11.0, 15.0, (m, 1))
        sy = rng.uniform(17.0, 21.0, (m, 1))
        slant_ = rng.uniform(-slant, slant, (m, 1))
        cx = 14.0 + rng.integers(-max_shift, max_shift + 1, (m, 1))
        cy = 14.0 + rng.integers(-max_shift, max_shift + 1, (m, 1))
        u, v = segs[None, :, :, 0] - 0.5, segs[None, :, :, 1] - 0.5  # [1, S, 2]: start, end
        x = (cx[:, :, None] + sx[:, :, None] * u + (slant_ * sy)[:, :, None] * v).astype(np.float32)
        y = (cy[:, :, None] + sy[:, :, None] * v).astype(np.float32)  # [m, S, 2]
        ax, ay = x[:, :, :1], y[:, :, :1]  # [m, S, 1]
        bx, by = x[:, :, 1:] - ax, y[:, :, 1:] - ay
        qx, qy = px_ - ax, py_ - ay  # [m, S, 784]
        t = np.clip((qx * bx + qy * by) / np.maximum(bx * bx + by * by, 1e-6), 0.0, 1.0)
        qx -= t * bx
        qy -= t * by
        dist = np.sqrt((qx * qx + qy * qy).min(axis=1))  # [m, 784]: distance to the nearest stroke
        width = rng.uniform(0.8, 1.6, (m, 1))
        images[idx] = np.clip(width + 0.5 - dist, 0.0, 1.0) * rng.uniform(0.7, 1.0, (m, 1))
    images += rng.normal(0.0, noise, images.shape).astype(np.float32)
    images = np.clip(images, 0.0, 1.0)
    return np.round(images * 255).astype(np.uint8).reshape(n, 28, 28), labels


def idx_bytes(array: np.ndarray) -> bytes:
    """An uint8 array as an (uncompressed) IDX file: magic 0x0000_08_<ndim>, big-endian dims, data."""
    assert array.dtype == np.uint8
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def write_mnist_idx(folder: Path, images: np.ndarray, labels: np.ndarray, prefix: str = "t10k") -> Path:
    """Write ``<prefix>-images-idx3-ubyte.gz`` / ``<prefix>-labels-idx1-ubyte.gz`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images), mtime=0))
    (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels), mtime=0))
    return folder


#: Size of the synthetic set behind ``mnist_dir``.
SYNTHETIC_MNIST_SIZE = 1200


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory) -> Path:
    """A folder with t10k-images-idx3-ubyte.gz / t10k-labels-idx1-ubyte.gz: 1,200 synthetic digits."""
    images, labels = synthetic_digits(SYNTHETIC_MNIST_SIZE, seed=0)
    return write_mnist_idx(tmp_path_factory.mktemp("mnist"), images, labels)


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
