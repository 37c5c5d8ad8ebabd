"""Under CI=true a skipped test fails the run (conftest.py); locally a skip stays a skip. And
conftest.py marks tests by what they start, so ``make test-fast`` leaves them out.

Each case runs pytest in a subprocess on generated test files, next to a copy of this suite's
conftest.py, so the hooks under test are the real ones.
"""
import ast
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


# -- marks by what a test starts --------------------------------------------------------------

MARKED_TESTS = {
    "test_needs.py": '''
import pytest


@pytest.fixture(scope="module")
def network():
    from cohep.testing.localnet import LocalNet
    yield LocalNet


@pytest.fixture(scope="module")
def colearn_run():
    return None


def test_plain():
    pass


def test_names_anvil():
    from cohep.ledger.anvil import Anvil
    assert Anvil


def test_uses_a_network(network):
    pass


def test_reads_a_trained_run(colearn_run):
    pass


@pytest.mark.slow
def test_marked_in_its_file():
    pass
''',
    # a file listed in conftest.SLOW_ELSEWHERE: one test by name, one parameter of another
    "test_draw.py": '''
import pytest


def test_real_rounds_follow_the_python_draw_through_suspensions():
    pass


@pytest.mark.parametrize("n", [8, 64])
def test_contract_draw_equals_python(n):
    pass
''',
}


def collected(folder: Path, expression: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "--co", "-p", "no:cacheprovider", "-W", "ignore",
                           "--rootdir", str(folder), "-m", expression, str(folder)],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode in (0, 5), proc.stdout + proc.stderr  # 5: nothing selected
    return {line.split("::", 1)[1] for line in proc.stdout.splitlines() if "::" in line}


def test_tests_are_marked_by_what_they_start(tmp_path):
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    for name, text in MARKED_TESTS.items():
        (tmp_path / name).write_text(text)
    assert collected(tmp_path, "anvil") == {"test_names_anvil", "test_uses_a_network"}
    assert collected(tmp_path, "nodes") == {"test_uses_a_network"}
    assert collected(tmp_path, "slow") == {"test_uses_a_network", "test_reads_a_trained_run", "test_marked_in_its_file",
                                           "test_real_rounds_follow_the_python_draw_through_suspensions",
                                           "test_contract_draw_equals_python[64]"}
    assert collected(tmp_path, "not (anvil or nodes or ray or slow)") == {"test_plain", "test_contract_draw_equals_python[8]"}


def test_every_test_and_fixture_the_conftest_names_exists():
    """A renamed test would silently drop out of its mark: every name conftest.py lists is defined."""
    import conftest

    tests = CONFTEST.parent
    defined = {path.name: {node.name for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.FunctionDef)}
               for path in tests.glob("test_*.py")}
    for module, names in conftest.SLOW_ELSEWHERE.items():
        for name in names:
            assert name.split("[")[0] in defined.get(module, ()), f"{module}::{name}"
    for fixture in conftest.TRAINED_RUNS:
        assert any(fixture in names for names in defined.values()), fixture
