"""The bench harness (cohep.testing.bench) and the pure helpers of the benchmark scripts whose figures
go into docs/: a wrong one misreports."""
from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from cohep.core.errors import ConfigError
from cohep.testing import bench
from cohep.testing.synthetic import sparse_events, synthetic_digits, synthetic_mnist

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str):
    return bench.load_script(BENCH / f"{name}.py")


@pytest.fixture(scope="module")
def byzantine():
    return _load("byzantine")


@pytest.fixture(scope="module")
def transfer():
    return _load("transfer")


# -- the harness -----------------------------------------------------------------------------------

def test_a_table_aligns_its_columns_and_keeps_the_cells_as_given():
    assert bench.table(("model", "events/s"), [("compact", "12.50"), ("resnet", 3)], align="lr") == [
        "| model | events/s |", "|---|---:|", "| compact | 12.50 |", "| resnet | 3 |"]
    assert bench.table(("a", "b", "c"), [])[1] == "|---|---|---|"  # unnamed columns are left-aligned
    with pytest.raises(ValueError, match="align"):
        bench.table(("a",), [], align="c")


def test_a_page_rerun_replaces_its_own_sections_and_keeps_every_other_line(tmp_path):
    page = tmp_path / "docs" / "byz.md"
    bench.write_doc(page, {"k = 1": "## one\nfirst"}, head="# Title\n\nIntro.", tag="b.py", keep_head=True)
    assert page.read_text() == "# Title\n\nIntro.\n\n<!-- b.py: k = 1 -->\n## one\nfirst\n<!-- /b.py -->\n"
    # a person adds notes between and after the sections; the bench must never lose them
    page.write_text(page.read_text().replace("Intro.", "Intro, edited.") + "\n## Reading it\n\nnotes\n")
    bench.write_doc(page, {"k = 6": "## six\nsecond"}, head="# Title\n\nIntro.", tag="b.py", keep_head=True)
    bench.write_doc(page, {"k = 1": "## one\nrerun"}, head="# Title\n\nIntro.", tag="b.py", keep_head=True)
    text = page.read_text()
    assert text == ("# Title\n\nIntro, edited.\n\n<!-- b.py: k = 1 -->\n## one\nrerun\n<!-- /b.py -->\n\n"
                    "<!-- b.py: k = 6 -->\n## six\nsecond\n<!-- /b.py -->\n\n## Reading it\n\nnotes\n")
    assert os.listdir(page.parent) == ["byz.md"]  # written whole: no temporary file left


def test_a_page_written_before_end_marks_is_read_section_by_section():
    old = "# Old head\n\n<!-- case: a -->\n### a\nold a\n\n<!-- case: b -->\n### b\nold b\n"
    new = bench.merge_sections(old, {"b": "### b\nnew b\n", "c": "### c"}, head="# New head", tag="case")
    assert new == ("# New head\n\n<!-- case: a -->\n### a\nold a\n<!-- /case -->\n\n"
                   "<!-- case: b -->\n### b\nnew b\n<!-- /case -->\n\n<!-- case: c -->\n### c\n<!-- /case -->\n")
    assert bench.merge_sections(new, {"a": "### a\nold a"}, head="# New head", tag="case") == new  # stable
    with pytest.raises(ValueError, match="section name"):
        bench.merge_sections("", {"x -->": "body"})


def test_a_whole_page_and_a_figure_are_written_whole(tmp_path):
    plt = bench.pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    out = bench.save_figure(fig, tmp_path / "figures" / "f.png", dpi=40)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not plt.fignum_exists(fig.number)
    bench.write_doc(tmp_path / "p.md", "# page\n")
    assert (tmp_path / "p.md").read_text() == "# page\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["f.png", "figures", "p.md"]


def test_the_machine_is_described_from_the_machine_itself():
    m = bench.machine()
    assert m.cores == os.cpu_count() and m.python == platform.python_version() and m.numpy == np.__version__
    assert m.memory_gib > 0 and m.cpu
    import torch

    assert torch.__version__.startswith(m.torch)
    assert (m.gpu == "no GPU") == (not torch.cuda.is_available())
    assert f"{m.cores} cores" in str(m) and f"numpy {m.numpy}" in str(m)


def test_common_arguments_parse_the_same_way_in_every_script(tmp_path, capsys):
    home = bench.Home.of(BENCH / "variants.py")
    assert home.root == BENCH.parent and home.doc() == BENCH.parent / "docs" / "benchmarks" / "variants.md"
    assert home.mnist == BENCH.parent.parent / "shared" / "data" / "mnist"  # a default only: not required
    assert home.command(["--note", "a b", "--seeds", "0,1"]) == "python bench/variants.py --note 'a b' --seeds 0,1"
    ap = bench.parser("First line.\n\nMore.")
    bench.add_seed_list(ap, "0")
    bench.add_doc(ap, tmp_path / "d.md", optional=True)
    bench.add_mnist(ap, home)
    args = ap.parse_args(["--seeds", "2,0", "--doc", ""])
    assert (args.seeds, args.doc, args.data) == ([2, 0], None, str(home.mnist)) and ap.description == "First line."
    assert ap.parse_args([]).seeds == [0] and ap.parse_args([]).doc == tmp_path / "d.md"
    with pytest.raises(SystemExit) as exc:
        ap.parse_args(["--seeds", "0,x"])
    assert exc.value.code == 2 and "--seeds" in capsys.readouterr().err
    with pytest.raises(argparse.ArgumentTypeError):
        bench.seed_list("-1")


def test_overlays_are_tables_of_sections(tmp_path):
    good = tmp_path / "v.toml"
    good.write_text('[fast]\ntrain.epochs = 0.5\nvote.metric = "loss"\n')
    assert bench.overlays(good) == {"fast": {"train": {"epochs": 0.5}, "vote": {"metric": "loss"}}}
    bad = tmp_path / "bad.toml"
    bad.write_text('[fast]\nepochs = 0.5\n')
    with pytest.raises(ConfigError, match=r"\[fast\]"):
        bench.overlays(bad)


def test_the_synthetic_data_is_seeded_and_reads_as_mnist(tmp_path):
    from cohep.datasets.source import load_data

    x, y = synthetic_digits(60, seed=3)
    assert x.shape == (60, 28, 28) and x.dtype == np.uint8 and sorted(set(y.tolist())) == list(range(10))
    assert np.array_equal(x, synthetic_digits(60, seed=3)[0]) and not np.array_equal(x, synthetic_digits(60, seed=4)[0])
    data = load_data("mnist", str(synthetic_mnist(tmp_path / "m", 60, seed=3)))
    assert len(data) == 60
    ev, labels = sparse_events(4, (3, 20, 20), seed=1)
    assert ev.shape == (4, 3, 20, 20) and 0 < (ev > 0).mean() < 0.1 and set(labels.tolist()) <= {0, 1, 2}


# -- the scripts' helpers --------------------------------------------------------------------------

def test_a_nonzero_share_never_prints_as_zero(byzantine):
    assert byzantine.share(2, 600) == "2/600 (0.3 %)"  # one random slot in round 0 must show
    assert byzantine.share(0, 120) == "0/120 (0 %)"
    assert byzantine.share(1, 40) == "1/40 (2 %)"
    assert byzantine.share(0, 0) == "-"


def test_the_last_line_says_what_was_not_run_instead_of_nan(byzantine):
    assert byzantine.headline_line(0.0, 0.5).startswith("gross attacks accepted: 0 % (")
    assert byzantine.headline_line(0.0, 0.5).endswith("accuracy drop: 0.5 pts")
    line = byzantine.headline_line(float("nan"), float("nan"))
    assert "nan" not in line and "none run" in line


def test_the_matrix_of_several_seeds_is_their_mean_and_its_worst_drop_is_from_the_diagonal(transfer):
    a = {"x": {"x": 0.8, "y": 0.7}, "y": {"x": 0.6, "y": 0.9}}
    b = {"x": {"x": 0.6, "y": 0.7}, "y": {"x": 0.8, "y": 0.7}}
    mean = transfer.mean_matrix([a, b])
    assert mean["x"] == pytest.approx({"x": 0.7, "y": 0.7}) and mean["y"] == pytest.approx({"x": 0.7, "y": 0.8})
    assert transfer.worst_drop(a) == pytest.approx(30.0)  # y: 0.9 at home, 0.6 on x
    assert transfer.worst_drop(mean) == pytest.approx(10.0)  # not the mean of the seeds' worst drops (30, -10)


def test_three_learner_seeds_are_averaged_and_a_learner_must_beat_its_individual_self_on_both_others(transfer):
    u, p, f = transfer.PRESETS
    colearn = {u: 0.75, p: 0.75, f: 0.80}

    def run(uB_on_PDSP):  # one seed: the individual uB model scores uB_on_PDSP on PDSP
        return {"colearn": [colearn] * 3,
                "individual": [{u: 0.9, p: uB_on_PDSP, f: 0.70}, {u: 0.70, p: 0.9, f: 0.70}, {u: 0.75, p: 0.70, f: 0.9}]}
    assert transfer.beats(run(0.74)) == [True, True, False]  # FD's individual ties colearn on uB: no
    assert transfer.beats(run(0.76)) == [False, True, False]
    mean = transfer.mean_three([run(0.74), run(0.78)])
    assert mean["individual"][0][p] == pytest.approx(0.76) and mean["colearn"][2] == pytest.approx(colearn)
    assert transfer.beats(mean) == [False, True, False]
    assert transfer.beats({"colearn": [colearn] * 3}) == []
    lines = transfer.three_table(mean, "collection", "all", "mean of seeds 1, 2")
    assert "mean of seeds 1, 2" in lines[0] and any("1/3 (uB no, PDSP yes, FD no)" in line for line in lines)
    assert lines[2] == "| mode | learner (own detector) | uB | PDSP | FD | mean on the other two |"
    assert lines[4] == "| colearn | uB | 0.750 | 0.750 | 0.800 | 0.775 |"


def test_the_three_learner_colearn_round_can_take_every_learner_each_round(transfer):
    """--three-round all: the colearn runs get three proposers averaged by examples and the tolerant vote;
    the individual and centralised runs (their references) do not change."""
    args = SimpleNamespace(rounds=2, seed=1, lr=2e-3)
    every = transfer.experiment(args, "colearn", 3, "collection", "all")
    assert (every.round.proposers, every.round.combine, every.round.weighting) == (3, "average", "examples")
    assert (every.vote.metric, every.vote.margin) == ("accuracy_or_loss", -0.005)
    assert every.model.params["planes"] == [2]
    assert transfer.experiment(args, "colearn", 3, "collection").round.proposers == 1
    assert transfer.experiment(args, "individual", 3, "collection", "all") == \
        transfer.experiment(args, "individual", 3, "collection")


def test_make_bench_runs_the_neutrino_task_at_full_size_when_a_gpu_is_lent():
    run_all = _load("run_all")
    benches = {b.name: b for b in run_all.BENCHES}
    byz = benches["byzantine"].command(full=False, mnist="m", events="ev.h5", gpu=True)
    assert byz[byz.index("--tasks") + 1] == "neutrino" and byz[byz.index("--events") + 1] == "ev.h5"
    assert byz[byz.index("--events-limit") + 1] == "0" and "--doc" not in byz  # writes the recorded section
    quick = benches["byzantine"].command(full=False, mnist="m", events="ev.h5", gpu=False)
    assert "--events" not in quick and "--doc" in quick and "--figure" in quick  # keeps off the recorded section
    assert "--no-doc" in benches["ledger"].command(full=False, mnist="m", events="ev.h5")  # the flag it has
    transfer = benches["transfer"].command(full=False, mnist="m", events="ev.h5", gpu=True)
    assert transfer[transfer.index("--events") + 1] == "4000"
    # an MNIST benchmark keeps its short size on a GPU
    assert benches["variants"].size(full=False, gpu=True) == "quick"
    assert benches["variants"].size(full=True, gpu=True) == "full"
    assert run_all.gpu_lent("yes") and not run_all.gpu_lent("no")


def test_every_size_make_bench_runs_is_a_command_line_its_script_parses():
    """Each benchmark's quick, full and GPU arguments, as run_all passes them, through the script's own parser
    (a renamed flag or a bad value fails here, not an hour into ``make bench``)."""
    run_all = _load("run_all")
    for b in run_all.BENCHES:
        ap = bench.load_script(b.script).parser()
        for full, gpu in ((False, False), (True, False), (False, True)):
            argv = b.command(full=full, mnist="mnist", events="ev.h5", gpu=gpu)[2:]
            try:
                ap.parse_args(argv)
            except SystemExit:
                pytest.fail(f"{b.name} at size {b.size(full=full, gpu=gpu)}: {argv}")
    assert {"--mnist", "--only", "--gpu"} <= bench.flags(BENCH / "run_all.py")


def test_the_byzantine_bench_runs_the_full_participation_variant(byzantine, tmp_path):
    """``--metric --margin --weighting --split``: the protocol-variant settings reach every run's config,
    and outcomes of another variant are never pooled with this one's."""
    shape = byzantine.Shape(5, "each", metric="accuracy_or_loss", margin=-0.005, weighting="examples",
                            split="dirichlet", judge="screened_average", direction_floor=0.0)
    task = byzantine.Task("mnist", "mnist", str(tmp_path), 100, 2, 0.2, {}, 4)
    cfg = byzantine.base_config(task, 5, 0, "sign_flip", 1, None, 1.0, shape)
    assert (cfg.vote.metric, cfg.vote.margin, cfg.round.weighting, cfg.round.proposers, cfg.round.combine) == \
        ("accuracy_or_loss", -0.005, "examples", 5, "each")
    assert (cfg.vote.judge, cfg.vote.direction_floor) == ("screened_average", 0.0)
    assert (cfg.data.split, cfg.data.alpha) == ("dirichlet", 0.5)
    plain = byzantine.base_config(task, 5, 0, "sign_flip", 1, None, 1.0, byzantine.Shape(5, "each"))
    assert (plain.vote.metric, plain.round.weighting, plain.data.split, plain.vote.judge) == \
        ("accuracy", "equal", "iid", "alone")
    outcome = byzantine.Outcome("mnist", "5/1", False, "clean", 0, 0, 0, 5, 5, 0.9, float("nan"), 1.0, 5, "each")
    assert byzantine.Shape(5, "each").holds(outcome) and not shape.holds(outcome)
    assert "weighting examples" in shape.label() and "dirichlet" in byzantine.section_title(shape)


def test_every_variant_is_an_experiment_the_settings_layer_accepts():
    """bench/variants.toml: each overlay merged over the bench's experiment builds, and what a label
    promises is what the config gets (a misread label misreports)."""
    variants = _load("variants")
    args = SimpleNamespace(learners=5, rounds=2, data="mnist")
    configs = {name: variants.experiment(args, "dirichlet", name, 0) for name in variants.VARIANTS}
    assert {"k1", "avg5e-loss", "avg2e-loss", "each5-ex-scr0.1h0.5k3-either-tol0.005"} <= set(configs)
    struck = configs["each5-ex-scr0.1h0.5k3-either-tol0.005"]
    assert (struck.round.proposers, struck.round.combine, struck.round.weighting) == (5, "each", "examples")
    assert (struck.vote.judge, struck.vote.norm_bound, struck.vote.peer_margin) == ("screened_average", 3.0, 0.3)
    assert (struck.vote.direction_floor, struck.vote.direction_share, struck.vote.strikes) == (-0.1, 0.5, 3)
    assert (struck.vote.metric, struck.vote.margin) == ("accuracy_or_loss", -0.005)
    assert configs["each5-ex-scr-either-tol0.005"].vote.direction_floor == 0.0
    assert (configs["avg5e-s5"].round.server_lr, configs["avg5e-s5"].train.epochs) == (5.0, 0.2)
    loss = configs["avg5e-loss"]
    assert (loss.round.proposers, loss.round.combine, loss.train.epochs, loss.vote.metric) == (5, "average", 0.2, "loss")
    assert (loss.data.split, loss.experiment.learners, loss.experiment.rounds) == ("dirichlet", 5, 2)


def test_an_unknown_variant_is_one_line_naming_the_flag(capsys):
    variants = _load("variants")
    with pytest.raises(SystemExit) as exc:
        variants.main(["--variants", "k1,avg5-nonsense", "--data", "nowhere"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--variants" in err and "avg5-nonsense" in err


def test_vs_flower_takes_any_variant_as_a_cohep_system():
    """``--systems cohep-VARIANT`` runs the variant of bench/variants.toml, and nothing else is taken."""
    vs = _load("vs_flower")
    variants = _load("variants")
    assert vs.cohep_system("cohep") == {}
    assert vs.cohep_system("cohep-each5-ex-scr0.1-either-tol0.005") == variants.VARIANTS["each5-ex-scr0.1-either-tol0.005"]
    assert vs.cohep_system("cohep-each5-ex-scr0.1-either-tol0.005")["vote"]["direction_floor"] == -0.1
    assert vs.cohep_system("cohep-avg2e-loss") == {"round": {"proposers": 2, "combine": "average"},
                                                   "train": {"epochs": 0.5}, "vote": {"metric": "loss"}}
    assert vs.cohep_system("cohep-nonsense") is None
    assert vs.cohep_system("fedavg-all") is None
    assert vs.table([], "iid")[0].startswith("| system | client-epochs / round |")


def test_byzantine_counts_slots_per_holder_and_names_the_rounds_a_malicious_slot_got_in(byzantine):
    events = [{"name": "RoundStarted", "args": {"round": 1, "proposers": ["0xA", "0xB"]}},
              {"name": "Finalized", "args": {"round": 1, "proposed_slots": 0b11, "accepted_slots": 0b10}},
              {"name": "RoundStarted", "args": {"round": 2, "proposers": ["0xB", "0xA"]}},  # void: no Finalized
              {"name": "RoundStarted", "args": {"round": 3, "proposers": ["0xB", "0xA"]}},
              {"name": "Finalized", "args": {"round": 3, "proposed_slots": 0b10, "accepted_slots": 0b10}}]
    # member 0 (0xa) is malicious: slot 0 in round 1 (rejected), slot 1 in round 3 (accepted); B only in round 1
    assert byzantine.proposals(events, ["0xa", "0xb"], {0}) == (2, 1, 1, 1, [3])


def test_direction_cosines_are_what_the_floor_compares():
    from cohep.protocol.screens import direction_cosines, direction_outliers

    ups = {0: np.array([1.0, 0.0]), 1: np.array([1.0, 1.0]), 2: np.array([0.0, 1.0])}
    cos = direction_cosines(ups)
    assert cos[0] == pytest.approx(1 / np.sqrt(5)) and cos[2] == pytest.approx(1 / np.sqrt(5))
    assert cos[1] == pytest.approx(1.0)
    # both outer slots are under the floor; the farther (a tie: the first) is named, and two slots left
    # are each other's whole reference, so nothing more is compared
    assert {j for j, c in cos.items() if c < 0.5} == {0, 2}
    assert set(direction_outliers(ups, floor=0.5)) == {0}


def test_the_direction_floor_names_the_farthest_slot_first_and_compares_the_rest_without_it():
    """A reversed update sits in every other slot's reference: with three slots it cancels an honest
    slot's partner, and every slot's cosine is below 0. Named one at a time, only the reversed one is."""
    from cohep.protocol.screens import direction_cosines, direction_outliers

    ups = {0: np.array([1.0, 1.0, 0.0]), 1: np.array([1.0, 0.0, 1.0]), 2: -np.array([1.0, 0.5, 0.5])}
    cos = direction_cosines(ups)
    assert cos[0] == pytest.approx(-0.5) and cos[1] == pytest.approx(-0.5) and cos[2] == pytest.approx(-1.0)
    flagged = direction_outliers(ups, floor=0.0)
    assert list(flagged) == [2] and "cosine -1 " in flagged[2]
    # four slots: after the reversed one leaves, the honest three are compared among themselves
    ups[3] = np.array([1.0, 0.5, 0.5])
    assert set(direction_outliers(ups, floor=0.0)) == {2}


def test_the_ledger_profile_times_every_step_and_files_each_opcode_under_its_transaction():
    ledger = _load("ledger")
    p = ledger.profile(4, rounds=3, warmup=1)
    assert set(p["steps"]) == {name for name, _ in ledger.STEP_ROWS} and all(v > 0 for v in p["steps"].values())
    # the round is its steps (a median of sums against a sum of medians: close, not equal)
    assert p["round"] == pytest.approx(sum(p["steps"].values()) + p["other"], rel=0.3) and p["other"] < 0.2 * p["round"]
    for tx in ledger.TRANSACTION_STEPS:  # every transaction runs code, reads and writes storage
        assert p["opcodes"][tx] > 100 and p["sloads"][tx] >= p["slots_read"][tx] >= 1
        assert p["sstores"][tx] >= p["slots_written"][tx] >= 1
    assert p["opcodes"]["finalize"] > p["opcodes"]["propose"]  # the draw and the duties run in finalize
    assert "sign" not in p["opcodes"] and 0 < p["storage_s"] < p["opcode_s"]  # signing runs no EVM code
    from cohep.ledger import Chain

    chain = Chain.embedded(1)  # the opcode table was put back: a fresh chain runs plain py-evm opcodes
    table = chain._tester.backend.chain.get_vm().state.computation_class.opcodes
    assert all(getattr(op, "__name__", "") != "run" for op in table.values())
    text = ledger.profile_text(p)
    assert "| **round** |" in text and "finalize" in text.splitlines()[-3]
