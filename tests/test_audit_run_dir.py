"""``cohep audit RUN``: a run directory audits where it is now, names what is missing, creates nothing,
and checks every vote and score in records.csv against the chain's ballots."""
import dataclasses
import json
import shutil

import pytest

from cohep.cli import main
from cohep.config import experiment as config
from cohep.outputs import rundir
from cohep.protocol.records import read_csv, write_csv
from cohep.run.audit import audit_run
from cohep.run.local import run_experiment


@pytest.fixture(scope="module")
def finished(tmp_path_factory, mnist_dir, one_torch_thread_module):
    """A colearn run (one proposer a round, so each voter's row holds its ballot's one score)."""
    cfg = config.load(None, {
        "experiment": {"learners": 3, "rounds": 3, "seed": 1, "protocol": "paper"},
        "data": {"kind": "mnist", "path": str(mnist_dir), "limit": 600, "holdout": 200},
        "model": {"name": "mnist_cnn"}, "train": {"epochs": 0.5, "batch_size": 32},
    })
    return run_experiment(cfg, tmp_path_factory.mktemp("audited") / "run", figure=False).out_dir


def listing(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def copy(finished, tmp_path, name="copy"):
    target = tmp_path / name
    shutil.copytree(finished, target)
    return target


def test_the_manifest_names_the_store_relative_to_the_run(finished):
    manifest = json.loads((finished / rundir.MANIFEST).read_text())
    assert manifest["store"] == rundir.STORE
    assert audit_run(finished).clean


def test_a_moved_run_directory_audits_clean_and_creates_nothing(finished, tmp_path, capsys):
    run = copy(finished, tmp_path / "a")
    elsewhere = tmp_path / "b" / "moved"
    elsewhere.parent.mkdir()
    shutil.move(run, elsewhere)
    before = listing(tmp_path)
    assert main(["audit", str(elsewhere)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "audit: clean"
    assert listing(tmp_path) == before  # no weights/ left in the old place, nothing new in the new one


def test_a_run_directory_with_an_absolute_store_still_audits(finished, tmp_path):
    """Run directories written before the store was recorded relative to them."""
    run = copy(finished, tmp_path)
    manifest = json.loads((run / rundir.MANIFEST).read_text())
    manifest["store"] = manifest.pop("store_uri")  # the original's absolute path, as older runs wrote it
    (run / rundir.MANIFEST).write_text(json.dumps(manifest))
    assert audit_run(run).clean


def _accepted_blob(run):
    records = read_csv(run / rundir.RECORDS)
    row = next(r for r in records if r.round > 0 and r.accepted)
    return row, run / rundir.STORE / f"{row.digest}.safetensors"


def test_a_tampered_blob_in_a_copy_is_found(finished, tmp_path):
    run = copy(finished, tmp_path)
    row, blob = _accepted_blob(run)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0x01
    blob.write_bytes(bytes(data))
    report = audit_run(run)
    assert not report.clean
    assert any(f.startswith(f"round {row.round}: the accepted weights do not verify") for f in report.findings), \
        report.text()
    # and the original it was copied from is untouched and clean
    assert audit_run(finished).clean


def test_a_missing_blob_is_named_and_nothing_is_created(finished, tmp_path, capsys):
    run = copy(finished, tmp_path)
    row, blob = _accepted_blob(run)
    blob.unlink()
    before = listing(tmp_path)
    code = main(["audit", str(run)])
    out = capsys.readouterr().out
    assert code == 1
    assert f"blob weights/{row.digest}.safetensors (digest 0x{row.digest}) missing" in out
    assert listing(tmp_path) == before
    # the whole store gone: still named, still nothing created
    shutil.rmtree(run / rundir.STORE)
    before = listing(tmp_path)
    report = audit_run(run)
    assert not report.clean and any("missing" in f for f in report.findings)
    assert listing(tmp_path) == before


def _edit(run, pick, **change):
    records = read_csv(run / rundir.RECORDS)
    i = next(k for k, r in enumerate(records) if pick(r))
    records[i] = dataclasses.replace(records[i], **change)
    write_csv(records, run / rundir.RECORDS)
    return i + 2, records[i]  # records.csv line (the header is line 1)


def test_an_edited_vote_is_found(finished, tmp_path):
    run = copy(finished, tmp_path)
    line, row = _edit(run, lambda r: r.round > 0 and r.vote == "approve", vote="reject")
    report = audit_run(run)
    assert not report.clean
    assert f"records.csv line {line} (round {row.round}, learner {row.learner}): field vote is 'reject', " \
           "the chain's ballot says 'approve'" in report.findings, report.text()


def test_an_edited_score_is_found(finished, tmp_path):
    run = copy(finished, tmp_path)
    original = next(r for r in read_csv(run / rundir.RECORDS) if r.round > 0 and r.vote)
    line, row = _edit(run, lambda r: r == original, vote_score=original.vote_score + 0.001)
    report = audit_run(run)
    assert not report.clean
    assert any(f.startswith(f"records.csv line {line} (round {row.round}, learner {row.learner}): field vote_score")
               for f in report.findings), report.text()
    # a vote cast where the proposer's row has none is found too
    run2 = copy(finished, tmp_path, "copy2")
    line, row = _edit(run2, lambda r: r.round > 0 and r.is_proposer, vote="approve")
    assert any(f.startswith(f"records.csv line {line} ") and "field vote" in f for f in audit_run(run2).findings)


def test_an_interrupted_run_is_refused_in_one_line(finished, tmp_path, capsys):
    run = copy(finished, tmp_path)
    manifest = json.loads((run / rundir.MANIFEST).read_text())
    manifest["interrupted"] = {"rounds_done": 1, "stopped_in": 2, "rounds": 3}
    (run / rundir.MANIFEST).write_text(json.dumps(manifest))
    assert main(["audit", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"cohep: error: {run} holds an interrupted run (rounds 1-1 kept): resume it first " \
                  f"(cohep run --resume {run})"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, mnist_dir, one_torch_thread_module):
    """A guarded run (every member proposes, ``vote.judge = "screened_average"``): a row's score is the
    screened average's, which the voter's ballot carries in its own slot."""
    cfg = config.load(None, {
        "experiment": {"learners": 3, "rounds": 2, "seed": 2, "protocol": "guarded"},
        "data": {"kind": "mnist", "path": str(mnist_dir), "limit": 600, "holdout": 200},
        "model": {"name": "mnist_cnn"}, "train": {"epochs": 0.5, "batch_size": 32},
    })
    assert (cfg.vote.judge, cfg.round.proposers) == ("screened_average", 3)
    return run_experiment(cfg, tmp_path_factory.mktemp("guarded") / "run", figure=False).out_dir


def test_a_guarded_run_audits_every_score_clean(guarded):
    report = audit_run(guarded)
    assert report.clean, report.text()
    assert not any("screened average" in n for n in report.notes), report.notes
    # each voter's own slot carries its row's score: the screened average's, not a slot's
    events = [json.loads(x) for x in (guarded / "chain_events.jsonl").read_text().splitlines()]
    drawn = {int(e["args"]["round"]): [a.lower() for a in e["args"]["proposers"]] for e in events
             if e["name"] == "RoundStarted"}
    own = [int(e["args"]["scores_ppm"][drawn[int(e["args"]["round"])].index(e["args"]["voter"].lower())])
           for e in events if e["name"] == "Voted"]
    assert own and all(x != 0 for x in own), own


def test_a_tampered_screened_average_score_is_found(guarded, tmp_path):
    run = copy(guarded, tmp_path)
    original = next(r for r in read_csv(run / rundir.RECORDS) if r.round > 0 and r.vote)
    line, row = _edit(run, lambda r: r == original, vote_score=original.vote_score + 0.001)
    report = audit_run(run)
    assert not report.clean
    assert any(f.startswith(f"records.csv line {line} (round {row.round}, learner {row.learner}): field vote_score")
               for f in report.findings), report.text()
