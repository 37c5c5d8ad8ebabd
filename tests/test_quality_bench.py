"""bench/quality.py's results page: a rerun of some cases replaces only their sections, written whole."""
import math

import pytest

from cohep.testing import bench as harness

BENCH = harness.Home.of(__file__).root / "bench" / "quality.py"


@pytest.fixture(scope="module")
def bench():
    return harness.load_script(BENCH)


def test_doc_keeps_the_cases_a_rerun_did_not_touch(bench, tmp_path):
    page = tmp_path / "benchmarks" / "quality.md"
    bench.write_doc(page, {"flip3": "### flip3\nold flip3\n", "flux3": "### flux3\nold flux3\n"}, command="first", seconds=1)
    bench.write_doc(page, {"flux3": "### flux3\nnew flux3\n", "noise3": "### noise3\nnoise\n"}, command="second", seconds=2)
    text = page.read_text()
    assert "old flip3" in text and "new flux3" in text and "old flux3" not in text and "noise" in text
    assert text.index("### flip3") < text.index("### flux3") < text.index("### noise3")
    assert text.count("<!-- case: flux3 -->") == 1 and text.count("# Benchmark") == 1
    assert "`second`" in text and "`first`" not in text and f"{harness.machine().cores} cores" in text
    assert [p.name for p in page.parent.iterdir()] == ["quality.md"]  # no temp file left behind


def test_a_rerun_on_the_recorded_page_keeps_its_other_cases(bench, tmp_path):
    """docs/benchmarks/quality.md was written with start marks only: each case runs to the next mark."""
    page = tmp_path / "quality.md"
    page.write_text("# Benchmark: data-set quality\n\nOld header.\n\n<!-- case: flip5 -->\n### flip5\nkept\n\n"
                    "![flip5](../figures/quality-flip5.png)\n\n<!-- case: flux3 -->\n### flux3\nold\n")
    bench.write_doc(page, {"flux3": "### flux3\nnew\n"}, command="python bench/quality.py --cases flux3", seconds=3)
    text = page.read_text()
    assert "Old header" not in text and "`python bench/quality.py --cases flux3` (3 s)" in text
    assert "### flip5\nkept\n\n![flip5](../figures/quality-flip5.png)\n<!-- /case -->" in text
    assert "### flux3\nnew\n<!-- /case -->" in text and "old" not in text.split("<!-- case: flux3 -->")[1]


def test_case_section_names_the_simulation_and_counts(bench):
    found = {m: 0 for m in bench.CHEAP + ("loo", "shapley")}
    found.update(offset=7, combined=9, shapley=2)
    rho = {m: [] for m in bench.CHEAP}
    rho["offset"] = [0.5, 1.0, math.nan]
    text = bench.case_section("flux3", found, rho, 2, {"run": 10.0, "shapley": 5.0, "trainings": 22}, seeds=10, rounds=10)
    assert "quality_flux_sim.toml" in text and "mean_gev = 0.8" in text
    assert "| offset | 7/10 | +0.75 (n=2) |" in text and "| combined | 9/10 | - |" in text
    assert "| shapley (retraining) | 2/2 | - |" in text
    assert "| measure | ranked last | Spearman with exact Shapley (2 seeds) |\n|---|---|---|" in text


def test_ranked_last_is_strict(bench):
    assert bench.last([0.1, 0.5, 0.3], 0)
    assert not bench.last([0.1, 0.1, 0.3], 0)  # a tie is not a find
    assert not bench.last([math.nan, 0.5, 0.3], 0) and bench.last([0.2, math.nan, 0.3], 0)
