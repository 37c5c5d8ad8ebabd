"""Model competition: entries train at an equal budget, every other member scores them on chain."""
from __future__ import annotations

import hashlib
import json

import pytest

from cohep.config import experiment as config
from cohep.cli import main
from cohep.studies.competition import Standing, parse_entries, rank, run_competition
from cohep.core.errors import ChainError, ConfigError
from cohep.ledger import Chain
from cohep.ledger.competition import CompetitionLedger

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def duel_cfg(mnist_dir, entries, **over):
    base = {"experiment": {"name": "duel", "learners": 3, "rounds": 3, "seed": 0},
            "data": {"kind": "mnist", "path": str(mnist_dir), "limit": 600, "holdout": 100},
            "competition": {"entries": entries}}
    return config.load(None, config.merge(base, over))


GOOD = {"name": "good", "model": "mnist_cnn", "owner": 0}
#: one filter per layer and heavy dropout: the same architecture crippled, a clearly worse entry
POOR = {"name": "poor", "model": "mnist_cnn", "params": {"width": 1, "dropout": 0.9}, "owner": 1}


@pytest.fixture(scope="module")
def duel(tmp_path_factory, mnist_dir):
    out = tmp_path_factory.mktemp("duel")
    return run_competition(duel_cfg(mnist_dir, [GOOD, POOR]), out / "c"), out / "c"


def test_two_entries_complete_and_the_better_one_wins(duel):
    board, out = duel
    good, poor = (next(s for s in board.standings if s.name == n) for n in ("good", "poor"))
    assert board.winner == "good" and not board.tied
    assert good.mean > poor.mean + 0.1 and good.low <= good.mean <= good.high
    assert good.wins == 1 and poor.wins == 0  # member 2, the one that scored both, prefers good
    assert good.rounds == poor.rounds == 3  # the same budget
    data = json.loads((out / "leaderboard.json").read_text())
    assert data["winner"] == "good" and data["entries"][0]["name"] == "good"
    assert (out / "cross_evaluation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "leaderboard.txt").read_text().splitlines()[-1].startswith("winner: good")


def test_every_score_is_on_chain_and_owners_never_score_their_own(duel):
    board, _ = duel
    for s in board.standings:
        assert sorted(s.scores) == sorted({0, 1, 2} - {s.owner})  # the other members, each once
        assert s.mean == pytest.approx(sum(s.scores.values()) / 2)
        for score in s.scores.values():
            assert 0.0 <= score <= 1.0 and round(score * 1e6) == score * 1e6  # ppm as recorded


def test_an_entry_that_does_not_fit_takes_no_part_with_its_reason(tmp_path, mnist_dir):
    big = {"name": "resnet", "model": "resnet50v2", "owner": 2}  # needs sides >= 32; digits are 28
    board = run_competition(duel_cfg(mnist_dir, [GOOD, POOR, big], experiment={"rounds": 1}), tmp_path / "c",
                            figure=False)
    resnet = next(s for s in board.standings if s.name == "resnet")
    assert not resnet.fits and "needs images of at least 32 x 32" in resnet.reason
    assert "did not take part" in board.text() and board.standings[-1].name == "resnet"


@pytest.mark.slow
def test_owner_only_training_and_a_seconds_budget(tmp_path, mnist_dir):
    board = run_competition(duel_cfg(mnist_dir, [GOOD, POOR], competition={"training": "owner"},
                                     experiment={"rounds": 500, "max_seconds": 1.0}), tmp_path / "c", figure=False)
    assert all(1 <= s.rounds < 500 for s in board.standings)  # the wall-clock budget stopped both


@pytest.mark.parametrize("entries, named", [
    ([GOOD], "at least 2 entries"),
    ([GOOD, dict(POOR, name="good")], "used twice"),
    ([GOOD, dict(POOR, model="resnet9000")], "resnet9000"),
    ([GOOD, dict(POOR, owner=7)], "competition.entries[1].owner"),
    ([GOOD, dict(POOR, colour="red")], "unknown field colour"),
    ([GOOD, dict(POOR, params=[1])], "competition.entries[1].params"),
    ([GOOD, dict(POOR, name="a b")], "competition.entries[1].name"),
])
def test_malformed_entries_are_refused_with_one_line(tmp_path, capsys, mnist_dir, entries, named):
    with pytest.raises(ConfigError) as err:
        parse_entries(entries, 3)
    assert named in str(err.value) and "\n" not in str(err.value)
    toml = tmp_path / "c.toml"
    lines = ["[experiment]", "learners = 3", "[data]", f'path = "{mnist_dir}"', 'kind = "mnist"']
    def value(v) -> str:  # TOML: an inline table for a dict, JSON's spelling for the rest
        return "{" + ", ".join(f"{a} = {b}" for a, b in v.items()) + "}" if isinstance(v, dict) else json.dumps(v)

    for e in entries:
        lines.append("[[competition.entries]]")
        lines += [f"{k} = {value(v)}" for k, v in e.items()]
    toml.write_text("\n".join(lines) + "\n")
    assert main(["compete", "-c", str(toml), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and named in err
    assert not (tmp_path / "o").exists()


def test_the_contract_keeps_the_rules():
    chain = Chain.embedded(4)
    a, b, c, outsider = chain.accounts
    ledger = CompetitionLedger.deploy(chain, [a, b, c], hashlib.sha256(b"task").digest())
    spec, w1, w2 = (hashlib.sha256(x).digest() for x in (b"spec", b"w1", b"w2"))
    assert ledger.enter(a, spec, w1, "http://a/w1") == 0 and ledger.enter(b, spec, w2, "http://b/w2") == 1
    for sender, args, reason in [
        (outsider, (spec, w1, "u"), "not a member"),
        (a, (spec, b"\0" * 32, "u"), "empty digest"),
    ]:
        with pytest.raises(ChainError, match=reason):
            ledger.enter(sender, *args)
    ledger.score(b, 0, 900_000)
    for sender, entry, ppm, reason in [
        (a, 0, 1, "owner cannot score its own entry"),
        (b, 0, 1, "already scored"),
        (outsider, 1, 1, "not a member"),
        (c, 5, 1, "no such entry"),
        (c, 1, 10**16, "score out of range"),
    ]:
        with pytest.raises(ChainError, match=reason):
            ledger.score(sender, entry, ppm)
    with pytest.raises(ChainError, match="entries closed"):
        ledger.enter(c, spec, w1, "http://c/w")  # once scoring started, the field is fixed
    assert ledger.score_of(0, b) == 900_000 and ledger.score_of(0, c) is None
    entries = ledger.entries()
    assert [e.owner for e in entries] == [a, b] and entries[0].scores == 1 and entries[0].total_ppm == 900_000


def test_competition_artifact_recompiles_to_committed_json():
    pytest.importorskip("vyper")
    from cohep.ledger.artifact import compile_artifact, load_artifact

    assert compile_artifact("Competition") == load_artifact("Competition")


def test_a_cycle_of_preferences_names_no_winner_and_says_so():
    """Three members each prefer a different entry over the next (rock-paper-scissors)."""
    a = Standing("a", "m", 9, mean=0.5, scores={0: 0.9, 1: 0.1, 2: 0.5})
    b = Standing("b", "m", 9, mean=0.5, scores={0: 0.5, 1: 0.9, 2: 0.1})
    c = Standing("c", "m", 9, mean=0.5, scores={0: 0.1, 1: 0.5, 2: 0.9})
    ordered, winner, lead = rank([a, b, c])
    assert winner is None and sorted(lead) == ["a", "b", "c"] and all(s.wins == 1 for s in ordered)
    ordered, winner, lead = rank([a, Standing("d", "m", 9, mean=0.2, scores={0: 0.0, 1: 0.0, 2: 0.0})])
    assert winner == "a" and not lead


def test_the_shipped_competition_config_is_valid():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "compete_neutrino_cpu.toml"
    cfg = config.load(path)
    entries = parse_entries(cfg.competition.entries, cfg.experiment.learners)
    assert [e.model for e in entries] == ["compact", "resnet50v2", "densenet169"]
    assert sorted(e.owner for e in entries) == [0, 1, 2] and cfg.experiment.max_seconds == 90.0
