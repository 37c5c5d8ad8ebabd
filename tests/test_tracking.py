"""[tracking]: a run logged to MLflow or TensorBoard, read back with the tool's own reader, equals the run's records;
a tracking tool that fails is one warning line and the run directory stands; a bad [tracking] is one line, exit 2."""
from __future__ import annotations

import math
from collections import defaultdict

import pytest
from conftest import one_line

from cohep.cli import main
from cohep.config import experiment as config
from cohep.config.tracking import TrackingSection
from cohep.core.errors import ConfigError
from cohep.core.files import read_json
from cohep.run.local import run_experiment
from cohep.run.tracking import TRACKING_FILE, log_run

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

SETTINGS = {
    "experiment": {"learners": 3, "rounds": 2, "seed": 0, "mode": "colearn"},
    "data": {"kind": "mnist", "limit": 450, "holdout": 150},
    "model": {"name": "mnist_cnn"},
    "train": {"epochs": 0.5, "batch_size": 32},
}


def _cfg(mnist_dir, mode, tracking):
    return config.load(None, {**SETTINGS, "experiment": {**SETTINGS["experiment"], "mode": mode},
                              "data": {**SETTINGS["data"], "path": str(mnist_dir)}, "tracking": tracking})


def _by_round(result):
    rows = defaultdict(list)
    for r in result.records:
        rows[r.round].append(r)
    return rows


def _expected(result) -> dict[str, list[tuple[int, float]]]:
    """What every backend must hold, computed here from the records (not by the code under test)."""
    want: dict[str, list[tuple[int, float]]] = defaultdict(list)
    total = 0
    rows = _by_round(result)
    for rnd in sorted(rows):
        accepted = sum(1 for r in rows[rnd] if r.is_proposer and r.accepted) if rnd > 0 else 0
        total += accepted
        want["round/accepted"].append((rnd, accepted))
        want["round/accepted_total"].append((rnd, total))
        want["round/mean_test_accuracy"].append((rnd, sum(r.test_accuracy for r in rows[rnd]) / len(rows[rnd])))
        for r in rows[rnd]:
            want[f"learner/{r.learner}/test_accuracy"].append((rnd, r.test_accuracy))
            if rnd > 0 and math.isfinite(r.vote_score):
                want[f"learner/{r.learner}/vote_score"].append((rnd, r.vote_score))
    last = max(rows)
    want["final/test_accuracy"] = [(last, result.final_accuracy)]
    for i, n in enumerate(result.accepted):
        want[f"final/accepted/{i}"] = [(last, n)]
    assert sum(result.accepted) == total
    return want


def _assert_logged(logged, result):
    for tag, series in _expected(result).items():
        assert [s for s, _ in logged[tag]] == [s for s, _ in series], tag
        assert [v for _, v in logged[tag]] == pytest.approx([v for _, v in series], rel=1e-6), tag


@pytest.fixture(scope="module")
def mlflow_run(tmp_path_factory, mnist_dir, one_torch_thread_module):
    out = tmp_path_factory.mktemp("mlflow") / "run"
    return run_experiment(_cfg(mnist_dir, "colearn", {"backend": "mlflow", "run_name": "mine"}), out)


@pytest.mark.slow  # a 2-round run of 3 learners
def test_mlflow_values_read_back_equal_the_run_records(mlflow_run):
    from mlflow.tracking import MlflowClient

    from cohep.run.tracking.mlflow import read_run

    result = mlflow_run
    where = read_json(result.files["tracking"])
    assert result.files["tracking"] == result.out_dir / TRACKING_FILE
    assert where["backend"] == "mlflow"
    assert where["tracking_uri"] == f"sqlite:///{(result.out_dir / 'mlflow.db').resolve()}"  # in the run directory
    params, metrics = read_run(where["tracking_uri"], where["run_id"])
    assert params == {"name": "experiment", "mode": "colearn", "protocol": "guarded", "model": "mnist_cnn",
                      "learners": "3", "rounds": "2", "seed": "0"}
    _assert_logged(metrics, result)
    # the MLflow side on its own terms: the experiment by name, the run finished, its latest metrics the final ones
    client = MlflowClient(tracking_uri=where["tracking_uri"])
    (run,) = client.search_runs([client.get_experiment_by_name("experiment").experiment_id])
    assert (run.info.run_id, run.info.run_name, run.info.status) == (where["run_id"], "mine", "FINISHED")
    assert run.data.metrics["final/test_accuracy"] == pytest.approx(result.final_accuracy, rel=1e-6)
    assert sum(run.data.metrics[f"final/accepted/{i}"] for i in range(3)) == sum(result.accepted)
    assert "final test accuracy" in run.data.tags["cohep.run"]


@pytest.mark.slow  # logs the module's run again, to a second store
def test_mlflow_given_uri_and_experiment(mlflow_run, tmp_path):
    from cohep.run.tracking.mlflow import read_run

    uri = f"sqlite:///{tmp_path / 'shared.db'}"
    tracking = TrackingSection(backend="mlflow", uri=uri, experiment="nue-cc")
    for _ in range(2):  # the second run joins the experiment the first created
        files = log_run(tracking, mlflow_run, tmp_path, name="again", params={"seed": "0"})
    where = read_json(files["tracking"])
    assert where["tracking_uri"] == uri
    _, metrics = read_run(uri, where["run_id"])
    _assert_logged(metrics, mlflow_run)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    assert len(client.search_runs([client.get_experiment_by_name("nue-cc").experiment_id])) == 2


@pytest.mark.slow  # logs the module's run to stores that fail
def test_a_failing_store_is_one_warning_and_nothing_written(mlflow_run, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for uri in (f"sqlite:///{blocker}/mlflow.db",  # unwritable: its folder is a file
                "http://127.0.0.1:9"):  # a server that is not there (port 9 refuses)
        lines: list[str] = []
        out = tmp_path / "out"
        out.mkdir(exist_ok=True)
        assert log_run(TrackingSection(backend="mlflow", uri=uri), mlflow_run, out, name="x", warn=lines.append) == {}
        assert len(lines) == 1 and "\n" not in lines[0], lines
        assert lines[0].startswith("warning: tracking (mlflow) failed, the run directory is complete without it: ")
        assert not (out / TRACKING_FILE).exists()


@pytest.mark.slow  # a 1-round run through the CLI
def test_cli_run_survives_an_unreachable_server(tmp_path, mnist_dir, capsys, one_torch_thread):
    toml = tmp_path / "exp.toml"
    toml.write_text(f'[experiment]\nlearners = 2\nrounds = 1\nmode = "individual"\n'
                    f'[data]\nkind = "mnist"\npath = "{mnist_dir}"\nlimit = 300\nholdout = 100\n'
                    f'[model]\nname = "mnist_cnn"\n[train]\nepochs = 0.25\n'
                    f'[tracking]\nbackend = "mlflow"\nuri = "http://127.0.0.1:9"\n')
    out = tmp_path / "run"
    assert main(["run", "-c", str(toml), "--out", str(out), "--no-figure"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert [line for line in err if "tracking" in line] == [
        next(line for line in err if line.startswith("warning: tracking (mlflow) failed"))]
    assert (out / "manifest.json").exists() and (out / "records.csv").exists()
    assert not (out / TRACKING_FILE).exists()


@pytest.mark.slow  # a 2-round run of 3 learners
def test_tensorboard_values_read_back_equal_the_run_records(tmp_path, mnist_dir, one_torch_thread):
    from cohep.run.tracking.tensorboard import read_scalars

    result = run_experiment(_cfg(mnist_dir, "colearn", {"backend": "tensorboard", "dir": str(tmp_path / "tb"),
                                                        "run_name": "mine"}), tmp_path / "run")
    assert read_json(result.files["tracking"]) == {"backend": "tensorboard", "location": str(tmp_path / "tb" / "mine")}
    scalars = read_scalars(tmp_path / "tb" / "mine")
    _assert_logged(scalars, result)
    assert [v for _, v in scalars["round/void"]] == [float(any(r.void for r in rows))
                                                    for _, rows in sorted(_by_round(result).items())]


def test_tracking_is_off_by_default_and_checked(mnist_dir, monkeypatch):
    assert not _cfg(mnist_dir, "individual", {}).tracking.active
    bad = [({"backend": "wandb"}, "tracking.backend must be one of none, tensorboard, mlflow, got 'wandb'"),
           ({"bogus": 1}, "tracking"),
           ({"backend": "mlflow", "uri": "ftp://host/x"}, "tracking.uri must be a tracking URI"),
           ({"backend": "mlflow", "uri": "runs/mlflow.db"}, "tracking.uri must be a tracking URI"),
           ({"backend": "mlflow", "uri": "http://:5000"}, "names no host"),
           ({"backend": "mlflow", "uri": "http://host:port"}, "tracking.uri must be a tracking URI"),
           ({"backend": "mlflow", "uri": "sqlite://"}, "names no path"),
           ({"backend": "tensorboard", "uri": "sqlite:///x.db"}, "tracking.uri is for MLflow"),
           ({"backend": "mlflow", "dir": "tb"}, "tracking.dir is TensorBoard's")]
    for tracking, message in bad:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
            _cfg(mnist_dir, "individual", tracking)
    for uri in ("sqlite:///runs/x/mlflow.db", "https://mlflow.example.org", "http://127.0.0.1:5000",
                "postgresql+psycopg2://u@db/mlflow"):
        assert _cfg(mnist_dir, "individual", {"backend": "mlflow", "uri": uri}).tracking.uri == uri
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(ConfigError, match="MLflow refuses unless MLFLOW_ALLOW_FILE_STORE=true"):
        _cfg(mnist_dir, "individual", {"backend": "mlflow", "uri": "file:///tmp/mlruns"})
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    assert _cfg(mnist_dir, "individual", {"backend": "mlflow", "uri": "file:///tmp/mlruns"}).tracking.active


def test_cli_bad_tracking_is_one_line_exit_2(tmp_path, mnist_dir, capsys):
    args = ["run", "--out", str(tmp_path / "run"), "--set", f"data.path={mnist_dir}", "--set", "data.kind=mnist",
            "--set", "tracking.backend=mlflow"]
    assert main([*args, "--set", "tracking.uri=mlflow.db"]) == 2
    assert "tracking.uri must be a tracking URI" in one_line(capsys)
    assert main(["run", "--out", str(tmp_path / "run"), "--set", "tracking.backend=comet"]) == 2
    assert "tracking.backend must be one of none, tensorboard, mlflow" in one_line(capsys)
    assert not (tmp_path / "run").exists()
