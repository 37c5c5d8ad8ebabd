"""The data file given on the command line decides its own kind (issue 26): a config's ``data.kind``
does not turn an HDF5 file into an IDX parse error, and a name cohep cannot read is one line."""
import numpy as np
import pytest
from conftest import one_line

from cohep.cli import main
from cohep.config.experiment import DataSection, kind_of_path
from cohep.core.errors import ConfigError


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    """A small imported event file (3 views, 3 classes)."""
    folder = tmp_path_factory.mktemp("kind")
    rng = np.random.default_rng(0)
    np.savez(folder / "ev.npz", images=rng.random((12, 3, 8, 8)).astype(np.float32), labels=np.arange(12) % 3)
    assert main(["import", str(folder / "ev.npz"), "--out", str(folder / "ev.h5")]) == 0
    return folder / "ev.h5"


def test_auto_kind_follows_the_name(tmp_path):
    assert kind_of_path(None) == "mnist" and kind_of_path("data/mnist") == "mnist"
    assert kind_of_path("a/ev.H5") == "events" and kind_of_path("x.hdf5") == "events"
    assert kind_of_path("mnist.npz") == "mnist" and kind_of_path("train-images-idx3-ubyte.gz") == "mnist"
    assert kind_of_path(str(tmp_path)) == "mnist"  # a folder of IDX files
    with pytest.raises(ConfigError, match="events.csv: cohep cannot tell the data kind"):
        DataSection(path="events.csv").resolved_kind()
    assert DataSection(kind="events", path="events.csv").resolved_kind() == "events"  # said explicitly


def test_run_data_beats_the_configs_kind(events, tmp_path, capsys):
    config = tmp_path / "mnist.toml"
    config.write_text('[data]\nkind = "mnist"\npath = "data/mnist"\n')
    out = tmp_path / "run"
    # read as events: it gets as far as the split (a holdout too small for 3 learners), no IDX error
    assert main(["run", "--config", str(config), "--data", str(events), "-n", "3", "--holdout", "2.0",
                 "--out", str(out)]) == 2
    assert "data.holdout" in one_line(capsys)
    # --data-kind given with it still rules
    assert main(["run", "--config", str(config), "--data", str(events), "--data-kind", "mnist",
                 "--out", str(out)]) == 2
    assert "not an IDX file" in one_line(capsys)


def test_an_unknown_suffix_is_one_line(tmp_path, capsys):
    csv = tmp_path / "events.csv"
    csv.write_text("a,b\n1,2\n")
    assert main(["train", str(csv), "--out", str(tmp_path / "t")]) == 2
    err = one_line(capsys)
    assert f"{csv}: cohep cannot tell the data kind from the name" in err
    assert "IDX file (bad magic" not in err


# -- [train.augment] is for wire planes only ------------------------------------------------------


def test_augmentation_is_for_wire_planes_only(events, tmp_path):
    from cohep.config.experiment import from_dict
    from cohep.datasets.importer import wire_planes
    from cohep.run.tasks import load_task

    rng = np.random.default_rng(2)
    np.savez(tmp_path / "rgb.npz", images=rng.random((12, 3, 8, 8)).astype(np.float32), labels=np.arange(12) % 2)
    assert main(["import", str(tmp_path / "rgb.npz"), "--out", str(tmp_path / "rgb.h5")]) == 0
    np.savez(tmp_path / "digits.npz", x=rng.integers(0, 255, (12, 28, 28), dtype=np.uint8), y=np.arange(12) % 10)
    on = {"train": {"augment": {"vertex_shift": 8}}}
    ran = {}
    for name, path in (("events", events), ("rgb", tmp_path / "rgb.h5"), ("mnist", tmp_path / "digits.npz")):
        cfg, data, _ = load_task(from_dict({**on, "data": {"path": str(path)}}))
        ran[name] = (data.wire_planes, cfg.train.augment.enabled)
    assert ran == {"events": (True, True), "rgb": (False, False), "mnist": (False, False)}
    # the simulator's files (any generator but cohep import) and older imports of wire planes
    assert wire_planes({"generator": "cohep"}) and wire_planes({"generator": "cohep import", "class_names": ["NC", "nue_CC"]})
    assert not wire_planes({"generator": "cohep import", "class_names": ["a", "b"], "pixel_pitch_mm": [np.nan, np.nan]})
