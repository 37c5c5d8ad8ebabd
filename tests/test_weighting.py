"""Example-weighted averaging (issue 10, ``[round] weighting = "examples"``): the count a proposer declares
inside its blob, the capped shares every member and the audit compute from it, and a run that uses it."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import save as st_save

from cohep.protocol import combine
from cohep.config import experiment as config
from cohep.run.audit import audit_run
from cohep.core.errors import ConfigError, DataError, IntegrityError
from cohep.wire.weights import MAX_EXAMPLES, Declared, decode, declared_examples, digest, digest_bytes, encode

W = {"b": np.arange(3, dtype=np.float32), "a": np.ones((2, 2), np.float32)}


# -- the declaration inside the blob -----------------------------------------------------------------


def test_a_declared_count_travels_in_the_blob_and_the_digest_covers_it():
    plain, declared = encode(W), encode(W, 1234)
    assert decode(plain).examples is None and declared_examples(decode(plain)) is None
    got = decode(declared)
    assert isinstance(got, Declared) and got.examples == 1234 and list(got) == ["b", "a"]
    assert all(np.array_equal(got[k], W[k]) for k in W)
    # another count is another blob: a member cannot change its declaration after the digest is on chain
    assert len({digest_bytes(plain), digest_bytes(declared), digest_bytes(encode(W, 1235))}) == 3
    assert encode(W, 1234) == declared  # canonical: same weights and count, same bytes
    for bad in (0, -5, MAX_EXAMPLES + 1, 2.0, True, "12"):
        with pytest.raises(ValueError, match="examples must be an integer"):
            encode(W, bad)


def _blob(meta_text: str) -> bytes:
    return st_save({k: np.asarray(v) for k, v in W.items()}, metadata={"cohep": meta_text})


@pytest.mark.parametrize("meta, reason", [
    ('{"format":"cohep-weights-1","order":["b","a"],"examples":0}', "declared examples must be an integer"),
    ('{"format":"cohep-weights-1","order":["b","a"],"examples":-3}', "declared examples must be an integer"),
    ('{"format":"cohep-weights-1","order":["b","a"],"examples":true}', "declared examples must be an integer"),
    ('{"format":"cohep-weights-1","order":["b","a"],"examples":12.0}', "declared examples must be an integer"),
    ('{"format":"cohep-weights-1","order":["b","a"],"examples":"12"}', "declared examples must be an integer"),
    ('{"format":"cohep-weights-1","order":["b","a"],"examples":null}', "declared examples must be an integer"),
    ('{"format":"cohep-weights-1","order":["b","a"],"examples":10000000000001}', "declared examples must be"),
    ('{"format":"cohep-weights-1","order":["b","a"],"examples":1' + "0" * 5000 + "}", "not valid JSON"),
    ('{"format":"cohep-weights-1","examples":12,"order":["b","a"]}', "not written the way encode writes it"),
    ('{"format":"cohep-weights-1","order":["b","a"],"examples":12,"x":1}', "not written the way encode writes it"),
])
def test_a_malformed_declaration_is_a_one_line_reason(meta, reason):
    with pytest.raises(IntegrityError, match=f"^malformed weights blob: .*{reason}") as exc:
        decode(_blob(meta))
    assert "\n" not in str(exc.value)
    decode(_blob('{"format":"cohep-weights-1","order":["b","a"],"examples":12}'))  # the canonical form passes


# -- the shares ------------------------------------------------------------------------------------------


def test_shares_follow_the_declared_counts_within_the_cap():
    assert combine.shares([100, 150], cap=2.0) == [0.4, 0.6]  # lower median 100: 150 is within 2x
    assert combine.shares([100, 200, 300], cap=2.0) == pytest.approx([1 / 6, 2 / 6, 3 / 6])  # median 200
    assert combine.shares([100, 300], cap=2.0) == pytest.approx([1 / 3, 2 / 3])  # 300 clipped to 2 x 100
    assert combine.shares([7, 7, 7], cap=2.0) == pytest.approx([1 / 3] * 3)
    # a liar declaring a billion counts as cap x the round's median, no more
    liar = combine.shares([100, 100, 100, 100, 10**9], cap=2.0)
    assert liar[-1] == pytest.approx(200 / 600) and liar[0] == pytest.approx(100 / 600)
    assert combine.shares([100, 100, 100, 100, 10**9], cap=4.0)[-1] == pytest.approx(400 / 800)
    # two proposals: the lower median is the honest one, so a liar beside it gets two thirds, not all
    assert combine.shares([500, 10**12], cap=2.0) == pytest.approx([1 / 3, 2 / 3])
    assert combine.shares([500, 500, 10**12, 10**12], cap=2.0) == pytest.approx([1 / 6, 1 / 6, 1 / 3, 1 / 3])
    assert combine.low_median([3, 1, 2]) == 2 and combine.low_median([4, 1]) == 1
    # nothing declared counts as one example: an undeclared proposal barely moves the average
    assert combine.shares([None, 1000, 1000], cap=2.0)[0] == pytest.approx(1 / 2001)
    assert combine.shares([None, None], cap=2.0) == [0.5, 0.5]
    for bad in (0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="weight_cap"):
            combine.shares([1, 2], cap=bad)


def test_the_weighted_average_is_fixed_order_float32_and_counters_stay_equal():
    rng = np.random.default_rng(3)
    ws = [Declared({"a": rng.normal(size=(3, 4)).astype(np.float32), "n": np.array([2 + i], np.int64)}, n)
          for i, n in enumerate((100, 300, 200))]
    digests = [bytes([i]) * 32 for i in range(3)]
    out, dg = combine.adopted(ws, digests, weighting="examples", weight_cap=2.0)
    f = [np.float32(s) for s in combine.shares([100, 300, 200], 2.0)]
    want = (f[0] * ws[0]["a"] + f[1] * ws[1]["a"]) + f[2] * ws[2]["a"]
    assert out["a"].dtype == np.float32 and np.array_equal(out["a"], want)
    assert out["n"][0] == (2 + 3 + 4) // 3  # integer tensors: counters, averaged equally
    assert dg == digest(out) == combine.adopted(ws, digests, weighting="examples", weight_cap=2.0)[1]
    assert dg != combine.adopted(ws, digests)[1]  # the default stays the equal average
    # one accepted proposal is itself, whatever it declared
    one, d1 = combine.adopted(ws[:1], digests[:1], weighting="examples")
    assert one is ws[0] and d1 == digests[0]
    # a server step applies to the weighted average
    w0 = {"a": np.zeros((3, 4), np.float32), "n": np.array([0], np.int64)}
    stepped, _ = combine.adopted(ws, digests, start=w0, server_lr=2.0, weighting="examples", weight_cap=2.0)
    assert np.array_equal(stepped["a"], np.float32(2.0) * (out["a"] - w0["a"]) + w0["a"])
    with pytest.raises(ValueError, match="weighting"):
        combine.adopted(ws, digests, weighting="median")


def test_the_count_travels_beside_the_weights_on_the_protocol_path():
    """A decoded blob carries its count on the dict; any copy drops it. The protocol reads it once
    (``Proposal.decoded``) and carries it beside the weights, so a copy of the weights cannot lose it."""
    rng = np.random.default_rng(4)
    ws = [decode(encode({"a": rng.normal(size=(2, 3)).astype(np.float32)}, n)) for n in (100, 300, 200)]
    digests = [bytes([i]) * 32 for i in range(3)]
    explicit = [combine.Proposal({k: v for k, v in w.items()}, n) for w, n in zip(ws, (100, 300, 200))]
    assert [combine.Proposal.decoded(w).examples for w in ws] == [100, 300, 200]
    weighted = combine.adopted(ws, digests, weighting="examples")
    assert combine.combined(explicit, digests, weighting="examples")[1] == weighted[1]
    copies = [dict(w) for w in ws]  # what a copy of the weights alone would weigh: every count lost
    assert declared_examples(copies[0]) is None
    lost = combine.adopted(copies, digests, weighting="examples")[1]
    assert lost == combine.combined([combine.Proposal(c) for c in copies], digests, weighting="examples")[1]
    assert lost != weighted[1]
    with pytest.raises(AttributeError):
        ws[0].examples = 5  # a declaration is what the blob says, not a field to overwrite
    assert combine.RoundSection(weighting="examples").policy() == \
        {"server_lr": 1.0, "weighting": "examples", "weight_cap": 2.0}


def test_a_liars_inflated_count_gains_at_most_the_cap_through_store_and_fetch(tmp_path):
    """Declarations go through the store and the checked fetch like the weights: what a member reads
    from another's blob is the count that blob declares, and the cap holds whatever it says."""
    from cohep.wire.fetch import Fetcher
    from cohep.wire.store import WeightStore

    store = WeightStore(str(tmp_path / "w"))
    fetch = Fetcher(allowed=[store.base_uri], max_bytes=1 << 20, reference=W)
    honest = [{k: v + np.float32(i) for k, v in W.items()} for i in range(4)]
    liar = {k: v + np.float32(100) for k, v in W.items()}
    put = [store.put(w, 500) for w in honest] + [store.put(liar, MAX_EXAMPLES)]
    parts = [fetch.fetch(uri, dg) for dg, uri in put]
    assert [p.examples for p in parts] == [500] * 4 + [MAX_EXAMPLES]
    out, _ = combine.adopted(parts, [dg for dg, _ in put], weighting="examples", weight_cap=2.0)
    # the liar counts as 1,000 against four members of 500 each: a third, not all
    want = sum(np.float32(s) * p["b"] for s, p in zip([500 / 3000] * 4 + [1000 / 3000], parts))
    assert np.allclose(out["b"], want, atol=1e-5)
    assert np.allclose(out["b"], np.arange(3) + (0 + 1 + 2 + 3) * 500 / 3000 + 100 / 3, atol=1e-4)


# -- config, CLI, audit ------------------------------------------------------------------------------


def test_the_weighting_settings_are_checked_with_one_line():
    paper = config.from_dict({"experiment": {"protocol": "paper"}})
    assert (paper.round.weighting, paper.round.weight_cap) == ("equal", 2.0)
    assert config.from_dict({}).round.weighting == "examples"  # the default, guarded protocol weighs by examples
    cfg = config.from_dict({"round": {"weighting": "examples", "weight_cap": 3}})
    assert (cfg.round.weighting, cfg.round.weight_cap) == ("examples", 3.0)
    with pytest.raises(ConfigError, match=r"^round\.weighting[^\n]*$"):
        config.from_dict({"round": {"weighting": "median"}})
    for bad in (0.5, float("nan"), "2"):
        with pytest.raises(ConfigError, match=r"^round\.weight_cap[^\n]*$"):
            config.from_dict({"round": {"weight_cap": bad}})


def test_the_weighting_flag_is_a_one_line_error(tmp_path, capsys, mnist_dir):
    from cohep.cli import main

    code = main(["run", "--data", str(mnist_dir), "--weighting", "median", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "round.weighting" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def _cfg(mnist_dir, **round_):
    return config.load(None, {
        "experiment": {"learners": 4, "rounds": 2, "seed": 0, "protocol": "paper"},
        "data": {"kind": "mnist", "path": str(mnist_dir), "limit": 1200, "holdout": 300, "split": "dirichlet",
                 "alpha": 0.5},
        "model": {"name": "mnist_cnn"},
        "train": {"epochs": 1.0, "batch_size": 32},
        "vote": {"metric": "accuracy_or_loss", "margin": -0.05},
        "round": {"proposers": 3, "combine": "average", "weighting": "examples", **round_},
    })


@pytest.fixture(scope="module")
def weighted_run(tmp_path_factory, mnist_dir, one_torch_thread_module):
    from cohep.run.local import run_experiment

    return run_experiment(_cfg(mnist_dir), tmp_path_factory.mktemp("weighted") / "run", figure=False)


def test_a_weighted_run_declares_each_proposers_train_set_and_every_member_and_the_audit_agree(weighted_run,
                                                                                               mnist_dir):
    from cohep.outputs import rundir

    res = weighted_run
    events = rundir.read_events(res.out_dir)
    fin = [e for e in events if e["name"] == "Finalized"]
    assert fin[0]["args"]["accepted_slots"] == 0b111, "round 1's weighted average should be accepted"
    store = res.out_dir / "weights"
    slots = sorted((e["args"]["slot"], e["args"]["digest"], e["args"]["proposer"]) for e in events
                   if e["name"] == "Proposed" and e["args"]["round"] == 0)
    hexes = [dg.hex() if isinstance(dg, (bytes, bytearray)) else str(dg).removeprefix("0x") for _, dg, _ in slots]
    parts = [decode((store / f"{h}.safetensors").read_bytes()) for h in hexes]
    # each proposer declared its own training set, and on a Dirichlet split they differ
    from cohep.run.tasks import prepare

    manifest = json.loads((res.out_dir / "manifest.json").read_text())
    sizes = [len(p.train) for p in prepare(_cfg(mnist_dir))[2]]  # the learners' training sets
    counts = [p.examples for p in parts]
    assert set(counts) <= set(sizes) and len(set(counts)) > 1, (counts, sizes)
    _, want = combine.adopted(parts, [bytes.fromhex(h) for h in hexes], weighting="examples", weight_cap=2.0)
    assert want != combine.adopted(parts, [bytes.fromhex(h) for h in hexes])[1]  # not the equal average
    rows = [r for r in res.records if r.round == 1]
    assert {r.adopted for r in rows} == {want.hex()}
    report = audit_run(res.out_dir)
    assert report.clean, report.text()
    assert report.replayed[0]["adopted"] == want.hex()
    assert manifest["config"]["round"]["weighting"] == "examples"


def test_the_audit_applies_the_recorded_weighting(weighted_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(weighted_run.out_dir, run)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["config"]["round"]["weighting"] = "equal"  # told the run averaged equally: the members disagree
    (run / "manifest.json").write_text(json.dumps(manifest))
    report = audit_run(run)
    assert not report.clean and any("final_weights" in f or "the accepted blobs give" in f for f in report.findings)
    manifest["config"]["round"]["weighting"] = "median"
    (run / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"manifest\.json: config\.round\.weighting"):
        audit_run(run)
    manifest["config"]["round"].update(weighting="examples", weight_cap=0)
    (run / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"manifest\.json: config\.round\.weight_cap"):
        audit_run(run)
