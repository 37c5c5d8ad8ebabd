"""The Python API (docs/api.md): the page's example runs as written; arguments are checked like the
CLI's (one-line CohepError naming the field); results read as tables with or without pandas;
``import cohep`` stays light."""
import builtins
import re
import subprocess
import sys
from pathlib import Path

import pytest

import cohep
from cohep import api
from cohep.core.errors import CohepError, ConfigError

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_the_page_has_its_example():
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) >= 4 and any("cohep.run_experiment(" in b for b in blocks)


def test_the_documented_example_runs(tmp_path, monkeypatch, capsys, one_torch_thread):
    """Every python block of docs/api.md, in order, in one namespace, in a fresh folder."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in python_blocks(DOC.read_text()):
        exec(compile(block, str(DOC), "exec"), namespace)
    out = capsys.readouterr().out
    assert "refused: vote.threshold" in out and "final mean test accuracy" in out
    run = namespace["run"]
    assert isinstance(run, cohep.Experiment) and (tmp_path / "runs" / "notebook" / "records.csv").exists()
    assert len(run.table()) == 3 * (2 + 1) == len(namespace["df"])  # 3 learners x rounds 0..2
    assert list(namespace["df"].columns) == list(run.table()[0])
    assert [row["class"] for row in namespace["scores"].table()] == ["NC", "numu_CC", "nue_CC"]


# -- import cohep stays light --------------------------------------------------------------------


def test_import_cohep_loads_neither_torch_nor_the_settings():
    code = "import sys, cohep; print(sorted({'torch', 'cohep.config.experiment', 'cohep.api'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines()[-1] == "[]"


def test_the_package_lends_the_api_names():
    assert cohep.run_experiment is api.run_experiment and cohep.settings is api.settings
    assert {"simulate", "train", "evaluate", "quality"} <= set(dir(cohep))
    assert cohep.run.__name__ == "cohep.run"  # the package of runners is not hidden
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        cohep.nope  # noqa: B018


# -- settings: the three layers and their errors -------------------------------------------------


def test_settings_layers_later_ones_win(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("[experiment]\nlearners = 4\nrounds = 7\n[vote]\nthreshold = 0.6\n")
    cfg = api.settings(toml, experiment={"learners": 5}, overrides={"experiment.learners": 6, "train.lr": 0.01})
    assert (cfg.experiment.learners, cfg.experiment.rounds, cfg.vote.threshold, cfg.train.lr) == (6, 7, 0.6, 0.01)
    as_dict = api.settings({"experiment": {"rounds": 3}}, data={"path": tmp_path / "e.h5"})
    assert as_dict.experiment.rounds == 3 and as_dict.data.path == str(tmp_path / "e.h5")
    again = api.settings(as_dict, overrides={"experiment.seed": 9})
    assert (again.experiment.rounds, again.experiment.seed) == (3, 9)


@pytest.mark.parametrize("call, named", [
    (lambda: api.settings(overrides={"vote.threshold": 7}), "vote.threshold"),
    (lambda: api.settings(overrides={"learners": 3}), "'learners' must name a section.field"),
    (lambda: api.settings(overrides={"experiment.colour": 3}), "experiment.colour"),
    (lambda: api.settings(overrides=[("train.lr", 1)]), "overrides must be a dict"),
    (lambda: api.settings(experiment=3), "experiment= must be a dict"),
    (lambda: api.settings(learners={"n": 3}), "unknown section learners="),
    (lambda: api.settings({"vote": {"threshold": 2}}), "vote.threshold"),
    (lambda: api.settings(42), "config must be a TOML path"),
    (lambda: api.settings("/nonexistent/c.toml"), "no such config file"),
])
def test_bad_settings_are_one_line_config_errors(call, named):
    with pytest.raises(ConfigError) as err:
        call()
    assert named in str(err.value) and "\n" not in str(err.value)


def test_a_bad_run_fails_before_any_directory(tmp_path):
    with pytest.raises(CohepError, match="nope") as err:
        api.run_experiment(data={"path": tmp_path / "nope"}, out=tmp_path / "o")
    assert "\n" not in str(err.value) and not (tmp_path / "o").exists()


def test_bad_arguments_of_the_other_commands(tmp_path):
    with pytest.raises(CohepError, match="number of events must be a positive integer"):
        api.simulate(0, tmp_path / "e.h5")
    with pytest.raises(CohepError, match="out must be a path"):
        api.simulate(10, 5)
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        api.evaluate(tmp_path, tmp_path / "e.h5", batch_size=0)
    with pytest.raises(CohepError, match="give a run"):
        api.quality()
    with pytest.raises(CohepError, match="experiment= needs rpc="):
        api.quality(experiment=tmp_path / "x.json")
    with pytest.raises(CohepError, match="shapley=True needs a run"):
        api.quality(experiment=tmp_path / "x.json", rpc="http://127.0.0.1:9", shapley=True)
    with pytest.raises(ConfigError, match="data.path"):
        api.train(out=tmp_path / "t")


# -- tables ---------------------------------------------------------------------------------------


class _Rows(api._Tabular):
    def _rows(self):
        return [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]


def test_table_and_pandas_agree():
    rows = _Rows()
    assert rows.table() == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    rows.table()[0]["a"] = 99  # a copy each time
    assert rows.table()[0]["a"] == 1
    df = rows.to_pandas()
    assert list(df.columns) == ["a", "b"] and df["a"].tolist() == [1, 2]


def test_to_pandas_without_pandas_is_one_line(monkeypatch):
    real_import = builtins.__import__

    def no_pandas(name, *args, **kwargs):
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("No module named 'pandas'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "pandas", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(CohepError) as err:
        _Rows().to_pandas()
    assert "pip install pandas" in str(err.value) and "\n" not in str(err.value)
    assert _Rows().table()[1]["b"] == "y"  # the table needs nothing
