"""Small pure helpers of the benchmark scripts whose figures go into docs/: a wrong one misreports."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def byzantine():
    return _load("byzantine")


@pytest.fixture(scope="module")
def transfer():
    return _load("transfer")


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


def test_the_three_learner_colearn_round_can_take_every_learner_each_round(transfer):
    """--three-round all: the colearn runs get three proposers averaged by examples and the tolerant vote;
    the individual and centralised runs (their references) do not change."""
    from types import SimpleNamespace

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
    assert "--events" not in quick and "--doc" in quick  # the short run keeps off the recorded section
    transfer = benches["transfer"].command(full=False, mnist="m", events="ev.h5", gpu=True)
    assert transfer[transfer.index("--events") + 1] == "4000"
    # an MNIST benchmark keeps its short size on a GPU
    assert benches["variants"].size(full=False, gpu=True) == "quick"
    assert benches["variants"].size(full=True, gpu=True) == "full"
    assert run_all.gpu_lent("yes") and not run_all.gpu_lent("no")
    for b in run_all.BENCHES:  # every flag of the GPU size is one the script parses
        source = (BENCH / f"{b.name}.py").read_text()
        for flag in [a for a in b.gpu if a.startswith("--")] + ([b.gpu_events_flag] if b.gpu_events_flag else []):
            assert f'"{flag}"' in source, f"{b.name}: {flag}"


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


def test_variant_names_spell_their_settings():
    """bench/variants.py names: what a name promises is what the config gets (a misparse misreports)."""
    variants = _load("variants")
    v = variants.variant("each5-ex-scr0.1-either-tol0.005")
    assert v["round"] == {"proposers": 5, "combine": "each", "weighting": "examples"}
    assert v["vote"] == {"judge": "screened_average", "norm_bound": 3.0, "peer_margin": 0.3,
                         "direction_floor": -0.1, "metric": "accuracy_or_loss", "margin": -0.005}
    assert variants.variant("each5-ex-scr-either")["vote"]["direction_floor"] == 0.0
    shared = variants.variant("each5-ex-scr0.1h0.5-either-tol0.005")["vote"]
    assert (shared["direction_floor"], shared["direction_share"]) == (-0.1, 0.5)
    assert "direction_share" not in variants.variant("each5-ex-scr0.1-either")["vote"]
    struck = variants.variant("each5-ex-scr0.1h0.5k3-either-tol0.005")["vote"]
    assert (struck["direction_floor"], struck["direction_share"], struck["strikes"]) == (-0.1, 0.5, 3)
    assert variants.variant("each5-ex-scr0.1k2-either")["vote"]["strikes"] == 2
    assert "strikes" not in shared
    assert variants.variant("avg5-ex-loss") == {"round": {"proposers": 5, "combine": "average", "weighting": "examples"},
                                                "train": {"epochs": 1.0}, "vote": {"metric": "loss"}}
    with pytest.raises(SystemExit):
        variants.variant("avg5-either-ex")  # suffixes in their order only


def test_vs_flower_takes_any_variant_name_as_a_cohep_system(monkeypatch):
    """``--systems cohep-VARIANT`` runs the variant bench/variants.py spells, and nothing else is taken."""
    monkeypatch.syspath_prepend(str(BENCH))  # as when run as a script: bench/variants.py beside it
    vs = _load("vs_flower")
    variants = _load("variants")
    assert vs.cohep_system("cohep") == {}
    assert vs.cohep_system("cohep-each5-ex-scr0.1-either-tol0.005") == variants.variant("each5-ex-scr0.1-either-tol0.005")
    assert vs.cohep_system("cohep-each5-ex-scr0.1-either-tol0.005")["vote"]["direction_floor"] == -0.1
    assert vs.cohep_system("cohep-nonsense") is None
    assert vs.cohep_system("fedavg-all") is None


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
    # the floor rejects exactly the slots whose cosine is under it
    assert set(direction_outliers(ups, floor=0.5)) == {j for j, c in cos.items() if c < 0.5} == {0, 2}
