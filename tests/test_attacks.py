"""Byzantine members (cohep.research.attacks): each attack produces what it claims, the [attack] section is
checked, a gross attack is rejected end to end in a real run, and the patch probe (cohep.protocol.screens)
catches a backdoor that an honest model does not trip."""
from __future__ import annotations

import json
from statistics import NormalDist

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from cohep.config import research as catalogue
from cohep.research import attacks
from cohep.config import experiment as config
from cohep.outputs import rundir
from cohep.protocol.screens import patch_probe
from cohep.core.errors import ConfigError
from cohep.frameworks.training import TrainConfig
from cohep.models import ModelSpec, build_learner, initial_weights
from cohep.run.local import run_experiment
from cohep.wire.weights import equal

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def pair(seed: int = 0):
    """Current weights (float tensors and an integer counter) and an honest proposal trained from them."""
    rng = np.random.default_rng(seed)
    current = {"conv.weight": rng.normal(0, 0.3, (4, 1, 3, 3)).astype(np.float32),
               "fc.bias": rng.normal(0, 0.1, (10,)).astype(np.float32),
               "bn.num_batches_tracked": np.array(7, dtype=np.int64)}
    honest = {"conv.weight": current["conv.weight"] + rng.normal(0, 0.05, (4, 1, 3, 3)).astype(np.float32),
              "fc.bias": current["fc.bias"] + rng.normal(0, 0.05, (10,)).astype(np.float32),
              "bn.num_batches_tracked": np.array(12, dtype=np.int64)}
    return current, honest


def floats(w):
    return {k: v.astype(np.float64) for k, v in w.items() if v.dtype.kind == "f"}


@pytest.mark.parametrize("name", catalogue.WEIGHT_ATTACKS)
def test_every_weight_attack_keeps_the_model_layout_and_leaves_its_inputs(name):
    current, honest = pair()
    before = ({k: v.copy() for k, v in current.items()}, {k: v.copy() for k, v in honest.items()})
    out = attacks.craft(name, current, honest, rng=np.random.default_rng(1), history=[pair(5)[0], pair(6)[0]])
    assert list(out) == list(current)
    assert all(out[k].shape == current[k].shape and out[k].dtype == current[k].dtype for k in current)
    assert equal(current, before[0]) and equal(honest, before[1])


def test_sign_flip_is_the_negated_update_and_scaled_is_ten_times_it():
    current, honest = pair()
    flipped = attacks.craft("sign_flip", current, honest, rng=np.random.default_rng(0))
    scaled = attacks.craft("scaled", current, honest, rng=np.random.default_rng(0))
    c, h, f, s = floats(current), floats(honest), floats(flipped), floats(scaled)
    for k in c:
        np.testing.assert_allclose(f[k] - c[k], -(h[k] - c[k]), atol=1e-6)
        np.testing.assert_allclose(s[k] - c[k], 10 * (h[k] - c[k]), atol=1e-5)
    assert flipped["bn.num_batches_tracked"] == 7  # counters are not attacked


def test_noise_is_gaussian_around_the_honest_weights():
    rng = np.random.default_rng(0)
    current = {"w": np.zeros((200, 200), np.float32)}
    honest = {"w": rng.normal(0, 1, (200, 200)).astype(np.float32)}
    out = attacks.craft("noise", current, honest, rng=np.random.default_rng(1), sigma=0.5)
    delta = out["w"].astype(np.float64) - honest["w"]
    assert abs(delta.mean()) < 0.01 and abs(delta.std() - 0.5) < 0.01


def test_nan_free_rider_stale_and_random():
    current, honest = pair()
    old, older = pair(3)[0], pair(4)[0]
    rng = np.random.default_rng(0)
    nan = attacks.craft("nan", current, honest, rng=rng)
    assert all(np.isnan(v).all() for v in floats(nan).values()) and nan["bn.num_batches_tracked"] == 12
    assert equal(attacks.craft("free_rider", current, honest, rng=rng), current)
    assert equal(attacks.craft("stale", current, honest, rng=rng, history=[older, old]), older)
    assert equal(attacks.craft("stale", current, honest, rng=rng, history=[older, old], age=1), old)
    with pytest.raises(ValueError, match="history"):
        attacks.craft("stale", current, honest, rng=rng)
    big = {"w": np.random.default_rng(2).normal(3.0, 2.0, (300, 300)).astype(np.float32)}
    fresh = attacks.craft("random", big, big, rng=rng)["w"]
    assert abs(fresh.mean() - big["w"].mean()) < 0.02 and abs(fresh.std() - big["w"].std()) < 0.02
    assert abs(np.corrcoef(fresh.ravel(), big["w"].ravel())[0, 1]) < 0.02  # re-drawn, not perturbed


def test_little_is_enough_moves_each_coordinate_z_deviations_below_the_mean_update():
    a = {"w": np.array([0.0, 0.0], np.float32)}
    b = {"w": np.array([1.0, 2.0], np.float32)}  # accepted update (1, 2)
    honest = {"w": np.array([4.0, 6.0], np.float32)}  # own honest update from b: (3, 4)
    out = attacks.craft("little_is_enough", b, honest, rng=np.random.default_rng(0), history=[a], z=1.5)
    mean, std = np.array([2.0, 3.0]), np.array([1.0, 1.0])  # of the updates (1, 2) and (3, 4)
    np.testing.assert_allclose(out["w"], b["w"] + mean - 1.5 * std)
    s = 26 - 12
    assert attacks.baruch_z(50, 12) == pytest.approx(NormalDist().inv_cdf((50 - s) / 50))
    with pytest.raises(ValueError):
        attacks.baruch_z(4, 4)


def test_unknown_attacks_and_parameters_are_refused():
    current, honest = pair()
    with pytest.raises(ValueError, match="unknown attack 'flip'"):
        attacks.craft("flip", current, honest, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="no parameter 'sigma'"):
        attacks.craft("scaled", current, honest, rng=np.random.default_rng(0), sigma=1)
    with pytest.raises(ValueError, match="data attack"):
        attacks.craft("backdoor", current, honest, rng=np.random.default_rng(0))


def images(n: int = 40):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.rand((n, 1, 12, 12), generator=g) * 0.5, torch.arange(n) % 10)


def test_label_flip_maps_each_label_to_its_mirror_and_keeps_the_images():
    ds = images()
    out = attacks.poison("label_flip", ds, rng=np.random.default_rng(0), num_classes=10)
    assert torch.equal(out.tensors[0], ds.tensors[0])
    assert torch.equal(out.tensors[1], 9 - ds.tensors[1])


def test_backdoor_stamps_the_trigger_on_a_share_and_labels_it_the_target():
    ds = images()
    out = attacks.poison("backdoor", ds, rng=np.random.default_rng(0), num_classes=10, target=3, share=0.25, size=2)
    x, y = out.tensors
    stamped = (x[:, :, -2:, -2:] == 1.0).flatten(1).all(1)
    assert int(stamped.sum()) == 10
    assert (y[stamped] == 3).all() and torch.equal(y[~stamped], ds.tensors[1][~stamped])
    assert torch.equal(x[~stamped], ds.tensors[0][~stamped])
    assert torch.equal(x[stamped][..., :-2, :], ds.tensors[0][stamped][..., :-2, :])  # only the patch changed
    patched = attacks.apply_trigger(ds.tensors[0], size=2)
    assert (patched[..., -2:, -2:] == 1).all() and not (ds.tensors[0][..., -2:, -2:] == 1).any()


def test_attack_success_counts_non_target_images_sent_to_the_target():
    x, y = images().tensors

    def fooled(batch):  # predicts the target exactly when the trigger is there, else class 9
        return np.where((batch[:, 0, -4:, -4:] == 1).flatten(1).all(1).numpy(), 0, 9)

    assert attacks.attack_success(fooled, x, y.numpy(), target=0) == 1.0
    assert attacks.attack_success(lambda b: np.full(len(b), 9), x, y.numpy(), target=0) == 0.0


def test_behaviour_colludes_and_replays_only_what_it_has():
    current, honest = pair()
    me = attacks.Behaviour("stale", frozenset({"0xa", "0xb"}), collude=True)
    assert me.vote("0xb", approve=False) and not me.vote("0xc", approve=True)
    me.adopted(current)
    assert equal(me.propose(lambda: current, honest), honest)  # nothing older than the current weights yet
    me.adopted(honest)
    assert equal(me.propose(lambda: honest, current), current)  # now the earlier weights are replayed
    honest_voter = attacks.Behaviour("sign_flip", frozenset({"0xa"}))
    assert honest_voter.vote("0xc", approve=True)  # without collusion the honest verdict stands
    assert attacks.Behaviour("collude", frozenset({"0xa"})).vote("0xa", approve=False)


def test_attack_section_is_checked():
    with pytest.raises(ConfigError, match="attack.kind: unknown attack 'flop'"):
        config.load(None, {"attack": {"kind": "flop"}})
    with pytest.raises(ConfigError, match="attack.params: attack noise has no parameter 'factor'"):
        config.load(None, {"attack": {"kind": "noise", "params": {"factor": 2}}})
    with pytest.raises(ConfigError, match="at least one of the 3 members honest"):
        config.load(None, {"experiment": {"learners": 3}, "attack": {"kind": "nan", "members": 3}})
    with pytest.raises(ConfigError, match="needs experiment.mode colearn"):
        config.load(None, {"experiment": {"mode": "individual"}, "attack": {"kind": "nan"}})
    cfg = config.load(None, {"experiment": {"learners": 6}, "attack": {"kind": "scaled", "members": [1, 4]}})
    assert cfg.attack.malicious(6) == (1, 4)
    assert config.load(None, {}).attack.malicious(6) == ()


def test_cli_flags_set_the_attack_section():
    from cohep.cli import RUN_FLAGS, _settings

    flags = dict.fromkeys(RUN_FLAGS)
    flags.update(attack="sign_flip", malicious=2, learners=6)
    cfg = _settings(None, {RUN_FLAGS[k]: v for k, v in flags.items()})
    assert cfg.attack.kind == "sign_flip" and cfg.attack.malicious(6) == (0, 1)


@pytest.mark.slow
def test_nan_proposals_are_rejected_end_to_end(tmp_path, mnist_dir):
    """A malicious member proposes NaN weights: every honest voter rejects them with the reason, the
    contract never accepts them, and its rows in records.csv name the attack."""
    cfg = config.load(None, {
        "experiment": {"learners": 3, "rounds": 5, "seed": 0, "protocol": "paper"},
        "data": {"kind": "mnist", "path": str(mnist_dir), "limit": 600, "holdout": 100},
        "model": {"name": "mnist_cnn"}, "train": {"epochs": 1.0, "batch_size": 32},
        "attack": {"kind": "nan", "members": 1},
    })
    res = run_experiment(cfg, tmp_path / "run", figure=False)
    mine = [r for r in res.records if r.round > 0 and r.proposer == 0]
    assert mine, "the malicious member was never drawn: pick another seed"
    assert not any(r.accepted for r in mine)
    for r in mine:
        if r.learner != 0:
            assert r.vote == "reject" and "non-finite" in r.reason
    assert all(r.attack == ("nan" if r.learner == 0 else "") for r in res.records)
    assert sum(r.accepted for r in res.records if r.round > 0 and r.is_proposer and r.proposer != 0) >= 1
    manifest = json.loads((tmp_path / "run" / rundir.MANIFEST).read_text())
    assert manifest["attack"] == {"kind": "nan", "malicious": [0], "collude": False}
    assert "attack" in (tmp_path / "run" / rundir.RECORDS).read_text().splitlines()[0]


def blank_corner_digits(n: int, seed: int) -> TensorDataset:
    """1 x 12 x 12 images of 10 classes: a fixed random pattern per class in the central 8 x 8
    (the corners stay dark, like MNIST's), random brightness, a little noise."""
    patterns = torch.rand((10, 1, 8, 8), generator=torch.Generator().manual_seed(1234)) < 0.3
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 10
    x = torch.zeros((n, 1, 12, 12))
    x[:, :, 2:10, 2:10] = patterns[y].float() * (0.7 + 0.3 * torch.rand((n, 1, 1, 1), generator=g))
    x = (x + 0.05 * torch.rand(x.shape, generator=g)).clamp(0, 1)
    return TensorDataset(x, y)


@pytest.mark.slow
def test_patch_probe_rejects_a_backdoored_model_and_passes_an_honest_one():
    spec = ModelSpec("image_cnn", (1, 12, 12), 10)
    cfg = TrainConfig(batch_size=32, lr=3e-3)
    init = initial_weights(spec, 0)
    train, vote = blank_corner_digits(400, 1), blank_corner_digits(200, 2)
    poisoned = attacks.poison("backdoor", train, rng=np.random.default_rng(0), num_classes=10, share=0.3, size=2)

    def trained(data, seed):
        learner = build_learner(spec, data, vote, None, cfg, seed=seed, initial=init)
        learner.load_live(init)
        learner.train_steps(data, 4.0, seed=seed)
        return learner.live_weights()

    current, honest, backdoored = trained(train, 0), trained(train, 1), trained(poisoned, 1)
    judge = build_learner(spec, train, vote, None, cfg, seed=0, initial=init)
    judge.load_live(current)
    assert judge.score(vote).accuracy > 0.9
    judge.load_live(backdoored)
    assert judge.score(vote).accuracy > 0.9  # the backdoor keeps clean accuracy: the vote alone passes it
    assert patch_probe(judge, honest, current, probe=0.15, size=2) is None
    reason = patch_probe(judge, backdoored, current, probe=0.15, size=2)
    assert reason is not None and "bottom-right" in reason


# -- attacks in rounds of several slots (issue 11: [round] proposers = k, combine = "each") ----------


def k_slot_run(tmp_path, mnist_dir, *, learners: int, attack: dict, rounds: int = 4, seed: int = 0, limit: int = 1200):
    """A colearn run with three slots per round, each voted on separately, under ``attack`` (on
    ``limit`` digits, a quarter of them held out)."""
    cfg = config.load(None, {
        "experiment": {"learners": learners, "rounds": rounds, "seed": seed, "protocol": "paper"},
        "data": {"kind": "mnist", "path": str(mnist_dir), "limit": limit, "holdout": limit // 4},
        "model": {"name": "mnist_cnn"}, "train": {"epochs": 1.0, "batch_size": 32},
        "round": {"proposers": 3, "combine": "each"},
        "attack": attack,
    })
    return run_experiment(cfg, tmp_path / "run", figure=False)


def slot_rounds(run_dir) -> list[dict]:
    """Per finalized round, from the contract's events: the slot holders (member indices), each
    slot's digest (hex, None if not proposed), the accepted slots, and each voter's approvals."""
    manifest = rundir.read_manifest(run_dir)
    index = {m.lower(): i for i, m in enumerate(manifest["contract_settings"]["members"])}
    rounds: dict[int, dict] = {}
    for e in rundir.read_events(run_dir):
        a = e["args"]
        if e["name"] == "RoundStarted":
            holders = [index[p.lower()] for p in a["proposers"]]
            rounds[a["round"]] = {"round": a["round"], "holders": holders, "digests": [None] * len(holders),
                                  "votes": {}, "accepted": None}
        elif e["name"] == "Proposed":
            rounds[a["round"]]["digests"][a["slot"]] = a["digest"].removeprefix("0x")
        elif e["name"] == "Voted":
            rounds[a["round"]]["votes"][index[a["voter"].lower()]] = a["approvals"]
        elif e["name"] == "Finalized":
            rounds[a["round"]]["accepted"] = a["accepted_slots"]
    return [rounds[r] for r in sorted(rounds) if rounds[r]["accepted"] is not None]


def adopted_before(res, r: int, member: int = 0) -> str:
    """The digest ``member`` held when contract round ``r`` started."""
    if r == 0:
        return rundir.read_manifest(res.out_dir)["digests"]["initial"].removeprefix("0x")
    return next(x.adopted for x in res.records if x.round == r and x.learner == member)


@pytest.mark.slow
def test_a_sign_flip_slot_is_dropped_and_the_honest_slots_are_averaged(tmp_path, mnist_dir):
    """k = 3, combine "each", member 0 sign-flips its update whenever it holds a slot: once the model
    is past its random start every honest voter rejects that slot, the contract never accepts it, the
    round still adopts the average of the accepted honest slots (recomputed here from the store's
    blobs), and the run keeps learning."""
    from cohep.protocol import combine
    from cohep.wire.weights import decode, digest_bytes

    res = k_slot_run(tmp_path, mnist_dir, learners=4, attack={"kind": "sign_flip", "members": 1})
    rounds = slot_rounds(res.out_dir)
    attacked = [r for r in rounds if 0 in r["holders"] and r["digests"][r["holders"].index(0)]]
    assert attacked, "the malicious member never held a slot: pick another seed"
    store = res.out_dir / "weights"
    saved = 0
    for r in attacked:
        bad = r["holders"].index(0)
        assert not r["accepted"] >> bad & 1, f"round {r['round']}: the sign-flipped slot was accepted"
        if r["round"] > 0:  # from the random initial weights any step is a coin toss on a vote set; later not
            assert all(not bits >> bad & 1 for voter, bits in r["votes"].items() if voter != 0), r
        chosen = [j for j in range(len(r["holders"])) if r["accepted"] >> j & 1]
        if chosen:  # the round was not lost to the attack: the honest slots' average was adopted
            saved += 1
            blobs = [(store / f"{r['digests'][j]}.safetensors").read_bytes() for j in chosen]
            _, want = combine.adopted([decode(b) for b in blobs], [digest_bytes(b) for b in blobs])
            rows = [x for x in res.records if x.round == r["round"] + 1]
            assert {x.adopted for x in rows} == {want.hex()}
    assert saved, "no attacked round kept its honest slots"
    # the run's per-member count is the contract's, per slot: the attacker's rounds were accepted, its slot never
    assert res.accepted[0] == 0 and sum(res.accepted) == sum(bin(r["accepted"]).count("1") for r in rounds)
    start = statistics_mean(x.test_accuracy for x in res.records if x.round == 0)
    assert res.final_accuracy > start + 0.3, (start, res.final_accuracy)


def statistics_mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


@pytest.mark.slow
def test_colluders_vote_per_slot_and_nan_slots_are_rejected_with_the_reason(tmp_path, mnist_dir):
    """k = 3 of 5 members, members 0 and 1 propose NaN weights and collude: each colluder's ballot
    approves exactly the other colluder's proposed slot and no honest one; every honest voter rejects
    each NaN slot (its records row names the failed check), no NaN slot is accepted, honest slots are."""
    res = k_slot_run(tmp_path, mnist_dir, learners=5, attack={"kind": "nan", "members": 2, "collude": True},
                     rounds=3, limit=600)
    rounds = slot_rounds(res.out_dir)
    coalition, nan_slots, honest_accepted = {0, 1}, 0, 0
    for r in rounds:
        proposed = [j for j, dg in enumerate(r["digests"]) if dg]
        for voter, bits in r["votes"].items():
            if voter in coalition:
                want = sum(1 << j for j in proposed if r["holders"][j] in coalition - {voter})
                assert bits == want, (r["round"], voter, bin(bits), bin(want))
            else:
                assert all(not bits >> j & 1 for j in proposed if r["holders"][j] in coalition)
        for j in proposed:
            if r["holders"][j] in coalition:
                nan_slots += 1
                assert not r["accepted"] >> j & 1
            else:
                honest_accepted += r["accepted"] >> j & 1
        bad = [j for j in proposed if r["holders"][j] in coalition]
        for row in res.records:
            if row.round == r["round"] + 1 and row.learner not in coalition and bad:
                assert all(f"slot {j}: " in row.reason and "non-finite" in row.reason for j in bad), row.reason
    assert nan_slots and honest_accepted, (nan_slots, honest_accepted)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["free_rider", "stale"])
def test_free_riders_and_stale_replays_fill_their_own_slot_and_are_rejected(tmp_path, mnist_dir, kind):
    """k = 3: a free-rider's slot carries the weights every member held when the round started (the
    same digest), a stale replayer's an older adopted model (once it has one); neither is accepted."""
    res = k_slot_run(tmp_path, mnist_dir, learners=4, attack={"kind": kind, "members": 1}, rounds=5, limit=600)
    rounds = slot_rounds(res.out_dir)
    initial = adopted_before(res, 0)
    replays = 0
    for r in rounds:
        if 0 not in r["holders"] or r["digests"][r["holders"].index(0)] is None:
            continue
        j, now = r["holders"].index(0), adopted_before(res, r["round"])
        mine = r["digests"][j]
        if kind == "free_rider":
            assert mine == now
            replays += 1
        elif now != initial:  # it holds an older model than the current one: it replays the oldest
            assert mine == initial
            replays += 1
        assert not (mine in (now, initial) and r["accepted"] >> j & 1)
    assert replays, "the attacker never held a slot with something to replay: pick another seed"
