"""Under CI=true a skipped test fails the run (conftest.py); locally a skip stays a skip.

Each case runs pytest in a subprocess on generated test files, next to a copy of this suite's
conftest.py, so the hooks under test are the real ones.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")

SKIPPING_TESTS = '''
import pytest


@pytest.fixture
def needs_widget():
    pytest.skip("widget fixture unavailable")


def test_passes():
    assert True


def test_body_skip():
    pytest.skip("body says no widget")


def test_fixture_skip(needs_widget):
    pass


@pytest.mark.skipif(True, reason="marked: widget missing")
def test_marked_skip():
    pass


def test_importorskip_in_body():
    pytest.importorskip("cohep_no_such_module_b")


@pytest.mark.xfail(reason="known widget bug", strict=True)
def test_expected_failure():
    assert False
'''

MODULE_SKIP = '''
import pytest

pytest.importorskip("cohep_no_such_module_a")


def test_never_collected():
    pass
'''

REASONS = ["body says no widget", "widget fixture unavailable", "marked: widget missing",
           "cohep_no_such_module_b", "cohep_no_such_module_a"]


def run_pytest(folder: Path, ci: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    if ci is not None:
        env["CI"] = ci
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
         "--continue-on-collection-errors", "--rootdir", str(folder), str(folder)],
        cwd=folder, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.fixture
def suite(tmp_path):
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_skipping.py").write_text(SKIPPING_TESTS)
    (tmp_path / "test_module_skip.py").write_text(MODULE_SKIP)
    return tmp_path


@pytest.mark.parametrize("ci", ["true", "1"])
def test_skips_fail_under_ci(suite, ci):
    proc = run_pytest(suite, ci)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    # every kind of skip fails, and its failure names the skip's reason
    for name in ("test_body_skip", "test_fixture_skip", "test_marked_skip", "test_importorskip_in_body"):
        assert f"FAILED test_skipping.py::{name}" in out, out
    for reason in REASONS:
        assert reason in out, (reason, out)
    assert f"skipped under CI={ci}" in out
    assert "ERROR test_module_skip.py" in out  # a module skipped at import is a collection error
    # passing tests still pass, an expected failure stays expected
    assert "PASSED test_skipping.py::test_passes" in out
    assert "XFAIL test_skipping.py::test_expected_failure" in out
    assert "4 failed, 1 passed, 1 xfailed, 1 error" in out, out
    assert "skipped" not in out.splitlines()[-1]


@pytest.mark.parametrize("ci", [None, "false"])
def test_skips_stay_skips_outside_ci(suite, ci):
    proc = run_pytest(suite, ci)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "1 passed, 5 skipped, 1 xfailed" in out.splitlines()[-1], out
    assert "skipped under CI" not in out
