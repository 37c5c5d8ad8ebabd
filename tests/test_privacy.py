"""Differential privacy ([privacy], Opacus DP-SGD): the accountant's epsilon grows with every noisy
step, a learner never trains a proposal that would take it over its budget (end to end: the records
say why and it proposes no more), and a budget the run cannot honour fails at config time."""
import itertools
import json
import sys

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from cohep.config import experiment as config
from cohep import models
from cohep.cli import main
from cohep.core.errors import ConfigError
from cohep.frameworks.privacy import (
    Budget,
    BudgetSpent,
    PrivacySection,
    PrivateTraining,
)
from cohep.frameworks.training import TrainConfig
from cohep.models import ModelSpec
from cohep.protocol.records import read_csv
from cohep.run.local import run_experiment
from cohep.run.tasks import load_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def budget(epsilon=3.0, *, noise=None, proposals=4, accountant="rdp", delta=None):
    return Budget(epsilon, delta, 1.0, noise, accountant, proposals)


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_epsilon_grows_with_every_step_and_the_prediction_matches(accountant):
    dp = PrivateTraining(budget(noise=1.0, accountant=accountant), n_train=1000, batch_size=50,
                         steps_per_proposal=20)
    assert dp.epsilon() == 0.0 and dp.sample_rate == pytest.approx(0.05) and dp.delta == 1e-5
    predicted = dp.epsilon(20)
    seen = []
    for _ in range(20):
        dp.step()
        seen.append(dp.epsilon())
    assert all(b > a for a, b in itertools.pairwise(seen)), seen
    assert seen[-1] == pytest.approx(predicted, rel=1e-3)
    # more noise for the same steps spends less
    quieter = PrivateTraining(budget(noise=2.0, accountant=accountant), n_train=1000, batch_size=50,
                              steps_per_proposal=20)
    assert 0 < quieter.epsilon(20) < predicted


def test_derived_noise_fits_exactly_the_planned_proposals():
    dp = PrivateTraining(budget(3.0, proposals=4), n_train=800, batch_size=32, steps_per_proposal=25)
    assert dp.epsilon(4 * 25) <= 3.0 < dp.epsilon(5 * 25)
    dp.accountant.history.append((dp.noise_multiplier, dp.sample_rate, 4 * 25))  # four proposals trained
    with pytest.raises(BudgetSpent, match=r"^privacy budget spent: eps \d+\.\d\d > 3\.00$"):
        dp.check(25)
    assert dp.stopped.startswith("privacy budget spent")


def _digits(n=160, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g))


def _learner(privacy, seed=5, name="mnist_cnn"):
    spec = ModelSpec(name, (1, 28, 28), 10, {"width": 4})
    cfg = TrainConfig(batch_size=16, epochs=1.0, max_steps=4)
    initial = models.initial_weights(spec, 0, private=privacy is not None)
    return models.build_learner(spec, _digits(), _digits(40, 1), None, cfg, seed=seed, initial=initial,
                                privacy=privacy)


def test_private_proposals_are_dp_sgd_deterministic_and_accounted():
    b = budget(50.0, noise=1.0)
    a, again, plain = _learner(b), _learner(b), _learner(None)
    wa, wb, wp = a.propose(), again.propose(), plain.propose()
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)  # Poisson batches and noise follow the seed
    assert any(not np.array_equal(wa[k], wp[k]) for k in wa)  # clipped and noised: not plain SGD
    assert a.privacy.proposals == 1 and a.privacy.epsilon() > 0
    assert a.privacy.accountant.history == [(1.0, 0.1, 4)]
    assert not hasattr(next(a.model.parameters()), "grad_sample") or next(a.model.parameters()).grad_sample is None
    # scoring its own vote set is not a release: it costs nothing
    spent = a.privacy.epsilon()
    a.evaluate(wa)
    assert a.privacy.epsilon() == spent


def test_a_deployed_members_noise_and_sampling_are_secret():
    """The experiment seed is public: seeded noise could be regenerated and subtracted. With
    ``secret`` (what a node uses) two learners built alike propose different weights."""
    import dataclasses

    b = dataclasses.replace(budget(50.0, noise=1.0), secret=True)
    one, two = _learner(b).propose(), _learner(b).propose()
    assert any(not np.array_equal(one[k], two[k]) for k in one)


def test_a_learner_refuses_to_train_past_its_budget():
    lr = _learner(budget(1.0, noise=0.6))
    before = lr.current()
    with pytest.raises(BudgetSpent, match="privacy budget spent: eps"):
        lr.propose()
    assert lr.privacy.epsilon() == 0.0 and lr.privacy.proposals == 0  # nothing trained, nothing spent
    assert all(np.array_equal(before[k], lr.current()[k]) for k in before)


def test_batchnorm_becomes_groupnorm_in_a_private_experiment():
    spec = ModelSpec("image_cnn", (1, 28, 28), 10, {"width": 8})
    plain = models.initial_weights(spec, 0)
    private = models.initial_weights(spec, 0, private=True)
    assert any("running_mean" in k for k in plain) and not any("running_" in k for k in private)
    assert all(np.array_equal(v, models.initial_weights(spec, 0, private=True)[k]) for k, v in private.items())
    lr = _learner(budget(50.0, noise=1.0), name="image_cnn")
    assert np.isfinite(np.concatenate([np.ravel(v) for v in lr.propose().values()])).all()


def _run_cfg(mnist_dir, **privacy):
    return config.load(None, {
        "experiment": {"learners": 3, "rounds": 6, "seed": 2, "protocol": "paper"},  # drawn twice each
        "data": {"kind": "mnist", "path": str(mnist_dir), "limit": 300, "holdout": 60},
        "model": {"name": "mnist_cnn", "params": {"width": 4}},
        "train": {"batch_size": 16, "max_steps": 3},
        "chain": {"proposal_window": 3},
        "privacy": privacy,
    })


def test_learner_stops_at_its_budget_end_to_end(tmp_path, mnist_dir):
    """Six rounds, three learners: each is drawn twice. The noise is planned for one proposal each,
    except learner 1, whose own table plans two: the others' second turn voids with the reason."""
    cfg = _run_cfg(mnist_dir, epsilon=4.0, proposals=1, learners={"1": {"proposals": 2}})
    result = run_experiment(cfg, tmp_path / "run", figure=False)
    records = read_csv(tmp_path / "run" / "records.csv")
    turns = {}
    for r in records:
        if r.round > 0 and r.is_proposer:
            turns.setdefault(r.learner, []).append(r)
    assert sorted(turns) == [0, 1, 2] and all(len(t) == 2 for t in turns.values())
    assert all(not t.void and t.reason == "" for t in turns[1])
    for i in (0, 2):
        first, second = turns[i]
        assert not first.void and first.reason == ""
        assert second.void and second.reason.startswith("privacy budget spent: eps ")
        assert second.reason.endswith("> 4.00")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    spent = {p["learner"]: p for p in manifest["privacy"]}
    assert [spent[i]["proposals"] for i in range(3)] == [1, 2, 1]
    assert all(0 < p["epsilon_spent"] <= 4.0 for p in spent.values())
    assert spent[0]["stopped"] and not spent[1]["stopped"]
    assert spent[1]["noise_multiplier"] > spent[0]["noise_multiplier"]  # two releases need more noise each
    assert result.privacy == manifest["privacy"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Privacy" in report and "privacy budget spent" in report


@pytest.mark.parametrize("privacy, mode, named", [
    ({"delta": 1e-6}, "colearn", "privacy.epsilon is required"),
    ({"epsilon": -1.0}, "colearn", "privacy.epsilon must be > 0"),
    ({"epsilon": 1.0, "accountant": "gdp"}, "colearn", "privacy.accountant must be one of rdp, prv"),
    ({"epsilon": 1.0, "learners": {"3": {"epsilon": 2.0}}}, "colearn", "privacy.learners.3: the experiment has"),
    ({"epsilon": 1.0, "learners": {"1": {"epsilon": 0}}}, "colearn", "privacy.learners.1.epsilon must be > 0"),
    ({"epsilon": 1.0, "learners": {"1": {"lr": 2}}}, "colearn", "unknown field privacy.learners.1.lr"),
    ({"epsilon": 1.0, "learners": {"x": {}}}, "colearn", "privacy.learners.x: keys"),
    ({"epsilon": 1.0}, "individual", "privacy: only colearn proposals"),
])
def test_config_errors_name_the_field(privacy, mode, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")) as err:
        config.load(None, {"experiment": {"learners": 3, "mode": mode}, "privacy": privacy})
    assert "\n" not in str(err.value)


def test_per_learner_budget_overrides_the_section():
    section = PrivacySection(epsilon=3.0, max_grad_norm=2.0, learners={"2": {"epsilon": 8.0, "delta": 1e-6}})
    assert section.budget(0, learners=3, rounds=10) == Budget(3.0, None, 2.0, None, "rdp", 4)
    assert section.budget(2, learners=3, rounds=10) == Budget(8.0, 1e-6, 2.0, None, "rdp", 4)
    assert PrivacySection().budget(0, learners=3, rounds=10) is None


def test_a_keras_model_or_missing_opacus_fails_before_any_data_is_read(tmp_path, monkeypatch):
    absent = str(tmp_path / "absent")  # never read: the privacy check comes first
    cfg = config.load(None, {"data": {"path": absent}, "model": {"name": "resnet50v2"}, "privacy": {"epsilon": 2.0}})
    with pytest.raises(ConfigError, match="model resnet50v2 is a keras model; differential privacy"):
        load_task(cfg)
    monkeypatch.setitem(sys.modules, "opacus", None)  # what an install without the dp extra looks like
    cfg = config.load(None, {"data": {"path": absent}, "model": {"name": "mnist_cnn"}, "privacy": {"epsilon": 2.0}})
    with pytest.raises(ConfigError, match=r"needs Opacus: install the dp extra"):
        load_task(cfg)


def test_cli_epsilon_flag_errors_are_one_line(tmp_path, capsys, mnist_dir):
    code = main(["run", "--data", str(mnist_dir), "--model", "resnet50v2", "--epsilon", "1",
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "differential privacy" in err
    assert not (tmp_path / "o").exists()


def test_a_restarted_node_keeps_the_epsilon_it_spent(tmp_path):
    """A node saves its accountant's history (JSON) after training a proposal and before releasing it,
    and a restarted node takes it up: with a budget for one proposal, the first node proposes once and
    the restarted one refuses to train a second (a fresh accountant would have trained it)."""
    import hashlib

    from cohep.core.errors import DataError
    from cohep.ledger import Chain, Coordinator
    from cohep.protocol.combine import RoundSection
    from cohep.protocol.member import MemberWiring
    from cohep.protocol.participant import Participant
    from cohep.protocol.vote import VoteRule
    from cohep.run.node import keep_privacy_state
    from cohep.wire.fetch import Fetcher
    from cohep.wire.store import WeightStore

    probe = _learner(budget(50.0, noise=1.0)).privacy
    one, two = probe.epsilon(4), probe.epsilon(8)  # _learner trains 4 steps a proposal
    b = budget((one + two) / 2, noise=1.0)
    chain = Chain.embedded(2)
    store = WeightStore(str(tmp_path / "weights"))
    initial_digest, initial_uri = store.put(_learner(b).current())
    coord = Coordinator.deploy(chain, chain.accounts[:2], initial_digest=initial_digest,
                               model_digest=hashlib.sha256(b"model").digest(),
                               seed=hashlib.sha256(b"restart").digest())
    me = chain.accounts.index(coord.proposer(0))
    path = tmp_path / "node" / "privacy.json"
    path.parent.mkdir()

    wiring = MemberWiring(coord, store, Fetcher(allowed=[store.base_uri], max_bytes=1 << 20), VoteRule(),
                          RoundSection().policy(), initial_uri)

    def node(learner) -> Participant:
        p = wiring.member(me, chain.accounts[me], learner)
        keep_privacy_state(p, path)
        return p

    first = node(_learner(b))
    duty = first._propose(0)
    assert duty.proposed and coord.round_state(0).slots[0].proposed
    saved = json.loads(path.read_text())
    assert saved == {"accountant": "rdp", "proposals": 1, "history": [[1.0, 0.1, 4]]}
    spent = first.learner.privacy.epsilon()
    assert spent == pytest.approx(one)

    restarted = node(_learner(b))  # a new process: a fresh learner, the state from the node's folder
    assert restarted.learner.privacy.epsilon() == spent and restarted.learner.privacy.proposals == 1
    with pytest.raises(BudgetSpent):
        restarted.learner.propose()
    fresh = _learner(b)
    fresh.propose()  # without the saved state the same budget would allow another release
    assert fresh.privacy.epsilon() == pytest.approx(one)

    path.write_text(json.dumps({"accountant": "rdp", "proposals": 1, "history": [[1.0, 2.0, 4]]}))
    with pytest.raises(DataError, match=r"privacy\.json: history\[0\] is not"):
        node(_learner(b))
    path.write_text(json.dumps({"accountant": "prv", "proposals": 0, "history": []}))
    with pytest.raises(DataError, match=r"privacy\.json: accountant 'prv' is not this learner's \(rdp\)"):
        node(_learner(b))
