"""cohep import from ROOT: a TTree written by uproot imports to the same events as the NPZ it was made from."""
from __future__ import annotations

import numpy as np
import pytest

from cohep.cli import main
from cohep.core.errors import DataError
from cohep.datasets.events import EventFile
from cohep.datasets.importer import ImportSettings, import_events

uproot = pytest.importorskip("uproot")


def _maps(n=10, seed=0, shape=(3, 24, 20)):
    rng = np.random.default_rng(seed)
    images = np.where(rng.random((n, *shape)) < 0.15, rng.uniform(1, 250, (n, *shape)), 0).astype(np.float32)
    return images, (np.arange(n) % 3).astype(np.int32)


def _same(a, b):
    with EventFile(a) as fa, EventFile(b) as fb:
        assert fa.class_names == fb.class_names and np.array_equal(fa.labels, fb.labels)
        np.testing.assert_array_equal(fa.images(slice(None)), fb.images(slice(None)))
        return fa.images(slice(None)).shape


@pytest.mark.parametrize("layout", ["fixed", "jagged"])
def test_a_root_tree_imports_to_the_same_events_as_its_npz(tmp_path, layout):
    images, labels = _maps()
    np.savez(tmp_path / "ev.npz", images=images, labels=labels)
    root = tmp_path / "ev.root"
    with uproot.recreate(root) as f:
        if layout == "fixed":  # float[3][24][20] per event
            tree = f.mktree("cvn", {"pixels": (np.float32, images.shape[1:]), "interaction": np.int32})
            tree.extend({"pixels": images, "interaction": labels})
        else:  # a variable-length float array per event: the flat map
            import awkward as ak

            tree = f.mktree("cvn", {"pixels": "var * float32", "interaction": np.int32})
            tree.extend({"pixels": ak.Array([m.ravel() for m in images]), "interaction": labels})
    assert uproot.open(root).classnames() == {"cvn;1": "TTree"}
    options = dict(wire_pitch_mm=3.0, time_per_pixel_us=2.0, size=(16, 12), charge_factor=2.5)
    import_events(tmp_path / "ev.npz", tmp_path / "from_npz.h5", ImportSettings(**options))
    extra = {"map_shape": (3, 24, 20)} if layout == "jagged" else {}
    summary = import_events(root, tmp_path / "from_root.h5",
                            ImportSettings(images="pixels", labels="interaction", **extra, **options))
    assert summary.events == 10 and summary.format == "root"
    assert _same(tmp_path / "from_npz.h5", tmp_path / "from_root.h5") == (10, 3, 16, 12)


def test_root_through_the_cli_with_a_named_tree_and_one_line_errors(tmp_path, capsys):
    images, labels = _maps(6, 1)
    np.savez(tmp_path / "ev.npz", images=images, labels=labels)
    root = tmp_path / "two.root"
    with uproot.recreate(root) as f:
        f["a"] = {"images": images, "labels": labels}  # uproot writes an RNTuple this way
        f.mktree("b", {"x": np.int64}).extend({"x": np.arange(6)})
    assert main(["import", str(tmp_path / "ev.npz"), "-o", str(tmp_path / "n.h5")]) == 0
    assert main(["import", str(root), "--tree", "a", "-o", str(tmp_path / "r.h5")]) == 0
    capsys.readouterr()
    _same(tmp_path / "n.h5", tmp_path / "r.h5")
    for args, needle in ((["import", str(root), "-o", str(tmp_path / "x.h5")], "2 TTrees (a, b)"),
                         (["import", str(root), "--tree", "b", "-o", str(tmp_path / "x.h5")], "no branch 'images'"),
                         (["import", str(root), "--tree", "c", "-o", str(tmp_path / "x.h5")], "no TTree 'c'")):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err
    bad = tmp_path / "bad.root"
    bad.write_bytes(b"not root at all")
    with pytest.raises(DataError, match="bad.root"):
        import_events(bad, tmp_path / "y.h5")
