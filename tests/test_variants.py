"""Protocol variants (issue 10): k proposers per round, the vote on each slot or on their average,
the average every member and the audit recompute, and the proximal term in local training."""
from __future__ import annotations

import hashlib
from fractions import Fraction

import numpy as np
import pytest

from cohep.protocol import combine
from cohep.config import experiment as config
from cohep.run.audit import audit_run
from cohep.core.errors import ChainError
from cohep.ledger import Chain, Coordinator
from cohep.ledger.draw import proposer_indices
from cohep.protocol.view import RoundView
from cohep.wire.weights import MAX_EXAMPLES, decode, digest, digest_bytes

SEED = hashlib.sha256(b"cohep variants seed").digest()
INITIAL = hashlib.sha256(b"initial weights").digest()
URI = "file:///tmp/store/"


def d(tag: str) -> bytes:
    return hashlib.sha256(tag.encode()).digest()


def reverts(reason: str):
    return pytest.raises(ChainError, match=f": {reason}$")


@pytest.fixture(scope="module")
def chain() -> Chain:
    return Chain.embedded(8)


def deploy(chain, n=5, **kw) -> Coordinator:
    kw.setdefault("seed", SEED)
    kw.setdefault("sealed", False)  # these tests vote with plain vote()
    return Coordinator.deploy(chain, chain.accounts[:n], initial_digest=INITIAL, model_digest=d("model"), **kw)


# -- the average and the combination -----------------------------------------------------------


def test_average_is_fixed_order_float32_and_one_proposal_is_itself():
    rng = np.random.default_rng(0)
    ws = [{"a": rng.normal(size=(3, 4)).astype(np.float32), "n": np.array([2 + i], dtype=np.int64)}
          for i in range(3)]
    avg = combine.average(ws)
    expected = ((ws[0]["a"] + ws[1]["a"]) + ws[2]["a"]) / np.float32(3)
    assert avg["a"].dtype == np.float32 and np.array_equal(avg["a"], expected)
    assert avg["n"].dtype == np.int64 and avg["n"][0] == (2 + 3 + 4) // 3
    # the same inputs give the same bytes; another order may not, so the order is part of the rule
    assert digest(combine.average(ws)) == digest(avg)
    one, dig = combine.adopted([ws[0]], [b"x" * 32])
    assert dig == b"x" * 32 and one is ws[0]
    with pytest.raises(ValueError):
        combine.average([ws[0], {"a": ws[1]["a"][:2], "n": ws[1]["n"]}])


def test_server_step_is_fixed_order_float32_and_one_is_the_old_path():
    rng = np.random.default_rng(1)
    w0 = {"a": rng.normal(size=(4, 3)).astype(np.float32), "n": np.array([7], dtype=np.int64)}
    ws = [{"a": (w0["a"] + 0.01 * rng.normal(size=(4, 3))).astype(np.float32), "n": np.array([8 + i], np.int64)}
          for i in range(5)]
    digests = [d(f"p{i}") for i in range(5)]
    avg = combine.average(ws)
    stepped, dg = combine.adopted(ws, digests, start=w0, server_lr=5.0)
    # w0 + s (avg - w0), each operation in float32: the rule every member and the audit apply
    want = w0["a"] + np.float32(5.0) * (avg["a"] - w0["a"])
    assert stepped["a"].dtype == np.float32 and np.array_equal(stepped["a"], want)
    assert not np.array_equal(stepped["a"], avg["a"])
    assert np.array_equal(stepped["n"], avg["n"])  # counters are averaged, not stepped
    assert dg == digest(stepped) == combine.adopted(ws, digests, start=w0, server_lr=5.0)[1]
    # s = k with k updates approximates their sum: one client-epoch from k pieces of 1/k epoch
    total = w0["a"] + sum(w["a"] - w0["a"] for w in ws)
    assert np.allclose(stepped["a"], total, atol=1e-5)
    # server_lr = 1: the old average bit for bit (the start is not even used), one proposal is itself
    assert combine.adopted(ws, digests, start=w0, server_lr=1.0)[1] == combine.adopted(ws, digests)[1] == digest(avg)
    one, dig = combine.adopted(ws[:1], digests[:1], start=w0, server_lr=1.0)
    assert one is ws[0] and dig == digests[0]
    # with a step, one accepted proposal is stepped too (its own digest no longer names the weights)
    one5, dig5 = combine.adopted(ws[:1], digests[:1], start=w0, server_lr=5.0)
    assert dig5 == digest(one5) != digests[0]
    with pytest.raises(ValueError, match="start weights"):
        combine.adopted(ws, digests, server_lr=5.0)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="server_lr"):
            combine.adopted(ws, digests, start=w0, server_lr=bad)


def test_combination_matches_the_contract(chain):
    c = deploy(chain, n=4, proposers=3)
    st = c.round_state(0)
    digests = [d(f"w{j}") for j in range(3)]
    for s in st.slots:
        c.propose(s.proposer, 0, digests[s.slot], URI + str(s.slot), s.slot)
    for m in c.round_state(0).voters:
        own = c.round_state(0).slot_of(m)
        bits = 0b111 & ~(1 << own) if own is not None else 0b111
        c.vote_slots(m, 0, bits, [1, 2, 3])
    out = c.finalize(st.proposer, 0)
    assert out.accepted_slots == 0b111 and out.slot_approvals == (3, 3, 3)
    assert c.accepted_digest() == combine.combination(digests) == out.digest
    assert combine.combination(digests[:1]) == digests[0]


# -- contract rules ----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 5, 7])
def test_k_distinct_proposers_match_the_python_draw(chain, n):
    for k in range(1, n + 1):
        c = deploy(chain, n=n, proposers=k)
        seed = c.settings().draw_seed  # the deployer's seed mixed with the deployment block's hash
        for r in range(2 * n + 1):
            picks = proposer_indices(seed, n, r, [True] * n, k)
            assert c.draw_slots(r) == picks and len(set(picks)) == k
        members = c.members()
        assert c.proposers_of(0) == [members[i] for i in proposer_indices(seed, n, 0, [True] * n, k)]
    # k = 1 is the one-proposer draw, unchanged
    from cohep.ledger.draw import proposer_index

    assert [proposer_indices(SEED, n, r, [True] * n)[0] for r in range(3 * n)] == \
        [proposer_index(SEED, n, r, [True] * n) for r in range(3 * n)]


def test_slot_and_ballot_rules(chain):
    c = deploy(chain, n=5, proposers=3, proposal_window=6)
    st = c.round_state(0)
    assert len(st.slots) == 3 and set(st.voters) == set(c.members()) and st.eligible == 5
    assert st.required == 2  # half of the 4 members other than each slot's proposer
    a, b, third = st.slots
    with reverts("not the proposer"):
        c.propose(a.proposer, 0, d("a"), URI, 1)
    with reverts("no such slot"):
        c.propose(a.proposer, 0, d("a"), URI, 3)
    c.propose(a.proposer, 0, d("a"), URI + "a", 0)
    with reverts("already proposed"):
        c.propose(a.proposer, 0, d("a2"), URI, 0)
    c.propose(b.proposer, 0, d("b"), URI + "b", 1)
    assert not c.round_state(0).proposed
    with reverts("proposals still open"):
        c.vote_slots(a.proposer, 0, 0b10, [0, 1, 0])
    chain.mine(6)  # slot 2 stays silent: voting opens once the proposal window is over
    st = c.round_state(0)
    assert st.proposed and st.proposed_slots == 0b011
    with reverts("cannot approve own proposal"):
        c.vote_slots(a.proposer, 0, 0b11, [0, 1, 0])
    with reverts("approvals outside the slots"):
        c.vote_slots(a.proposer, 0, 0b110, [0, 1, 0])
    with reverts("one score per slot"):
        c.vote_slots(a.proposer, 0, 0b10, [1])
    others = [m for m in c.members() if m not in (a.proposer, b.proposer, third.proposer)]
    c.vote_slots(a.proposer, 0, 0b10, [0, 5, 0])
    with reverts("already voted"):
        c.vote_slots(a.proposer, 0, 0b10, [0, 5, 0])
    c.vote_slots(third.proposer, 0, 0b10, [1, 2, 0])
    for m in others:
        c.vote_slots(m, 0, 0b01, [3, 0, 0])
    assert c.ballot_bits(0, a.proposer) == 0b10 and c.ballot(0, others[0]) is True
    with reverts("too early to finalize"):  # b has not voted, and its vote window is open
        c.finalize(a.proposer, 0)
    chain.mine(c.settings().vote_window + 1)
    out = c.finalize(a.proposer, 0)  # b's slot unvoted: b missed a vote; slot 2's holder missed its proposal
    # slot 0: 2 approvals (the two others) >= 2; slot 1: 2 approvals (a, third) >= 2
    assert out.accepted_slots == 0b011 and out.proposed_slots == 0b011 and out.slot_approvals == (2, 2, 0)
    assert c.accepted_digest() == combine.combination([d("a"), d("b")]) and c.accepted_round() == 0
    assert c.member_stats(b.proposer).missed == 1 and c.member_stats(third.proposer).missed == 1
    assert c.member_stats(a.proposer).missed == 0 and c.member_stats(a.proposer).accepted == 1


def test_vote_on_the_average(chain):
    c = deploy(chain, n=4, proposers=2, combine="average")
    st = c.round_state(0)
    assert st.eligible == 4 and st.required == 2  # every active member judges the average
    for s in st.slots:
        c.propose(s.proposer, 0, d(f"s{s.slot}"), URI, s.slot)
    voters = c.round_state(0).voters
    with reverts("approvals outside the slots"):
        c.vote_slots(voters[0], 0, 0b10, [1])
    with reverts("one score for the average"):
        c.vote_slots(voters[0], 0, 1, [1, 2])
    c.vote_slots(voters[0], 0, 1, [1])
    c.vote_slots(voters[1], 0, 0, [1])
    c.vote_slots(voters[2], 0, 0, [1])
    c.vote_slots(voters[3], 0, 0, [1])
    out = c.finalize(voters[0], 0)
    assert not out.accepted and out.accepted_slots == 0 and out.slot_approvals == (1,)
    assert c.accepted_digest() == INITIAL
    st = c.round_state(1)
    for s in st.slots:
        c.propose(s.proposer, 1, d(f"t{s.slot}"), URI, s.slot)
    for m, approve in zip(c.round_state(1).voters, (True, True, False, True)):
        c.vote(m, 1, approve, 0)
    out = c.finalize(voters[0], 1)
    assert out.accepted and out.accepted_slots == 0b11  # the average is all proposed slots
    assert c.accepted_digest() == combine.combination([d("t0"), d("t1")])


def test_one_slot_rounds_keep_the_v2_rules(chain):
    c = deploy(chain, n=3, proposers=1, combine="average", threshold=Fraction(1, 2))
    st = c.round_state(0)
    assert len(st.slots) == 1 and st.eligible == 2 and st.proposer not in st.voters
    c.propose(st.proposer, 0, d("w"), URI)
    with reverts("proposer cannot vote"):
        c.vote(st.proposer, 0, True, 0)
    for m in st.voters:
        c.vote(m, 0, True, 0)
    out = c.finalize(st.proposer, 0)
    assert out.accepted and c.accepted_digest() == d("w")


def test_deployment_bounds_the_slots(chain):
    with reverts("proposers out of range"):
        deploy(chain, n=3, proposers=4)
    with reverts("proposers out of range"):
        deploy(chain, n=3, proposers=0)


# -- the proximal term -------------------------------------------------------------------------


def _learner(mnist_dir, **train):
    from cohep.datasets.source import load_data
    from cohep.frameworks.training import TrainConfig
    from cohep.models import ModelSpec, build_learner, initial_weights

    data = load_data("mnist", str(mnist_dir), limit=300)
    spec = ModelSpec("mnist_cnn", tuple(data.input_shape), len(data.class_names), {})
    init = initial_weights(spec, 0)
    cfg = TrainConfig.from_mapping({"epochs": 1.0, "batch_size": 32, "device": "cpu", **train})
    idx = np.arange(len(data))
    return build_learner(spec, data.subset(idx[:240]), data.subset(idx[240:]), None, cfg, seed=3, initial=init), init


def _distance(a, b) -> float:
    return float(sum(np.sum((np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64)) ** 2) for k in a))


def test_proximal_term_zero_is_plain_training_and_mu_pulls_towards_the_start(mnist_dir, one_torch_thread):
    plain, init = _learner(mnist_dir)
    zero, _ = _learner(mnist_dir, proximal_mu=0.0)
    strong, _ = _learner(mnist_dir, proximal_mu=10.0)
    w_plain, w_zero, w_strong = plain.propose(), zero.propose(), strong.propose()
    assert digest(w_plain) == digest(w_zero)
    assert _distance(w_strong, init) < 0.5 * _distance(w_plain, init)


# -- end to end --------------------------------------------------------------------------------


#: four learners on the paper round: the base the settings checks below vary
PAPER4 = {"learners": 4, "protocol": "paper"}


def small_cfg(mnist_dir, **over):
    base = {
        "experiment": {"learners": 4, "rounds": 2, "seed": 0, "protocol": "paper"},  # the variants are over the paper round
        "data": {"kind": "mnist", "path": str(mnist_dir), "limit": 1200, "holdout": 300},
        "model": {"name": "mnist_cnn"},
        "train": {"epochs": 1.0, "batch_size": 32},
        "round": {"proposers": 3, "combine": "average"},
    }
    return config.load(None, config.merge(base, over))


@pytest.fixture(scope="module")
def average_run(tmp_path_factory, mnist_dir, one_torch_thread_module):
    from cohep.run.local import run_experiment

    return run_experiment(small_cfg(mnist_dir), tmp_path_factory.mktemp("avg") / "run", figure=False)


def test_averaged_digest_is_recomputed_by_every_member_and_the_audit(average_run):
    from cohep.outputs import rundir

    res = average_run
    events = rundir.read_events(res.out_dir)
    fin = [e for e in events if e["name"] == "Finalized"]
    assert fin and fin[0]["args"]["accepted_slots"] == 0b111, "round 1's average should be accepted"
    # recompute round 1's average from the store's blobs, in slot order
    slots = sorted((e["args"]["slot"], e["args"]["uri"], e["args"]["digest"]) for e in events
                   if e["name"] == "Proposed" and e["args"]["round"] == 0)
    store = res.out_dir / "weights"
    blobs = [(store / f"{combine_hex(dg)}.safetensors").read_bytes() for _, _, dg in slots]
    assert all(digest_bytes(b).hex() == combine_hex(dg) for b, (_, _, dg) in zip(blobs, slots))
    _, want = combine.adopted([decode(b) for b in blobs], [digest_bytes(b) for b in blobs])
    rows = [r for r in res.records if r.round == 1]
    assert len(rows) == 4 and {r.adopted for r in rows} == {want.hex()}
    assert want.hex() != combine_hex(fin[0]["args"]["digest"])  # the chain's identity is not the average's digest
    report = audit_run(res.out_dir)
    assert report.clean, report.text()
    assert report.replayed[0]["adopted"] == want.hex()
    last = [r for r in res.records if r.round == max(x.round for x in res.records)]
    final = digest_bytes((res.out_dir / "final_weights.safetensors").read_bytes()).hex()
    assert {r.adopted for r in last} == {final} == {report.adopted_digest}


def test_signed_ballots_play_the_same_k_slot_run(average_run, mnist_dir, tmp_path, one_torch_thread):
    """``[chain] ballots = "signed"`` with three slots voting on the average: the same ballots (bitmap
    and scores) sealed: signed commitments and their reveals, one batch each a round, the same records,
    a clean audit."""
    import json

    from cohep.run.local import run_experiment

    signed = run_experiment(small_cfg(mnist_dir, chain={"ballots": "signed"}), tmp_path / "signed", figure=False)
    assert (tmp_path / "signed" / "records.csv").read_bytes() == (average_run.out_dir / "records.csv").read_bytes()
    traffic = json.loads((tmp_path / "signed" / "manifest.json").read_text())["traffic"]
    # 3 proposals, the commitments' batch, the reveals' batch, finalize
    assert traffic["transactions"] == (3 + 1 + 1 + 1) * len(signed.timings)
    report = audit_run(tmp_path / "signed")
    assert report.clean, report.text()


def combine_hex(value) -> str:
    return value.hex() if isinstance(value, (bytes, bytearray)) else str(value).removeprefix("0x")


def test_audit_catches_a_wrong_average(average_run, tmp_path):
    import dataclasses
    import shutil

    from cohep.outputs import rundir
    from cohep.protocol.records import read_csv, write_csv

    run = tmp_path / "run"
    shutil.copytree(average_run.out_dir, run)
    records = read_csv(run / rundir.RECORDS)
    records[5] = dataclasses.replace(records[5], adopted="00" * 32)  # one member claims other weights
    write_csv(records, run / rundir.RECORDS)
    report = audit_run(run)
    assert not report.clean and any("the accepted blobs give" in f for f in report.findings)


@pytest.fixture(scope="module")
def stepped_run(tmp_path_factory, mnist_dir, one_torch_thread_module):
    """Three proposers, the vote on the average, a server step of 2, the vote on the loss (continuous,
    so that what a voter judged and what it adopted can be told apart by their scores)."""
    from cohep.run.local import run_experiment

    cfg = small_cfg(mnist_dir, round={"server_lr": 2.0}, vote={"metric": "loss"})
    return run_experiment(cfg, tmp_path_factory.mktemp("step") / "run", figure=False)


def _blobs(run_dir, events, r):
    store = run_dir / "weights"
    slots = sorted((e["args"]["slot"], e["args"]["digest"]) for e in events
                   if e["name"] == "Proposed" and e["args"]["round"] == r)
    return [decode((store / f"{combine_hex(dg)}.safetensors").read_bytes()) for _, dg in slots], \
        [bytes.fromhex(combine_hex(dg)) for _, dg in slots]


def test_stepped_average_is_recomputed_by_every_member_and_the_audit(stepped_run):
    import json

    from cohep.outputs import rundir

    res = stepped_run
    manifest = json.loads((res.out_dir / "manifest.json").read_text())
    assert manifest["config"]["round"]["server_lr"] == 2.0
    events = rundir.read_events(res.out_dir)
    fin = [e for e in events if e["name"] == "Finalized"]
    assert fin[0]["args"]["accepted_slots"] == 0b111, "round 1's stepped average should be accepted"
    # round 1 started from the initial weights, kept in the store under the manifest's initial digest
    initial = decode((res.out_dir / "weights" / f"{manifest['digests']['initial']}.safetensors").read_bytes())
    parts, digests = _blobs(res.out_dir, events, 0)
    w1, want = combine.adopted(parts, digests, start=initial, server_lr=2.0)
    assert want != combine.adopted(parts, digests)[1]  # not the plain average
    rows = {r.round: [x for x in res.records if x.round == r.round] for r in res.records}
    assert {r.adopted for r in rows[1]} == {want.hex()}
    # the voters judged exactly what they adopted: each one's score of the judged average is its
    # score of the adopted weights at the start of round 2 (a loss: continuous, no coincidences)
    for row in rows[1]:
        after = next(x for x in rows[2] if x.learner == row.learner)
        assert row.vote_score == after.current_vote_score
    # round 2 steps from round 1's weights (chained), if it was accepted
    if fin[1]["args"]["accepted_slots"]:
        parts2, digests2 = _blobs(res.out_dir, events, 1)
        _, want2 = combine.adopted(parts2, digests2, start=w1, server_lr=2.0)
        assert {r.adopted for r in rows[2]} == {want2.hex()}
    report = audit_run(res.out_dir)
    assert report.clean, report.text()
    assert report.replayed[0]["adopted"] == want.hex()
    final = digest_bytes((res.out_dir / "final_weights.safetensors").read_bytes()).hex()
    assert {r.adopted for r in rows[max(rows)]} == {final} == {report.adopted_digest}


def test_audit_catches_a_wrong_stepped_average(stepped_run, tmp_path):
    import dataclasses
    import json
    import shutil

    from cohep.outputs import rundir
    from cohep.protocol.records import read_csv, write_csv

    run = tmp_path / "run"
    shutil.copytree(stepped_run.out_dir, run)
    records = read_csv(run / rundir.RECORDS)
    i = next(k for k, r in enumerate(records) if r.round == 1)
    records[i] = dataclasses.replace(records[i], adopted="00" * 32)  # one member claims other weights
    write_csv(records, run / rundir.RECORDS)
    report = audit_run(run)
    assert not report.clean and any("the accepted blobs give" in f for f in report.findings)
    # the audit applies the recorded step: told the run had none, the members' weights disagree
    shutil.rmtree(run)
    shutil.copytree(stepped_run.out_dir, run)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["config"]["round"]["server_lr"] = 1.0
    (run / "manifest.json").write_text(json.dumps(manifest))
    report = audit_run(run)
    assert not report.clean and any("final_weights" in f for f in report.findings)
    manifest["config"]["round"]["server_lr"] = -2
    (run / "manifest.json").write_text(json.dumps(manifest))
    from cohep.core.errors import DataError

    with pytest.raises(DataError, match=r"manifest\.json: config\.round\.server_lr"):
        audit_run(run)


# -- attacks against each variant ---------------------------------------------------------------


def _members(mnist_dir, tmp_path, combine_mode, server_lr=1.0, metric="accuracy", margin=None, norm_bound=None,
             peer_margin=None, weighting="equal", judge=None, direction_floor=None, direction_share=0.0,
             strikes=None, epochs=2.0):
    from cohep import models
    from cohep.protocol.member import MemberWiring
    from cohep.wire.checks import default_max_bytes
    from cohep.protocol.vote import threshold_fraction
    from cohep.run.tasks import build_learners, prepare, seed_bytes
    from cohep.wire.fetch import Fetcher
    from cohep.wire.store import WeightStore

    vote = {"metric": metric, "margin": margin, "norm_bound": norm_bound, "peer_margin": peer_margin, "judge": judge,
            "direction_floor": direction_floor, "direction_share": direction_share or None, "strikes": strikes}
    vote = {k: v for k, v in vote.items() if v is not None}
    cfg, data, parts, spec = prepare(small_cfg(mnist_dir, round={"combine": combine_mode, "server_lr": server_lr,
                                                                 "weighting": weighting},
                                               train={"epochs": epochs}, vote=vote))
    initial = models.initial_weights(spec, 0)
    learners = build_learners(cfg, data, parts, spec, initial)
    store = WeightStore(str(tmp_path / "weights"))
    chain = Chain.embedded(4)
    init_digest, init_uri = store.put(initial)
    coord = Coordinator.deploy(chain, chain.accounts[:4], threshold=threshold_fraction(0.5), seed=seed_bytes(0),
                               initial_digest=init_digest, model_digest=spec.digest(), proposers=3,
                               combine=combine_mode, sealed=False)
    fetch = Fetcher(allowed=[store.base_uri], max_bytes=default_max_bytes(initial), reference=initial)
    wiring = MemberWiring(coord, store, fetch, cfg.vote, cfg.round.policy(), init_uri)
    ms = [wiring.member(i, chain.accounts[i], lr) for i, lr in enumerate(learners)]
    for m in ms:
        m.sync(coord.accepted_digest())
    return coord, store, ms, initial


#: crafted from the attacker's honest proposal w and the round's starting weights w0 (its update w - w0)
ATTACKS = {
    "sign-flip x10": lambda w, w0: {k: (w0[k] - 10 * (w[k] - w0[k])).astype(w[k].dtype) for k in w},
    "NaN": lambda w, w0: {k: np.full_like(v, np.nan) for k, v in w.items()},
}
# Not here: the honest update scaled x10. Early in training (these runs are one round old) a ten times
# longer step in a good direction still raises accuracy on the vote sets, and an accuracy vote approves
# it, in both modes (measured; docs/protocol_variants.md). The vote judges accuracy, not step size.


def _play_round(coord, ms, r, attack=None, by=None):
    """Round r: every slot trains honestly, except slot 2 (or the slot of the member at address ``by``)
    whose holder proposes its update crafted by ``attack``; every voter judges, the round is closed
    and every member adopts the outcome."""
    st = coord.round_state(r)
    bad_slot = 2 if by is None else next(s.slot for s in st.slots if s.proposer == by)
    attacker = next(m for m in ms if m.address == st.slots[bad_slot].proposer) if attack else None
    for s in st.slots:
        holder = next(m for m in ms if m.address == s.proposer)
        if holder is not attacker:
            holder.act(RoundView.read(coord, r))
    if attacker is not None:
        craft = ATTACKS[attack] if isinstance(attack, str) else attack
        bad = craft(attacker.learner.propose(), attacker.learner.current())
        # under example weighting the attacker also declares the largest count it may: the cap bounds it
        dg, uri = attacker.store.put(bad, MAX_EXAMPLES if attacker.policy["weighting"] == "examples" else None)
        coord.propose(attacker.address, r, dg, uri, bad_slot)
    view = RoundView.read(coord, r)
    st = view.state
    duties = {m.index: m.act(view) for m in ms if m is not attacker}
    if attacker is not None:  # it votes too (every member of a several-slot round does): approves all it may
        average = coord.settings().vote_on_average
        coord.vote_slots(attacker.address, r, 1 if average else st.proposed_slots & ~(1 << bad_slot),
                         [0] * (1 if average else 3))
    out = ms[0].finalize(r)
    for m in ms:
        m.sync(coord.accepted_digest())
    return st, attacker, duties, out


def _attacked(mnist_dir, tmp_path, mode, attack, step=(1.0, "accuracy"), norm_bound=None, by=None):
    """An honest first round (the attacks are judged against a trained model, not random weights),
    then the attacked one (by the holder of slot 2, or by member index ``by``)."""
    coord, store, ms, _ = _members(mnist_dir, tmp_path, mode, *step[:3], norm_bound=norm_bound,
                                   weighting=step[3] if len(step) > 3 else "equal")
    _, _, _, first = _play_round(coord, ms, 0)
    assert first.accepted, "the honest first round should be accepted"
    before = {m.digest for m in ms}
    return (coord, store, ms, before, *_play_round(coord, ms, 1, attack, by=None if by is None else ms[by].address))


#: (server_lr, vote metric[, margin]) the attack tests run with: today's round; a step of 3 (three
#: proposers' updates summed); a step of 2 with the vote on the loss; the vote that approves when
#: accuracy or loss improves, tolerating a regression of 0.005; the same with the accepted proposals
#: weighted by their declared example counts, the attacker declaring the most it may (the variants of
#: docs/protocol_variants.md)
STEPS = [(1.0, "accuracy"), (3.0, "accuracy"), (2.0, "loss"), (1.0, "accuracy_or_loss", -0.005),
         (1.0, "accuracy_or_loss", -0.005, "examples")]
STEP_IDS = [f"s{s[0]:g}-{s[1]}" + (f"-tol{-s[2]:g}" if len(s) > 2 else "") + ("-ex" if len(s) > 3 else "")
            for s in STEPS]


@pytest.mark.parametrize("step", STEPS, ids=STEP_IDS)
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_each_leaves_a_rejected_slot_out_of_the_average(mnist_dir, tmp_path, one_torch_thread, attack, step):
    coord, store, ms, before, st, attacker, _, out = _attacked(mnist_dir, tmp_path, "each", attack, step)
    server_lr, weighting = step[0], step[3] if len(step) > 3 else "equal"
    assert not out.accepted_slots & 0b100, f"{attack} accepted"
    approvals = [(coord.ballot_bits(1, m.address) or 0) >> 2 & 1 for m in ms if m is not attacker]
    assert sum(approvals) < st.required, approvals
    chosen = [s for s in st.slots if out.accepted_slots >> s.slot & 1]
    if chosen:  # the honest slots the voters accepted, averaged (and stepped) without the attacked one
        w0 = _after_round_0(coord, store, server_lr, weighting)
        _, want = combine.adopted([store.get(s.digest) for s in chosen], [s.digest for s in chosen],
                                  start=w0, server_lr=server_lr, weighting=weighting)
        assert {m.digest for m in ms} == {want}
    else:
        assert {m.digest for m in ms} == before


def _after_round_0(coord, store, server_lr, weighting="equal"):
    """The weights round 0 left, recomputed from the store: round 1's start."""
    initial = store.get(coord.settings().initial_digest)
    chosen = [s for s in coord.round_state(0).slots if s.accepted]
    return combine.adopted([store.get(s.digest) for s in chosen], [s.digest for s in chosen],
                           start=initial, server_lr=server_lr, weighting=weighting)[0]


@pytest.mark.parametrize("step", STEPS, ids=STEP_IDS)
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_the_vote_on_the_average_rejects_an_attacked_average(mnist_dir, tmp_path, one_torch_thread, attack, step):
    coord, _, ms, before, _, _, duties, out = _attacked(mnist_dir, tmp_path, "average", attack, step)
    assert not out.accepted and coord.accepted_round() == 0
    assert all(not d.approve for d in duties.values())
    if attack == "NaN":
        assert all("non-finite" in d.reason for d in duties.values())
    assert {m.digest for m in ms} == before


def test_a_stepped_round_adopts_what_was_judged_and_a_fresh_member_rebuilds_it(mnist_dir, tmp_path, one_torch_thread):
    """server_lr 3: the member holding no slot judged the stepped average it then adopts; a member
    that starts afresh after two rounds (a restarted node: no weights held) rebuilds the same weights
    from the initial weights and the accepted blobs on chain, round by round."""
    from cohep.protocol.combine import RoundSection
    from cohep.protocol.member import MemberWiring
    from cohep.wire.checks import default_max_bytes
    from cohep.wire.fetch import Fetcher

    coord, store, ms, initial = _members(mnist_dir, tmp_path, "average", 3.0)
    for r in range(2):
        st, _, duties, out = _play_round(coord, ms, r)
        assert len({m.digest for m in ms}) == 1
        judge = next(m for m in ms if st.slot_of(m.address) is None)
        if out.accepted:
            assert duties[judge.index].digest == judge.digest  # it adopted exactly what it judged
    assert coord.accepted_round() is not None, "no round accepted: nothing stepped"
    old = ms[1]

    def restarted(server_lr: float):
        fetch = Fetcher(allowed=[store.base_uri], max_bytes=default_max_bytes(initial), reference=initial)
        policy = RoundSection(combine="average", server_lr=server_lr).policy()
        initial_uri = store.uri(coord.settings().initial_digest)
        wiring = MemberWiring(coord, store, fetch, old.rule, policy, initial_uri)
        return wiring.member(old.index, old.address, old.learner)

    fresh = restarted(3.0)
    assert fresh.sync(coord.accepted_digest()) and fresh.digest == ms[0].digest
    plain = restarted(1.0)
    plain.sync(coord.accepted_digest())
    assert plain.digest != ms[0].digest  # without the step: other weights, so the step is what was shared
def _boosted(w, w0):
    """The honest update scaled by 5 (``attacks.craft("scaled", ...)``): a long step in a good direction (5,
    not 10: from the trained first round a tenfold step overshoots for every round-1 proposer of this draw)."""
    return {k: (w0[k] + 5 * (w[k] - w0[k])).astype(w[k].dtype) for k in w}


@pytest.mark.parametrize("mode", ["each", "average"])
def test_the_norm_bound_rejects_a_boosted_slot_that_the_vote_alone_approves(mnist_dir, tmp_path, one_torch_thread,
                                                                             mode):
    """``vote.norm_bound``: the boosted slot raises vote accuracy, so the plain vote accepts it (the
    average too); with the bound every honest voter rejects it (each: only that slot; average: the
    average), naming the norm, and the honest slots are still judged on their scores."""
    # each: whose boosted slot the plain vote accepts depends on the member and on which slot the draw
    # gives it (the draw moves with the contract's bytecode): slot 2's holder, else the first other
    # round-1 proposer for which it does
    plain = _attacked(mnist_dir, tmp_path / "plain", mode, _boosted)
    st, attacker, _, out = plain[-4:]
    by = None
    for j, holder in enumerate(s.proposer for s in st.slots):
        if mode != "each" or out.accepted_slots >> st.slot_of(attacker.address) & 1:
            break
        by = [m.address for m in plain[2]].index(holder)
        plain = _attacked(mnist_dir, tmp_path / f"plain{j}", mode, _boosted, by=by)
        st, attacker, _, out = plain[-4:]
    if by is None and mode == "each":
        by = [m.address for m in plain[2]].index(attacker.address)
    bad = st.slot_of(attacker.address)
    assert out.accepted_slots >> bad & 1, "the plain vote should accept the boosted slot (else this test shows nothing)"
    coord, store, ms, before, st, attacker, duties, out = _attacked(mnist_dir, tmp_path / "bound", mode, _boosted,
                                                                    norm_bound=3.0, by=by)
    assert st.slot_of(attacker.address) == bad
    assert not out.accepted_slots >> bad & 1
    # the voters whose scores approved the boosted slot (enough to accept it without the bound) now name the norm
    named = [d for d in duties.values() if f"slot {bad}: update norm" in d.reason and "vote.norm_bound = 3" in d.reason]
    assert len(named) >= st.required, [d.reason for d in duties.values()]
    if mode == "each":
        assert not any((coord.ballot_bits(1, m.address) or 0) >> bad & 1 for m in ms if m is not attacker)
        assert out.accepted_slots & (0b111 & ~(1 << bad)), "the honest slots should still be accepted"
        chosen = [s for s in st.slots if out.accepted_slots >> s.slot & 1]
        _, want = combine.adopted([store.get(s.digest) for s in chosen], [s.digest for s in chosen])
        assert {m.digest for m in ms} == {want}
    else:
        assert not any(d.approve for d in duties.values())
        assert not out.accepted and {m.digest for m in ms} == before


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_the_screened_average_keeps_a_gross_slot_out_and_adopts_the_others(mnist_dir, tmp_path, one_torch_thread,
                                                                          attack):
    """``vote.judge = "screened_average"`` (combine each, norm bound 3): the sign-flipped x10 slot is a norm
    outlier and the NaN slot fails the checks, so neither enters the average the voters judge; every
    honest voter gives both honest slots the same verdict (their average's), and the members adopt the
    average of the accepted ones."""
    coord, store, ms, _ = _members(mnist_dir, tmp_path, "each", norm_bound=3.0, judge="screened_average")
    assert _play_round(coord, ms, 0)[3].accepted, "the honest first round should be accepted"
    st, attacker, duties, out = _play_round(coord, ms, 1, attack)
    assert not out.accepted_slots & 0b100, f"{attack} accepted"
    assert out.accepted_slots == 0b011, "the honest slots' average should be accepted"
    for m in ms:
        if m is attacker:
            continue
        bits, own = coord.ballot_bits(1, m.address) or 0, st.slot_of(m.address)
        verdicts = {bits >> j & 1 for j in (0, 1) if j != own}
        assert len(verdicts) == 1, (m.index, bin(bits))  # one verdict for the screened slots: their average's
        assert not bits >> 2 & 1
    assert all("slot 2" in d.reason for d in duties.values() if d is not None), [d.reason for d in duties.values()]
    chosen = [s for s in st.slots if out.accepted_slots >> s.slot & 1]
    _, want = combine.adopted([store.get(s.digest) for s in chosen], [s.digest for s in chosen])
    assert {m.digest for m in ms} == {want}


def test_the_screened_average_accepts_slots_that_lose_alone_but_win_together(mnist_dir, tmp_path, one_torch_thread):
    """Two slots pulled apart by the same large perturbation in opposite directions (w + d, w - d) lose
    on every vote set alone, as class-skewed updates do; their average with a third slot is the honest
    update, which wins. "alone" rejects the pair; "screened_average" accepts all three."""
    outcomes = {}
    for judge in ("alone", "screened_average"):
        coord, store, ms, _ = _members(mnist_dir, tmp_path / judge, "each", judge=judge)
        assert _play_round(coord, ms, 0)[3].accepted
        st = coord.round_state(1)
        holder = next(m for m in ms if m.address == st.slots[2].proposer)
        w = holder.learner.propose()
        rng = np.random.default_rng(5)
        d = {k: (rng.normal(size=v.shape) * 0.15).astype(v.dtype) if v.dtype.kind == "f" else np.zeros_like(v)
             for k, v in w.items()}
        crafted = [{k: w[k] + d[k] for k in w}, {k: w[k] - d[k] for k in w}, w]
        for s in st.slots:
            m = next(x for x in ms if x.address == s.proposer)
            dg, uri = store.put(crafted[s.slot])
            coord.propose(m.address, 1, dg, uri, s.slot)
        view = RoundView.read(coord, 1)
        duties = {m.index: m.act(view) for m in ms}
        out = ms[0].finalize(1)
        for m in ms:
            m.sync(coord.accepted_digest())
        outcomes[judge] = out.accepted_slots
        if judge == "alone":
            alone = [duties[m.index].verdicts for m in ms]
    assert not outcomes["alone"] & 0b011, ("alone should reject the perturbed pair", alone)
    assert outcomes["screened_average"] == 0b111


def _negated(w, w0):
    """The honest update reversed, same norm: what the byzantine bench's ``sign_flip`` proposes."""
    return {k: (w0[k] - (w[k] - w0[k])).astype(w[k].dtype) if w[k].dtype.kind == "f" else w[k] for k in w}


def test_the_direction_floor_keeps_a_reversed_update_out_of_the_screened_average(mnist_dir, tmp_path,
                                                                                  one_torch_thread):
    """A reversed update has an honest norm (the norm bound passes it); ``vote.direction_floor = 0`` names
    it (it points against the others' summed update) and the screened average of the honest slots is
    accepted and adopted."""
    coord, _, ms, _ = _members(mnist_dir, tmp_path / "bound", "each", judge="screened_average", norm_bound=3.0)
    assert _play_round(coord, ms, 0)[3].accepted
    assert _play_round(coord, ms, 1, _negated)[3].accepted_slots & 0b100, \
        "the norm bound alone should pass the reversed slot (else this test shows nothing)"
    coord_d, store_d, ms_d, _ = _members(mnist_dir, tmp_path / "floor", "each", judge="screened_average",
                                         norm_bound=3.0, direction_floor=0.0)
    assert _play_round(coord_d, ms_d, 0)[3].accepted
    st, attacker, duties, out = _play_round(coord_d, ms_d, 1, _negated)
    assert out.accepted_slots == 0b011, (bin(out.accepted_slots), [d.reason for d in duties.values()])
    named = [d for d in duties.values() if "slot 2: update direction" in d.reason and "direction_floor = 0" in d.reason]
    assert len(named) >= st.required, [d.reason for d in duties.values()]
    chosen = [s for s in st.slots if out.accepted_slots >> s.slot & 1]
    _, want = combine.adopted([store_d.get(s.digest) for s in chosen], [s.digest for s in chosen])
    assert {m.digest for m in ms_d} == {want}


def _reinitialised(w, w0):
    rng = np.random.default_rng(9)
    return {k: (rng.normal(size=v.shape) * 0.5).astype(v.dtype) if v.dtype.kind == "f" else v for k, v in w.items()}


def test_a_norm_outlier_does_not_set_the_direction_for_the_honest_slots(mnist_dir, tmp_path, one_torch_thread):
    """A re-initialised slot's update is many times an honest one: the norm bound names it, and the
    direction floor then compares the honest slots with each other only, so they are accepted."""
    coord, store, ms, _ = _members(mnist_dir, tmp_path, "each", judge="screened_average", norm_bound=3.0,
                                   direction_floor=0.0)
    assert _play_round(coord, ms, 0)[3].accepted
    st, attacker, duties, out = _play_round(coord, ms, 1, _reinitialised)
    assert out.accepted_slots == 0b011, ([d.reason for d in duties.values()], bin(out.accepted_slots))
    assert not any("update direction" in d.reason for d in duties.values())


def test_the_direction_share_keeps_a_random_slot_out_that_the_floor_passes(mnist_dir, tmp_path, one_torch_thread):
    """Round 1, a slot re-drawn at random (the ``random`` attack: each tensor from a normal with its
    own mean and spread, so its update has an honest length): its cosine with the others is near 0,
    above a floor of -0.1, and the screened average with it still beats the round's start, so it is
    adopted (as in a class-skewed MNIST run: 1 of 20 rounds). With the share the
    floor rises with the honest slots' agreement: the random slot is named, the honest two adopted."""
    from cohep.research import attacks

    def random(w, w0):
        return attacks.craft("random", w0, w, rng=np.random.default_rng(3))

    coord, _, ms, _ = _members(mnist_dir, tmp_path / "floor", "each", judge="screened_average", direction_floor=-0.1)
    assert _play_round(coord, ms, 0)[3].accepted
    st, _, duties, out = _play_round(coord, ms, 1, random)
    assert not any("update direction" in d.reason for d in duties.values())
    assert out.accepted_slots & 0b100, "the floor alone should let the random slot in (else this shows nothing)"
    coord, store, ms, _ = _members(mnist_dir, tmp_path / "share", "each", judge="screened_average",
                                   direction_floor=-0.1, direction_share=0.5)
    assert _play_round(coord, ms, 0)[3].accepted
    st, _, duties, out = _play_round(coord, ms, 1, random)
    assert out.accepted_slots == 0b011, ([d.reason for d in duties.values()], bin(out.accepted_slots))
    named = [d for d in duties.values() if "slot 2: update direction" in d.reason and "direction_share 0.5" in d.reason]
    assert len(named) >= st.required, [d.reason for d in duties.values()]
    chosen = [s for s in st.slots if out.accepted_slots >> s.slot & 1]
    _, want = combine.adopted([store.get(s.digest) for s in chosen], [s.digest for s in chosen])
    assert {m.digest for m in ms} == {want}


def test_direction_outliers_flag_an_update_against_the_others():
    from cohep.protocol.screens import direction_outliers

    rng = np.random.default_rng(0)
    shared = rng.normal(size=1000)
    honest = {j: shared + rng.normal(size=1000) for j in range(4)}  # skewed: half their own, half shared
    assert direction_outliers(honest, 0.0) == {}
    flagged = direction_outliers({**honest, 4: -honest[0]}, 0.0)
    assert list(flagged) == [4] and "below vote.direction_floor = 0" in flagged[4]
    assert direction_outliers({0: shared, 1: -shared}, 0.0) == {}  # two slots: no reference to speak of
    assert 0 in direction_outliers({0: np.zeros(1000), 1: shared, 2: shared}, 0.5)  # no update: cosine 0


def test_the_direction_share_raises_the_floor_with_the_rounds_agreement():
    """Early in training honest updates agree (cosines ~+0.8 on the neutrino task) and a random
    re-initialised one sits near 0: above a floor of 0 or -0.1, under the raised floor. When the
    round's updates barely agree (late, class-skewed) the raised floor is about the floor itself."""
    from cohep.protocol.screens import direction_outliers

    rng = np.random.default_rng(1)
    shared = rng.normal(size=4000)
    honest = {j: 2 * shared + rng.normal(size=4000) for j in range(5)}  # cosines with the others' sum ~0.9
    junk = rng.normal(size=4000)
    junk += 0.05 * shared * np.linalg.norm(junk) / np.linalg.norm(shared)  # a faint positive cosine
    slots = {**honest, 5: junk}
    assert direction_outliers(slots, -0.1) == {}
    flagged = direction_outliers(slots, -0.1, 0.5)
    assert list(flagged) == [5]
    assert "vote.direction_share 0.5 x the round's median cosine" in flagged[5]
    # late and class-skewed: nearly orthogonal honest updates, one of them slightly negative
    loose = {j: rng.normal(size=4000) for j in range(5)}
    assert direction_outliers(loose, -0.1, 0.5) == direction_outliers(loose, -0.1) == {}


def _tilted(w, w0, alpha=0.1, seed=5):
    """The member's own update replaced by noise of the same length per tensor, tilted a little against
    its honest update: early in training the honest update agrees with the others', so the tilted one's
    cosine with them sits a little below 0 (between a floor of -0.1 and 0)."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, v in w.items():
        if v.dtype.kind != "f":
            out[k] = v
            continue
        u = np.asarray(v, np.float64) - np.asarray(w0[k], np.float64)
        noise = rng.normal(size=u.shape)
        noise *= np.linalg.norm(u) / max(float(np.linalg.norm(noise)), 1e-30)
        out[k] = (w0[k] - alpha * u + np.sqrt(1 - alpha ** 2) * noise).astype(v.dtype)
    return out


def test_a_struck_member_is_held_to_a_direction_floor_of_0(mnist_dir, tmp_path, one_torch_thread):
    """A member screened out once (a sign-flipped x10 slot: a norm outlier) later sends an update whose
    cosine with the others is a little below 0. A floor of -0.1 gives it the benefit of the doubt; with
    ``vote.strikes = 1`` every honest voter holds it to 0 and names why; the honest slots keep theirs."""
    for strikes in (None, 1):
        coord, store, ms, _ = _members(mnist_dir, tmp_path / f"s{strikes}", "each", judge="screened_average",
                                       norm_bound=3.0, direction_floor=-0.1, strikes=strikes)
        assert _play_round(coord, ms, 0)[3].accepted
        _, attacker, _, out = _play_round(coord, ms, 1, "sign-flip x10")
        assert not out.accepted_slots & 0b100
        if strikes is not None:  # every honest member restarts (a node's strikes.json), forgetting nothing
            from cohep.protocol.strikes import Strikes
            from cohep.run.node import keep_strikes

            for m in ms:
                if m is attacker:
                    continue
                assert m.strikes.to_json() == {attacker.address: [1]}, m.strikes
                keep_strikes(m, tmp_path / f"strikes-{m.index}.json")()
                m.strikes = Strikes()  # a restart: nothing in memory
                keep_strikes(m, tmp_path / f"strikes-{m.index}.json")
                assert m.strikes.to_json() == {attacker.address: [1]}
        r = 2
        while attacker.address not in {s.proposer for s in coord.round_state(r).slots}:
            _play_round(coord, ms, r)
            r += 1
        st, _, duties, out = _play_round(coord, ms, r, _tilted, by=attacker.address)
        bad = next(s.slot for s in st.slots if s.proposer == attacker.address)
        reasons = [d.reason for d in duties.values()]
        named = [x for x in reasons if f"slot {bad}: update direction" in x]
        assert not any(f"slot {j}: update direction" in x for x in reasons for j in range(3) if j != bad), reasons
        if strikes is None:
            assert not named, ("the floor of -0.1 alone should pass the tilted slot (else this shows nothing)", reasons)
            continue
        assert len(named) >= st.required and all("held at 0 for a struck member (vote.strikes)" in x for x in named), reasons
        assert not out.accepted_slots >> bad & 1, bin(out.accepted_slots)


def test_direction_outliers_hold_struck_slots_to_0():
    from cohep.protocol.screens import direction_outliers

    rng = np.random.default_rng(2)
    shared = rng.normal(size=4000)
    slots = {j: shared + 2 * rng.normal(size=4000) for j in range(4)}
    tilted = rng.normal(size=4000)
    slots[4] = tilted - 0.1 * shared * np.linalg.norm(tilted) / np.linalg.norm(shared)  # a cosine a little below 0
    assert direction_outliers(slots, -0.1) == {}
    assert list(direction_outliers(slots, -0.1, strict={4})) == [4]
    assert direction_outliers(slots, -0.1, strict={0, 1}) == {}  # agreeing slots pass the strict floor too
    assert direction_outliers(slots, -0.1, strict={4})[4].endswith(
        "below vote.direction_floor -0.1 held at 0 for a struck member (vote.strikes)")


def test_the_direction_share_needs_the_floor():
    from cohep.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^vote\.direction_share raises vote\.direction_floor"):
        config.from_dict({"experiment": PAPER4, "round": {"proposers": 3, "combine": "each"},
                          "vote": {"direction_share": 0.5}})
    for bad in (-0.1, 1.0):
        with pytest.raises(ConfigError, match=r"vote\.direction_share"):
            config.from_dict({"experiment": PAPER4, "round": {"proposers": 3, "combine": "each"},
                              "vote": {"direction_floor": 0.0, "direction_share": bad}})


def test_the_strikes_need_a_negative_floor():
    from cohep.core.errors import ConfigError

    base = {"experiment": PAPER4, "round": {"proposers": 3, "combine": "each"}}
    for vote in ({"strikes": 2}, {"strikes": 2, "direction_floor": 0.0}):
        with pytest.raises(ConfigError, match=r"^vote\.strikes holds a struck member to a direction floor of 0"):
            config.from_dict({**base, "vote": vote})
    with pytest.raises(ConfigError, match=r"vote\.strikes"):
        config.from_dict({**base, "vote": {"strikes": 0, "direction_floor": -0.1}})
    assert config.from_dict({**base, "vote": {"strikes": 3, "direction_floor": -0.1}}).vote.strikes == 3


def test_the_screened_average_needs_slots_voted_one_by_one():
    from cohep.core.errors import ConfigError

    for bad in ({"proposers": 1}, {"proposers": 3, "combine": "average"}):
        with pytest.raises(ConfigError, match=r"^vote\.judge = \"screened_average\" .* needs round\.proposers >= 2"):
            config.from_dict({"experiment": PAPER4, "round": bad, "vote": {"judge": "screened_average"}})
    with pytest.raises(ConfigError, match=r"^vote\.judge"):
        config.from_dict({"vote": {"judge": "median"}})
    assert config.from_dict({"experiment": {"protocol": "paper"}}).vote.judge == "alone"


def test_the_norm_bound_needs_three_proposers():
    from cohep.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"vote\.direction_floor .* needs round\.proposers >= 3, got 2"):
        config.from_dict({"experiment": PAPER4, "round": {"proposers": 2}, "vote": {"direction_floor": 0}})
    with pytest.raises(ConfigError, match=r"^vote\.direction_floor"):
        config.from_dict({"experiment": PAPER4, "round": {"proposers": 3}, "vote": {"direction_floor": 2}})

    with pytest.raises(ConfigError, match=r"vote\.norm_bound .* needs round\.proposers >= 3, got 2"):
        config.from_dict({"experiment": PAPER4, "round": {"proposers": 2}, "vote": {"norm_bound": 3.0}})
    with pytest.raises(ConfigError, match=r"vote\.norm_bound"):
        config.from_dict({"experiment": PAPER4, "round": {"proposers": 3}, "vote": {"norm_bound": 0.5}})
    cfg = config.from_dict({"experiment": PAPER4, "round": {"proposers": 3}, "vote": {"norm_bound": 3.0}})
    assert cfg.vote.norm_bound == 3.0


def test_norm_outliers_compare_each_slot_with_the_rounds_median():
    from cohep.protocol.screens import norm_outliers, update_norm

    w0 = {"a": np.zeros(4, np.float32), "n": np.array([3], np.int64)}
    w = {"a": np.array([3, 4, 0, 0], np.float32), "n": np.array([9], np.int64)}
    assert update_norm(w, w0) == 5.0  # integer counters are not part of the step
    assert norm_outliers({0: 1.0, 1: 1.2, 2: 10.0}, 3.0).keys() == {2}
    assert norm_outliers({0: 1.0, 1: 1.2, 2: 3.5}, 3.0) == {}
    assert norm_outliers({0: 1.0, 1: 10.0}, 3.0) == {}  # two slots: no median to trust
    assert norm_outliers({0: 1.0, 1: 10.0, 2: 11.0}, 3.0) == {}  # a boosted majority moves the median


def _timid(w, w0):
    """15 % of the honest update: from random weights it beats them (so the plain vote approves),
    with a step far shorter than any honest one (so the norm bound cannot flag it), and it scores far
    below the round's honest proposals, as random re-initialised weights do in round 0."""
    return {k: (w0[k] + 0.15 * (w[k] - w0[k])).astype(w[k].dtype) for k in w}


def test_the_peer_margin_rejects_a_slot_that_beats_random_weights_but_not_its_peers(mnist_dir, tmp_path,
                                                                                    one_torch_thread):
    """``vote.peer_margin``: in round 0 the current weights are random, so "better than the current
    weights" is no bar; the timid slot passes the vote and the norm bound, and with the margin it is
    refused, the voters whose vote sets show it far below the round's median naming the margin;
    the honest slots are accepted and adopted."""
    # six epochs a proposal: honest slots far enough above random weights that a short step shows the gap
    # (at two, which slot the draw gives which learner decided whether the premise held)
    coord, store, ms, _ = _members(mnist_dir, tmp_path / "plain", "each", norm_bound=3.0, epochs=6.0)
    *_, out = _play_round(coord, ms, 0, _timid)
    assert out.accepted_slots & 0b100, "the vote with the norm bound should accept the timid slot (else this shows nothing)"
    coord, store, ms, _ = _members(mnist_dir, tmp_path / "peer", "each", norm_bound=3.0, peer_margin=0.1, epochs=6.0)
    st, attacker, duties, out = _play_round(coord, ms, 0, _timid)
    assert not out.accepted_slots & 0b100 and out.accepted_slots & 0b011
    # the voters whose vote sets show the gap name the margin (enough of them to refuse the slot)
    named = [d for d in duties.values() if "slot 2: vote-set score" in d.reason and "vote.peer_margin = 0.1" in d.reason]
    assert named, [d.reason for d in duties.values()]
    chosen = [s for s in st.slots if out.accepted_slots >> s.slot & 1]
    _, want = combine.adopted([store.get(s.digest) for s in chosen], [s.digest for s in chosen])
    assert {m.digest for m in ms} == {want}


def test_the_peer_margin_needs_three_proposers_voted_one_by_one():
    from cohep.core.errors import ConfigError

    for bad in ({"proposers": 2}, {"proposers": 3, "combine": "average"}):
        with pytest.raises(ConfigError, match=r"vote\.peer_margin .* needs round\.proposers >= 3 and round\.combine"):
            config.from_dict({"experiment": PAPER4, "round": bad, "vote": {"peer_margin": 0.1}})
    with pytest.raises(ConfigError, match=r"vote\.peer_margin"):
        config.from_dict({"experiment": PAPER4, "round": {"proposers": 3}, "vote": {"peer_margin": 0}})


def test_score_outliers_compare_each_slot_with_the_rounds_median():
    from cohep.protocol.screens import score_outliers

    assert score_outliers({0: 0.80, 1: 0.78, 3: 0.11}, 0.1).keys() == {3}
    assert score_outliers({0: 0.80, 1: 0.78, 3: 0.71}, 0.1) == {}
    assert score_outliers({0: 0.80, 3: 0.11}, 0.1) == {}  # two slots: no median to trust
    assert score_outliers({0: 0.30, 1: 0.32, 2: 2.5}, 0.5, lower_is_better=True).keys() == {2}  # the loss


# -- autonomous members ---------------------------------------------------------------------------


@pytest.mark.parametrize("server_lr", [1.0, 2.0])
def test_nodes_on_anvil_play_rounds_with_two_proposers(tmp_path, server_lr):
    """Autonomous nodes (each its own process, the experiment file's settings), with and without a
    server step: every node adopts the same weights every round, and the audit recomputes them."""
    from conftest import synthetic_digits

    from cohep.testing.localnet import LocalNet, split_npz

    data = split_npz(*synthetic_digits(900, seed=1), tmp_path / "data", 3)
    settings = {"experiment": {"rounds": 3}, "model": {"name": "mnist_cnn"},
                "round": {"proposers": 2, "combine": "average", "server_lr": server_lr}}
    with LocalNet(tmp_path / "net", data, settings=settings) as net:
        net.wait_finished(900)
        coord = net.coordinator()
        assert coord.round() == 3 and coord.settings().proposers == 2
        assert all(len(coord.round_state(r).slots) == 2 for r in range(3))
        report = net.audit()
        assert report.clean, report.text()
        finals = net.final_digests()
        assert len(set(finals)) == 1 and finals[0] == report.adopted_digest
        rows = [net.node_records(i) for i in range(3)]
        for r in range(1, 4):  # every node adopted the same weights after every round
            assert len({next(x.adopted for x in rec if x.round == r) for rec in rows}) == 1
        if any(coord.round_state(r).accepted for r in range(3)):
            assert report.adopted_digest != coord.settings().initial_digest.hex()
        if server_lr != 1.0:
            assert any("server step 2" in n for n in report.notes), report.notes


def test_round_section_is_checked_with_one_line():
    from cohep.core.errors import ConfigError

    cfg = config.from_dict({"experiment": {"learners": 3, "protocol": "paper"}, "round": {"proposers": 3, "combine": "average"}})
    assert (cfg.round.proposers, cfg.round.combine) == (3, "average")
    assert config.from_dict({"experiment": {"protocol": "paper"}}).round == combine.RoundSection()  # the paper round
    with pytest.raises(ConfigError, match=r"round\.proposers \(4\) must be at most experiment\.learners \(3\)"):
        config.from_dict({"experiment": {"learners": 3, "protocol": "paper"}, "round": {"proposers": 4}})
    with pytest.raises(ConfigError, match=r"round\.combine"):
        config.from_dict({"round": {"combine": "median"}})
    with pytest.raises(ConfigError, match=r"chain\.vote_window \(3 blocks\) must be at least the voters \(4"):
        config.from_dict({"experiment": PAPER4, "round": {"proposers": 2}, "chain": {"vote_window": 3}})
    with pytest.raises(ConfigError, match=r"train\.proximal_mu"):
        config.from_dict({"train": {"proximal_mu": -1}})
    assert config.from_dict({}).round.server_lr == 1.0
    assert config.from_dict({"round": {"server_lr": 5}}).round.server_lr == 5.0
    for bad in (0, -1.0, float("nan"), float("inf"), "5"):
        with pytest.raises(ConfigError, match=r"^round\.server_lr must be [^\n]*$"):
            config.from_dict({"round": {"server_lr": bad}})


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_server_lr_flag_is_a_one_line_error(tmp_path, capsys, mnist_dir, value):
    from cohep.cli import main

    code = main(["run", "--data", str(mnist_dir), "--server-lr", value, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "round.server_lr" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
