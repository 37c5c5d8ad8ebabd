"""One dishonest member among ``cohep node`` processes on Anvil, for every member attack: did it hold,
and what did it cost the honest members' model?

    python bench/member_attacks.py                  # every case, 3 seeds, 16 rounds, and the runs without it
    python bench/member_attacks.py --cases "slow drip" "copies votes" --seeds 0,1
    python bench/member_attacks.py --rescore --work DIR   # the accuracy table again from a finished work folder

Each case runs three honest ``cohep node`` processes (synthetic 28 x 28 digits dealt out in four
shares, ``mnist_cnn``, Anvil at a 0.25 s block time, the node tests' 40-block vote window, 120
blocks to propose; the vote on the loss, so that good proposals, the dishonest node's among them,
are accepted) and one dishonest member with a real key: a real ``cohep node`` whose store is served
dishonestly (slow drip at 1 byte/s, some voters only, withheld or offline after its proposal is
accepted: then an honest node is restarted on an empty disk), or its own transactions (copying the
others' votes, naming another member's file, and the crafted blobs of the node drills: NaN, wrong
shapes, a blob over the cap, a digest mismatch, a URI outside the stores, a re-encoded blob).

A case held if every honest vote due (each honest voter of each round with a proposal) was counted,
no honest member was suspended, every honest node finished on the chain's weights, the case did not
get what it was after (see ``cohep.testing.localnet.member_attack``) and ``cohep audit`` from one
honest member's store exits 0 and names what the dishonest member did.

Accuracy is measured on one test set common to every run (``--test-images`` synthetic digits drawn
apart from the members' data), on the weights the run adopted, and compared seed by seed (each seed
fixes the initial weights and the training; the proposer order is drawn by the chain) with **the run
without the attacker**: the three honest members alone, on the same data. The attacker's data never
reaches the model when its proposals are refused, so that run is what the honest members would have
had without letting it in. Two columns: the same number of rounds (what the attack cost in all,
including the turns the attacker was drawn for and wasted), and the same number of honest turns
(the run without the attacker after as many rounds as the attack run had honestly proposed ones:
what it cost beyond its own turns; this is the run in which the member is honest but absent, its
turns skipped). One row per case: held (seeds), honest votes cast / due, honest members suspended,
accuracy, both differences as mean +- sd over seeds; last,
``member attacks held: N/N; honest members suspended: S; audit: ...``.
"""
from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("COHEP_PROGRESS", "0")

from cohep.testing import bench

NODE_CASES = ("slow drip", "serves some voters only", "withholds after acceptance", "offline after acceptance")
OWN_CASES = ("copies votes", "another member's file")


def all_cases() -> list[str]:
    from cohep.testing.localnet import Adversary

    return [*NODE_CASES, *OWN_CASES, *Adversary.CASES]


def parser():
    ap = bench.parser(__doc__)
    ap.add_argument("--cases", nargs="*", default=None, help="which cases (default: all)")
    ap.add_argument("--rounds", type=int, default=16,
                    help="rounds of every run (four per member with the attacker: the run without it plateaus by 10)")
    bench.add_seed_list(ap, "0,1,2", help="experiment seeds (initial weights, training); each case and the "
                                          "run without the attacker run once per seed, compared seed by seed")
    ap.add_argument("--test-images", type=int, default=2000,
                    help="synthetic digits in the test set common to every run (drawn apart from the members' data)")
    ap.add_argument("--drip-s", type=float, default=1.0, help="seconds between the slow drip's bytes")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--rescore", action="store_true",
                    help="run nothing: the accuracy table again from the finished runs in --work")
    return ap


def _folder(case: str | None, seed: int) -> str:
    name = "baseline" if case is None else case.replace(" ", "_").replace("'", "")
    return f"{name}-s{seed}"


def _spread(values: list[float]) -> str:
    """mean +- sample standard deviation, in points, of differences given as fractions."""
    ok = [v for v in values if not math.isnan(v)]
    if not ok:
        return "-"
    mean = sum(ok) / len(ok)
    if len(ok) == 1:
        return f"{mean * 100:+.1f} pt"
    sd = math.sqrt(sum((v - mean) ** 2 for v in ok) / (len(ok) - 1))
    return f"{mean * 100:+.1f} +- {sd * 100:.1f} pt"


class Baseline:
    """The run without the attacker for one seed: its common-test accuracy after every round."""

    def __init__(self, curve: dict[int, float]):
        self.curve = curve

    def at(self, rounds: int) -> float:
        return self.curve.get(min(max(rounds, 1), max(self.curve)), math.nan) if self.curve else math.nan

    @property
    def final(self) -> float:
        return self.at(max(self.curve)) if self.curve else math.nan


def _score(run, base: Baseline) -> tuple[float, float, float, int]:
    """(final common accuracy, minus the baseline after as many rounds, minus the baseline after as
    many honest turns, honest turns) of one run (an AttackResult or a (common, turns) pair)."""
    common, turns = (run.common, run.honest_turns) if hasattr(run, "common") else run
    if not common:
        return math.nan, math.nan, math.nan, turns
    final = common[max(common)]
    return final, final - base.at(max(common)), final - base.at(turns), turns


def _accuracy_rows(cases, seeds, runs, bases) -> tuple[list[tuple], list[float], list[float]]:
    """Per case: accuracy, both differences (mean +- sd) and the per-seed differences in honest turns."""
    rows, same_rounds, same_turns = [], [], []
    for case in cases:
        scored = [_score(runs[(case, s)], bases[s]) for s in seeds if (case, s) in runs]
        rounds_d = [d for _, d, _, _ in scored]
        turns_d = [d for _, _, d, _ in scored]
        same_rounds += [d for d in rounds_d if not math.isnan(d)]
        same_turns += [d for d in turns_d if not math.isnan(d)]
        accs = [a for a, _, _, _ in scored if not math.isnan(a)]
        rows.append((f"{np.mean(accs):.4f}" if accs else "nan", _spread(rounds_d), _spread(turns_d),
                     " ".join(f"{d * 100:+.1f}" for d in turns_d),
                     " ".join(str(t) for _, _, _, t in scored)))
    return rows, same_rounds, same_turns


def _summary(bases: dict[int, Baseline], rounds: int, same_rounds: list[float], same_turns: list[float]) -> None:
    finals = [b.final for b in bases.values()]
    at = max(1, rounds * 10 // 16)
    print(f"without the attacker: common test accuracy {np.nanmean(finals):.4f} after {rounds} rounds (seeds "
          f"{' '.join(f'{a:.4f}' for a in finals)}), {np.nanmean([b.at(at) for b in bases.values()]):.4f} after {at}")
    print(f"accuracy against the run without the attacker, every run: same rounds {_spread(same_rounds)}, "
          f"same honest turns {_spread(same_turns)}")


def rescore(args, cases: list[str]) -> int:
    """The accuracy table from the folders of a finished run (nothing is run again)."""
    from cohep.testing.localnet import accuracy_on, adopted_digests, honest_turns

    test = args.work / "test.npz"
    bases, runs = {}, {}
    for seed in args.seeds:
        root = args.work / _folder(None, seed)
        digests = adopted_digests(root)
        bases[seed] = Baseline(dict(zip(range(1, len(digests) + 1), accuracy_on(root, test, digests))))
        for case in cases:
            root = args.work / _folder(case, seed)
            if (root / "node0" / "final_weights.safetensors").exists():
                digests = adopted_digests(root)
                runs[(case, seed)] = ({len(digests): accuracy_on(root, test, digests[-1:])[0]}, honest_turns(root))
    rows, same_rounds, same_turns = _accuracy_rows(cases, args.seeds, runs, bases)
    header = ("attack", "runs", "accuracy", "vs without, same rounds", "vs without, same honest turns",
              "per seed (same turns)", "honest turns")
    print("\n".join(bench.table(header, [(c, sum((c, s) in runs for s in args.seeds), *row)
                                         for c, row in zip(cases, rows)])))
    _summary(bases, args.rounds, same_rounds, same_turns)
    return 0


def main(argv=None) -> int:
    from cohep.testing.localnet import member_attack, split_npz
    from cohep.testing.synthetic import synthetic_digits

    args = parser().parse_args(argv)
    cases = args.cases or all_cases()
    unknown = [c for c in cases if c not in all_cases()]
    if unknown:
        print(f"unknown cases {unknown}; known: {all_cases()}", file=sys.stderr)
        return 2
    if args.rescore:
        if args.work is None or not (args.work / "test.npz").exists():
            print("--rescore needs --work, the folder of a finished run (with its test.npz)", file=sys.stderr)
            return 2
        return rescore(args, cases)
    work = args.work or Path(tempfile.mkdtemp(prefix="cohep-bench-attacks-"))
    data = split_npz(*synthetic_digits(1200, seed=0), work / "data", 4)
    test = work / "test.npz"  # other draws of the same generator, scored on the adopted weights of every run
    tx, ty = synthetic_digits(args.test_images, seed=10_000)
    np.savez(test, x=tx, y=ty)

    def settings(seed: int) -> dict:
        return {"experiment": {"seed": seed}, "model": {"name": "mnist_cnn"}, "train": {"epochs": 1},
                "vote": {"metric": "loss"},
                "chain": {"proposal_window": 120}}  # four nodes starting at once on 2 cores: 30 s for round 1

    print(f"work folder {work}; {os.cpu_count()} CPU cores; {args.rounds} rounds a run; 3 honest members + 1; "
          f"seeds {args.seeds}; common test set {args.test_images} images", flush=True)
    t0 = time.perf_counter()
    bases = {}
    for seed in args.seeds:
        b = member_attack(None, work / _folder(None, seed), data, rounds=args.rounds, settings=settings(seed),
                          test=test, test_rounds=tuple(range(1, args.rounds + 1)))
        bases[seed] = Baseline(b.common)
        print(f"without the attacker, seed {seed}: common test accuracy {bases[seed].final:.4f} "
              f"({bases[seed].at(args.rounds * 10 // 16):.4f} after {args.rounds * 10 // 16} rounds); honest votes "
              f"{b.duties.cast}/{b.duties.due}, {b.seconds:.0f} s{'' if b.held else ' (' + b.why + ')'}", flush=True)
    runs, results = {}, []
    for case in cases:
        for seed in args.seeds:
            root = work / _folder(case, seed)
            shutil.rmtree(root, ignore_errors=True)
            r = member_attack(case, root, data, rounds=args.rounds, settings=settings(seed), drip_s=args.drip_s,
                              test=test)
            runs[(case, seed)] = r
            results.append(r)
            final, d_rounds, d_turns, turns = _score(r, bases[seed])
            print(f"  {case}, seed {seed}: {'held' if r.held else 'NOT held: ' + r.why}; common accuracy {final:.4f}, "
                  f"{d_rounds * 100:+.1f} pt same rounds, {d_turns * 100:+.1f} pt same honest turns ({turns}); "
                  f"{r.seconds:.0f} s", flush=True)
    acc_rows, same_rounds, same_turns = _accuracy_rows(cases, args.seeds, runs, bases)
    header = ("attack", "held", "honest votes", "honest suspended", "accuracy", "vs without, same rounds",
              "vs without, same honest turns", "per seed (same turns)", "honest turns", "s", "audit says / why not")
    rows = []
    for case, acc in zip(cases, acc_rows):
        mine = [runs[(case, s)] for s in args.seeds]
        first = next((r for r in mine if not r.held), mine[0])
        said = first.why if not first.held else (first.audit_lines[0].split(": ", 1)[-1] if first.audit_lines else "-")
        rows.append((case, f"{sum(r.held for r in mine)}/{len(mine)}",
                     f"{sum(r.duties.cast for r in mine)}/{sum(r.duties.due for r in mine)}",
                     sum(len(r.duties.suspended) for r in mine), *acc,
                     f"{sum(r.seconds for r in mine):.0f}", said[:120]))
    print()
    print("\n".join(bench.table(header, rows)))
    _summary(bases, args.rounds, same_rounds, same_turns)
    held = sum(r.held for r in results)
    suspended = sum(len(r.duties.suspended) for r in results)
    named = sum(r.audit_exit == 0 and bool(r.audit_lines) for r in results)
    exits = sum(r.audit_exit == 0 for r in results)
    print(f"{time.perf_counter() - t0:.0f} s in all")
    print(f"member attacks held: {held}/{len(results)}; honest members suspended: {suspended}; "
          f"audit: exit 0 in {exits}/{len(results)}, the attacker named in {named}/{len(results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
