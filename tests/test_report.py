"""The run report, the start line and the learned-nothing warning, from canned records (no training)."""
import math
import struct

import pytest

from cohep.config import experiment as config
from cohep.outputs.plots.rounds import judged_by_others, round_figure
from cohep.outputs.report import final_weights_line, start_line, warnings_for, write_report
from cohep.protocol.records import RoundRecord, RoundTiming
from cohep.run.local import RunResult


def row(rnd, learner, proposer, vote, accepted, acc):
    return RoundRecord(round=rnd, learner=learner, proposer=proposer, is_proposer=learner == proposer, vote=vote,
                       accepted=accepted, void=False, vote_score=0.5, current_vote_score=0.4,
                       proposal_test_accuracy=math.nan, test_accuracy=acc, test_loss=1.0, digest="ab")


def alone_records(n=3, rounds=2):
    """Every learner its own proposer and judge, as individual mode records them."""
    rows = [row(0, i, -1, "", False, 0.1) for i in range(n)]
    for r in range(1, rounds + 1):
        rows += [row(r, i, i, "approve" if i != 1 else "reject", i != 1, 0.1 + 0.2 * r + 0.01 * i) for i in range(n)]
    return rows


def colearn_records(rounds=2):
    rows = [row(0, i, -1, "", False, 0.1) for i in range(3)]
    for r in range(1, rounds + 1):
        p = (r - 1) % 3
        rows += [row(r, i, p, "" if i == p else "approve", True, 0.8) for i in range(3)]
    return rows


def result(mode, *, accepted, acc, classes=2, rounds=3, records=None):
    return RunResult(out_dir=None, mode=mode, records=records or [], timings=[RoundTiming(r) for r in range(1, rounds + 1)],
                     final_accuracy=acc, accepted=accepted, num_classes=classes)


def cfg(**experiment):
    return config.from_dict({"experiment": {"name": "t", "learners": 3, "rounds": 2, **experiment},
                             "model": {"name": "mnist_cnn"}})


def test_a_colearn_run_that_accepted_nothing_at_chance_gets_one_line_with_what_to_try():
    (w,) = warnings_for(result("colearn", accepted=[0, 0, 0], acc=0.5))
    assert w.startswith("warning: no proposal was accepted in 3 round(s) and the final test accuracy 0.5000")
    assert "chance (0.5000 for 2 classes)" in w
    assert all(flag in w for flag in ("-r)", "--epochs)", "--margin"))


@pytest.mark.parametrize("mode, accepted, acc, classes, expect", [
    ("colearn", [1, 0, 0], 0.90, 2, None),
    ("colearn", [1, 0, 0], 0.54, 2, "chance"),  # within 0.05 of 1/2
    ("colearn", [1, 0, 0], 0.56, 2, None),
    ("colearn", [0, 0, 0], 0.90, 2, "no proposal was accepted"),
    ("colearn", [0, 0, 0], math.nan, 10, "no proposal was accepted"),  # no test set: accuracy not judged
    ("individual", [0, 0, 0], 0.90, 10, None),  # nothing to accept from others in a baseline
    ("individual", [2, 2, 2], 0.12, 10, "chance (0.1000 for 10 classes)"),
    ("centralised", [3], 0.50, 2, "chance"),
])
def test_warning_decision(mode, accepted, acc, classes, expect):
    lines = warnings_for(result(mode, accepted=accepted, acc=acc, classes=classes))
    if expect is None:
        assert lines == []
    else:
        assert len(lines) == 1 and expect in lines[0]
        assert ("--margin" in lines[0]) == (mode == "colearn")  # a baseline has no vote margin
        assert ("chance" in lines[0]) == ("chance" in expect)


def test_no_round_played_warns_of_nothing_accepted_only_if_rounds_ran():
    assert warnings_for(result("colearn", accepted=[0, 0], acc=0.9, rounds=0)) == []


def test_start_line_names_the_model_and_the_protocol_shape():
    c = cfg()
    line = start_line(c, model_auto=True)
    assert "model mnist_cnn (auto-picked" in line and "3 learner(s), 2 round(s)" in line
    assert ("protocol guarded (--protocol to choose): [round] proposers 3, combine each; [vote] judge screened_average, "
            "metric accuracy_or_loss, margin -0.005, threshold 0.5") in line  # the default protocol, whole
    paper = start_line(cfg(protocol="paper"), model_auto=True)
    assert "protocol paper (--protocol to choose): [round] proposers 1, combine each; [vote] judge alone" in paper
    assert "auto-picked" not in start_line(c, model_auto=False)
    alone = start_line(cfg(mode="individual"), model_auto=False)
    assert alone.startswith("individual:") and "no protocol (each learner alone)" in alone and "[vote]" not in alone


def test_individual_report_has_each_learners_curve_and_no_votes(tmp_path):
    recs = alone_records()
    res = result("individual", accepted=[2, 0, 2], acc=sum(r.test_accuracy for r in recs[-3:]) / 3, classes=10,
                 rounds=2, records=recs)
    text = write_report(cfg(mode="individual"), res, tmp_path / "report.md").read_text()
    for absent in ("proposer", "votes", "accepted", "outcome", "**warning"):
        assert absent not in text, absent
    assert "| round | learner 0 | learner 1 | learner 2 | mean |" in text
    assert "| 2 | 0.5000 | 0.5100 | 0.5200 | 0.5100 |" in text and "| 0 | 0.1000 | 0.1000 | 0.1000 | 0.1000 |" in text
    assert "final_weights.safetensors holds learner 0's own model only" in text


def test_centralised_report_names_the_pooled_model_and_a_chance_warning(tmp_path):
    recs = [row(r, 0, 0, "approve", True, 0.5) for r in range(3)]
    res = result("centralised", accepted=[2], acc=0.5, rounds=2, records=recs)
    text = write_report(cfg(mode="centralised"), res, tmp_path / "report.md").read_text()
    assert "1 learner(s)" in text and "| round | pooled |" in text and "| 1 | 0.5000 |" in text
    assert "holds the one model trained on the pooled data" in text and "proposer" not in text
    assert f"**{warnings_for(res)[0]}**" in text


def test_colearn_report_keeps_the_protocol_table_and_says_whose_weights(tmp_path):
    res = result("colearn", accepted=[1, 1, 0], acc=0.8, rounds=2, records=colearn_records())
    res.model_auto = True
    text = write_report(cfg(protocol="paper"), res, tmp_path / "report.md").read_text()
    assert "| 1 | 0 | 2/0 | accepted | 0.8000 |" in text and "| 2 | 1 | 2/0 | accepted | 0.8000 |" in text
    assert "`mnist_cnn` (auto-picked for the data)" in text and "- round: proposers 1, combine each" in text
    assert final_weights_line("colearn", 3) in text and "warning" not in text


def test_the_figure_of_a_baseline_draws_curves_not_a_vote_grid(tmp_path):
    assert not judged_by_others(alone_records()) and judged_by_others(colearn_records())
    png = round_figure(alone_records(), tmp_path / "ind.png", title="individual")
    grid = round_figure(colearn_records(), tmp_path / "co.png")
    assert png.read_bytes()[:4] == b"\x89PNG" and grid.read_bytes()[:4] == b"\x89PNG"
    # one panel of curves (4.5 in tall at 120 dpi), not the curves above a grid of grey proposer cells (6.5 in)
    assert height(png) == 540 and height(grid) == 780


def height(png) -> int:
    return struct.unpack(">I", png.read_bytes()[20:24])[0]


def test_the_start_line_says_what_augmentation_the_prepared_run_trains_with():
    from types import SimpleNamespace

    from cohep.run.tasks import augment_for

    events = start_line(augment_for(cfg(), SimpleNamespace(wire_planes=True)), model_auto=False)
    assert events.endswith("; [train.augment] vertex_shift 8, charge_scale 0.3, pitch_scale 0.4, dead_wires 0.02, "
                           "noise 0.1")  # the defaults' switches that are on, cosmics and view dropout off
    digits = start_line(augment_for(cfg(), SimpleNamespace(wire_planes=False)), model_auto=False)
    assert "augment" not in digits  # images without wire planes are not augmented, and the line does not claim it
    off = cfg().replace(train={"augment": {"enabled": False}})
    assert "augment" not in start_line(augment_for(off, SimpleNamespace(wire_planes=True)), model_auto=False)
    alone = cfg(mode="individual").replace(train={"augment": {"pitch_scale": 0.0, "cosmics": 0.5}})
    assert start_line(alone, model_auto=False).endswith(
        "no protocol (each learner alone); [train.augment] vertex_shift 8, charge_scale 0.3, dead_wires 0.02, "
        "noise 0.1, cosmics 0.5")
