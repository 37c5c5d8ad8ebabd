"""Central training (`cohep train`) and scoring (`cohep evaluate`): files, metrics, bad inputs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from cohep.outputs.checkpoint import resolve as resolve_source
from cohep.cli import main
from cohep.core.errors import ConfigError
from cohep.frameworks.training import TrainConfig
from cohep.central.metrics import ClassificationMetrics
from cohep.models import ModelSpec
from cohep.central.train import split_validation, train_central
from cohep.wire.weights import encode

CLASS_NAMES = ("NC", "numu_CC", "nue_CC")
SHAPE = (3, 32, 32)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _events(n: int, seed: int, shape=SHAPE, n_classes=3):
    """Sparse toy events whose class sets which columns carry charge (ke-, as simulated files)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    rng.shuffle(labels)
    images = np.zeros((n, *shape), dtype=np.float32)
    width = shape[2] // n_classes
    for i, y in enumerate(labels):
        images[i, :, :, y * width : y * width + 3] = rng.uniform(2.0, 200.0, size=(shape[0], shape[1], 3))
    return images, labels.astype(np.int64)


def write_event_file(path, n=48, seed=0, shape=SHAPE, class_names=CLASS_NAMES):
    """A tiny HDF5 event file in the layout of cohep.datasets.events."""
    import h5py

    images, labels = _events(n, seed, shape, len(class_names))
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images.astype(np.float16), chunks=(1, *shape), compression="gzip")
        f.create_dataset("labels", data=labels)
        truth = f.create_group("truth")
        truth.create_dataset("nu_energy", data=np.full(n, 2.0))
        truth.create_dataset("mode", data=np.zeros(n, dtype=np.int64))
        f.attrs["class_names"] = list(class_names)
        f.attrs["view_names"] = ["U", "V", "Y"][: shape[0]]
        f.attrs["pixel_pitch_mm"] = 3.0
        f.attrs["tick_us"] = 0.5
        f.attrs["generator"] = "tests"
        f.attrs["version"] = "0"
        f.attrs["config"] = "{}"
        f.attrs["seed"] = seed
        f.attrs["created"] = "2026-01-01T00:00:00Z"
    return path


# -- library ---------------------------------------------------------------------------------
def test_train_central_writes_history_checkpoint_and_figure(tmp_path):
    xt, yt = _events(60, 1)
    xv, yv = _events(30, 2)
    train = TensorDataset(torch.from_numpy(xt), torch.from_numpy(yt))
    val = TensorDataset(torch.from_numpy(xv), torch.from_numpy(yv))
    spec = ModelSpec("compact", SHAPE, 3)
    seen = []
    result = train_central(spec, train, val, TrainConfig(batch_size=16, lr=3e-3), epochs=3, seed=0,
                           out_dir=tmp_path / "t", class_names=CLASS_NAMES, on_epoch=seen.append)
    assert [r["epoch"] for r in result.history] == [1, 2, 3] == [r["epoch"] for r in seen]
    for key in ("train_accuracy", "train_loss", "val_accuracy", "val_loss", "train_images_per_s"):
        assert all(np.isfinite(r[key]) for r in result.history)
    assert result.best["val_accuracy"] == max(r["val_accuracy"] for r in result.history)
    for name in ("checkpoint.json", "best.safetensors", "history.csv", "history.json", "metrics.json", "figure4.png"):
        assert (tmp_path / "t" / name).stat().st_size > 0
    assert (tmp_path / "t" / "history.csv").read_text().count("\n") == 4
    ckpt = json.loads((tmp_path / "t" / "checkpoint.json").read_text())
    assert ckpt["model"] == spec.to_dict() and ckpt["epoch"] == result.best_epoch
    assert ckpt["class_names"] == list(CLASS_NAMES) and ckpt["sha256"] == result.weights_sha256
    src = resolve_source(tmp_path / "t")
    weights = src.load_weights()  # digest verified
    assert src.kind == "checkpoint" and src.spec == spec and len(weights) > 0
    assert resolve_source(tmp_path / "t" / "best.safetensors").spec == spec
    assert not list((tmp_path / "t").glob("*.part"))  # atomic writes leave no temporaries


def test_classification_metrics_efficiency_purity_confusion():
    labels = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 1, 1])  # class 2 is never predicted
    probs = np.eye(3)[predicted] * 0.8 + 0.2 / 3
    m = ClassificationMetrics.from_predictions(labels, probs, CLASS_NAMES)
    assert m.confusion == [[2, 1, 0], [0, 2, 0], [0, 1, 0]]
    assert m.accuracy == pytest.approx(4 / 6)
    assert m.efficiency == pytest.approx([2 / 3, 1.0, 0.0])
    assert m.purity[:2] == pytest.approx([1.0, 2 / 4]) and m.purity[2] is None
    assert m.confusion_normalised[0] == pytest.approx([2 / 3, 1 / 3, 0])
    d = m.to_dict()
    assert json.loads(json.dumps(d))["purity"][2] is None
    assert "nue_CC" in m.table()


def test_split_validation_is_stratified_and_checked():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    tr, va = split_validation(labels, 0.2, seed=0)
    assert len(va) == 20 and len(tr) == 80 and not set(tr) & set(va)
    assert np.bincount(labels[va]).tolist() == [10, 6, 4]
    assert np.array_equal(split_validation(labels, 0.2, seed=0)[1], va)
    assert len(split_validation(labels, 25, seed=0)[1]) == 25
    for bad in (0, 0.0, 100, -0.1):
        with pytest.raises(ConfigError):
            split_validation(labels, bad, seed=0)


# -- command line ----------------------------------------------------------------------------
def test_cli_train_then_evaluate(tmp_path, capsys):
    from cohep.datasets.events import EventWriter

    data = write_event_file(tmp_path / "events.h5", n=48, seed=0)
    # the data to score comes from the project's own writer, as from `cohep simulate` / `cohep import`
    images, labels = _events(24, 9)
    other = tmp_path / "other.h5"
    with EventWriter(other, n_events=24, image_shape=SHAPE, attrs={"generator": "another detector"}) as w:
        w.write(images, labels)
    out = tmp_path / "train"
    code = main(["train", str(data), "--epochs", "2", "--batch-size", "16", "--lr", "0.003",
                 "--val-fraction", "0.25", "--seed", "1", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "epoch   1/2" in text and "val acc" in text and "best epoch" in text
    # it says first what it trains with: the model the data picked, and the augmentation of wire-plane events
    assert text.splitlines()[0].startswith("central training: model compact, 2 epoch(s); [train.augment] vertex_shift 8")
    assert "pitch_scale 0.4" in text.splitlines()[0]
    assert (out / "best.safetensors").exists() and (out / "figure4.png").stat().st_size > 0
    ckpt = json.loads((out / "checkpoint.json").read_text())
    assert ckpt["data"]["train"] == 36 and ckpt["data"]["validation"] == 12

    code = main(["evaluate", str(out), str(other), "--json", str(tmp_path / "eval.json"),
                 "--plot", str(tmp_path / "cm.png"), "--plots", str(tmp_path / "figs"), "--log",
                 "--scores", str(tmp_path / "scores.parquet")])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "efficiency" in text and "purity" in text and "numu_CC" in text
    assert "95 % Wilson" in text and "AUC" in text
    for name in ("roc", "scores", "scores_log", "efficiency_purity"):
        assert (tmp_path / "figs" / f"{name}.png").stat().st_size > 0
    from cohep.central.scores import read as read_scores

    per_event = read_scores(tmp_path / "scores.parquet")
    assert len(per_event) == 24 and per_event.labels.tolist() == labels.tolist()
    assert np.allclose(per_event.scores.sum(1), 1, atol=1e-5) and per_event.info["weights_sha256"] == ckpt["sha256"]
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["n_events"] == 24 and report["class_names"] == list(CLASS_NAMES)
    assert np.array(report["confusion"]).sum() == 24 and len(report["efficiency"]) == 3
    assert report["weights_sha256"] == ckpt["sha256"]
    assert (tmp_path / "cm.png").stat().st_size > 0
    assert len(report["selections"]) == 3 and report["files"]["scores"].endswith("scores.parquet")
    # the report's confusion matrix is the arg-max of the written scores
    assert np.array(report["confusion"]).diagonal().sum() == int((per_event.predicted == per_event.labels).sum())


def test_evaluate_a_run_directory(tmp_path, capsys):
    from cohep.central.evaluation import evaluate
    from cohep.models import initial_weights
    from cohep.wire.weights import digest

    data = write_event_file(tmp_path / "events.h5", n=12)
    spec = ModelSpec("compact", SHAPE, 3)
    weights = initial_weights(spec, 0)
    run = tmp_path / "run"
    run.mkdir()
    (run / "final_weights.safetensors").write_bytes(encode(weights))
    (run / "manifest.json").write_text(json.dumps({
        "model": spec.to_dict(), "files": {"weights": "final_weights.safetensors"},
        "digests": {"final": digest(weights).hex()},
    }))
    report = evaluate(run, data)
    assert report.metrics.n_events == 12 and report.weights_sha256 == digest(weights).hex()
    # tampered weights are refused, one line, exit 2
    blob = bytearray((run / "final_weights.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (run / "final_weights.safetensors").write_bytes(bytes(blob))
    code = main(["evaluate", str(run), str(data)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "sha256" in err and err.count("\n") == 0


def _exit2(args, capsys, *needles):
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.count("\n") == 0 and "Traceback" not in err
    for needle in needles:
        assert needle in err
    return err


def test_bad_inputs_exit_2(tmp_path, capsys):
    _exit2(["train", str(tmp_path / "events.h5"), "--model", "resnet9000", "--out", str(tmp_path / "o")],
           capsys, "resnet9000", "compact")
    _exit2(["evaluate", str(tmp_path / "nowhere"), str(tmp_path / "events.h5")], capsys, "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    _exit2(["evaluate", str(empty), str(tmp_path / "events.h5")], capsys, "checkpoint.json")
    assert not (tmp_path / "o").exists()


def test_bad_data_exits_2(tmp_path, capsys):
    data = write_event_file(tmp_path / "events.h5", n=24)
    _exit2(["train", str(tmp_path / "missing.h5"), "--out", str(tmp_path / "o")], capsys, "missing.h5")
    _exit2(["train", str(data), "--val-fraction", "30", "--out", str(tmp_path / "o")], capsys, "central.val_fraction")
    _exit2(["train", str(data), "--val-fraction", "2.5", "--out", str(tmp_path / "o")], capsys, "central.val_fraction")
    # a checkpoint for 3 classes / 32 x 32 images against data it cannot score
    spec = ModelSpec("compact", SHAPE, 3)
    from cohep.models import initial_weights

    weights = initial_weights(spec, 0)
    run = tmp_path / "run"
    run.mkdir()
    (run / "final_weights.safetensors").write_bytes(encode(weights))
    (run / "manifest.json").write_text(json.dumps({"model": spec.to_dict()}))
    two = write_event_file(tmp_path / "two.h5", n=8, class_names=("a", "b"))
    _exit2(["evaluate", str(run), str(two)], capsys, "2 classes", "two.h5")
    big = write_event_file(tmp_path / "big.h5", n=6, shape=(3, 40, 40))
    _exit2(["evaluate", str(run), str(big)], capsys, "[3, 40, 40]", "big.h5")
    assert not (tmp_path / "o").exists()
    # the per-event outputs asked for are checked before anything is scored
    three = write_event_file(tmp_path / "three.h5", n=6)
    _exit2(["evaluate", str(run), str(three), "--vs", "lepton_energy"], capsys, "no truth variable lepton_energy",
           "mode, nu_energy")
    _exit2(["evaluate", str(run), str(three), "--scores", str(tmp_path / "s.csv")], capsys, "s.csv", ".parquet")
    assert not (tmp_path / "s.csv").exists()


def test_cli_train_from_a_config_file_with_flag_overrides(tmp_path, capsys):
    data = write_event_file(tmp_path / "events.h5", n=30, seed=0)
    cfg = tmp_path / "central.toml"
    cfg.write_text(f'[experiment]\nseed = 4\n[data]\npath = "{data}"\n[model]\nname = "compact"\n'
                   '[model.params]\njoint = 32\n[train]\nbatch_size = 8\nlr = 2e-3\n'
                   f'[central]\nepochs = 3\nval_fraction = 10\nout = "{tmp_path / "from_config"}"\n')
    code = main(["train", "--config", str(cfg), "--epochs", "1", "--param", "hidden=16"])
    text = capsys.readouterr().out
    assert code == 0, text
    ckpt = json.loads((tmp_path / "from_config" / "checkpoint.json").read_text())
    assert ckpt["epochs"] == 1 and ckpt["seed"] == 4 and ckpt["train"]["batch_size"] == 8
    assert ckpt["train"]["lr"] == 2e-3 and ckpt["data"]["validation"] == 10
    assert ckpt["model"]["params"] == {"joint": 32, "hidden": 16}  # a flag adds to the file's params
    assert ckpt["versions"]["torch"]
    bad = tmp_path / "bad.toml"
    bad.write_text('[central]\nepochz = 3\n')
    _exit2(["train", "--config", str(bad)], capsys, "central.epochz", "bad.toml")
    bad.write_text('[train]\nbatch_size = "big"\n')
    _exit2(["train", "--config", str(bad)], capsys, "train.batch_size", "bad.toml")
    _exit2(["train", "--config", str(tmp_path / "none.toml")], capsys, "none.toml")
    _exit2(["train"], capsys, "data.path")


def test_a_checkpoint_whose_weights_do_not_fit_its_model_is_one_line(tmp_path, capsys):
    """Weights of another architecture under a checkpoint's spec: refused before any scoring."""
    from cohep.outputs import checkpoint
    from cohep.models import initial_weights

    data = write_event_file(tmp_path / "events.h5", n=12)
    small = initial_weights(ModelSpec("compact", SHAPE, 3, {"joint": 32}), 0)
    checkpoint.write(tmp_path / "ck", encode(small), spec=ModelSpec("compact", SHAPE, 3))  # default joint 128
    err = _exit2(["evaluate", str(tmp_path / "ck"), str(data)], capsys, "best.safetensors", "do not fit", "compact")
    assert "shape" in err


def test_data_kind_follows_the_file_and_the_default_model_fits_it(tmp_path, capsys):
    """No --model: an event file gets the compact model; a config need not say what kind of data."""
    data = write_event_file(tmp_path / "events.h5", n=24, seed=0)
    code = main(["train", str(data), "--epochs", "1", "--batch-size", "8", "--out", str(tmp_path / "t")])
    assert code == 0, capsys.readouterr().err
    ckpt = json.loads((tmp_path / "t" / "checkpoint.json").read_text())
    assert ckpt["model"]["name"] == "compact" and ckpt["model"]["input_shape"] == list(SHAPE)



def _run_dir(tmp_path, seed=0):
    """A run directory holding a compact model's weights (the layout `cohep evaluate` reads)."""
    from cohep.models import initial_weights
    from cohep.wire.weights import digest

    spec = ModelSpec("compact", SHAPE, 3)
    weights = initial_weights(spec, seed)
    run = tmp_path / f"run{seed}"
    run.mkdir()
    (run / "final_weights.safetensors").write_bytes(encode(weights))
    (run / "manifest.json").write_text(json.dumps({
        "model": spec.to_dict(), "files": {"weights": "final_weights.safetensors"},
        "digests": {"final": digest(weights).hex()},
    }))
    return run


def test_evaluate_at_a_working_point_fitted_on_another_file(tmp_path, capsys):
    """`cohep evaluate --balance NC,numu_CC --balance-on VAL`: the NC / numu CC decision at the offset
    that balances their efficiencies on VAL (at least as well as the arg-max does there), every nue CC
    decision the arg-max's, and the report, its JSON and the scores file all at that working point."""
    from cohep.central import working_point as wp
    from cohep.central.evaluation import evaluate
    from cohep.central.scores import read as read_scores

    run = _run_dir(tmp_path)
    val = write_event_file(tmp_path / "val.h5", n=90, seed=1)
    test = write_event_file(tmp_path / "test.h5", n=60, seed=2)
    plain = evaluate(run, test, scores=tmp_path / "plain.h5")
    code = main(["evaluate", str(run), str(test), "--balance", "NC,numu_CC", "--balance-on", str(val),
                 "--json", str(tmp_path / "wp.json"), "--scores", str(tmp_path / "wp.parquet")])
    text = capsys.readouterr().out
    assert code == 0, text
    report = json.loads((tmp_path / "wp.json").read_text())
    point = report["working_point"]
    assert point["class_a"] == "NC" and point["class_b"] == "numu_CC" and point["fitted_on"] == str(val)
    assert f"working point: NC against numu_CC balanced on {val}" in text and f"{point['offset']:+.3f}" in text
    # the decisions: the scores' log-probabilities with the offset on NC; nue CC's exactly the arg-max's
    scored = read_scores(tmp_path / "wp.parquet")
    decided = wp.decide(wp.logits_of(scored.scores), point["offset"], 0, 1)
    assert scored.info["working_point"] == point and scored.predicted.tolist() == decided.tolist()
    cm = np.zeros((3, 3), dtype=int)
    np.add.at(cm, (scored.labels, decided), 1)
    assert report["confusion"] == cm.tolist()
    argmax = read_scores(tmp_path / "plain.h5").predicted
    assert point["offset"] != 0 and (decided != argmax).any()  # this model's arg-max is not balanced there
    assert ((decided == 2) == (argmax == 2)).all() and np.allclose(scored.scores, read_scores(tmp_path / "plain.h5").scores)
    assert report["loss"] == pytest.approx(plain.metrics.loss)  # the probabilities are the same
    # on the fitting file the working point balances NC and numu CC at least as well as the arg-max
    evaluate(run, val, scores=tmp_path / "val_scores.h5")
    v = read_scores(tmp_path / "val_scores.h5")
    at = wp.decide(wp.logits_of(v.scores), point["offset"], 0, 1)
    gap = abs(wp.efficiency(at, v.labels, 0) - wp.efficiency(at, v.labels, 1))
    assert gap == pytest.approx(abs(point["efficiency_a"] - point["efficiency_b"]))
    first = v.scores.argmax(1)
    assert gap <= abs(wp.efficiency(first, v.labels, 0) - wp.efficiency(first, v.labels, 1)) + 1e-12
    assert point["events_a"] == int((v.labels == 0).sum()) and point["events_b"] == int((v.labels == 1).sum())
    # the Python API takes the same ask, as a pair or as the flag's text
    from cohep import api

    for ask in (("NC", "numu_CC"), "NC, numu_CC"):
        same = api.evaluate(run, test, balance=ask, balance_on=val).report
        assert same.working_point == point and same.metrics.confusion == report["confusion"]


def test_a_working_point_asked_for_wrongly_is_one_line(tmp_path, capsys):
    run = _run_dir(tmp_path)
    val = write_event_file(tmp_path / "val.h5", n=30, seed=1)
    test = write_event_file(tmp_path / "test.h5", n=30, seed=2)
    base = ["evaluate", str(run), str(test)]
    _exit2([*base, "--balance", "NC,numu CC", "--balance-on", str(val)], capsys, "no class 'numu CC'", "numu_CC")
    _exit2([*base, "--balance", "NC,NC", "--balance-on", str(val)], capsys, "two different class names")
    _exit2([*base, "--balance", "NC,numu_CC"], capsys, "--balance-on FILE")
    _exit2([*base, "--balance", "NC,numu_CC", "--balance-on", str(test)], capsys, "the events scored")
    _exit2([*base, "--balance-on", str(val)], capsys, "--balance A,B")
    _exit2([*base, "--balance", "NC,numu_CC", "--balance-on", str(tmp_path / "nowhere.h5")], capsys, "nowhere.h5")
    # a fitting file without one of the two classes cannot place the working point
    import h5py

    only_nue = write_event_file(tmp_path / "nue.h5", n=30, seed=3)
    with h5py.File(only_nue, "a") as f:
        f["labels"][...] = 2
    _exit2([*base, "--balance", "NC,numu_CC", "--balance-on", str(only_nue)], capsys, str(only_nue), "needs both")
    # and one with other classes is refused before anything is scored
    other = write_event_file(tmp_path / "other.h5", n=30, seed=4, class_names=("a", "b", "c"))
    _exit2([*base, "--balance", "NC,numu_CC", "--balance-on", str(other)], capsys, str(other), "classes a, b, c")
