"""One dishonest member among ``cohep node`` processes on Anvil, for every member attack: did it hold?

    python bench/member_attacks.py                  # every case, 8 rounds each, and the run without it
    python bench/member_attacks.py --cases "slow drip" "copies votes" --rounds 8

Each case runs three honest ``cohep node`` processes (synthetic 28 x 28 digits dealt out in four
shares, ``mnist_cnn``, Anvil at a 0.25 s block time, the node tests' 40-block vote
window, 120 blocks to propose; the vote on the loss, so that good proposals, the dishonest
node's among them, are accepted) and
one dishonest member with a real key: a real ``cohep node`` whose store is served dishonestly (slow
drip at 1 byte/s, some voters only, withheld or offline after its proposal is accepted: then an
honest node is restarted on an empty disk), or its own transactions (copying the others' votes,
naming another member's file, and the crafted blobs of the node drills: NaN, wrong shapes, a blob
over the cap, a digest mismatch, a URI outside the stores, a re-encoded blob).

A case held if every honest vote due (each honest voter of each round with a proposal) was counted,
no honest member was suspended, every honest node finished on the chain's weights, the case did not
get what it was after (see ``cohep.testing.localnet.member_attack``) and ``cohep audit`` from one
honest member's store exits 0 and names what the dishonest member did. One row per case: held,
honest votes cast / due, honest members suspended, the honest members' mean final test accuracy
against the same run without the attacker (the three honest members alone); last,
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
    ap.add_argument("--rounds", type=int, default=8, help="rounds of every run (two per member: 4 members)")
    ap.add_argument("--drip-s", type=float, default=1.0, help="seconds between the slow drip's bytes")
    ap.add_argument("--work", type=Path, default=None)
    return ap


def main(argv=None) -> int:
    from cohep.testing.localnet import member_attack, split_npz
    from cohep.testing.synthetic import synthetic_digits

    args = parser().parse_args(argv)
    cases = args.cases or all_cases()
    unknown = [c for c in cases if c not in all_cases()]
    if unknown:
        print(f"unknown cases {unknown}; known: {all_cases()}", file=sys.stderr)
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="cohep-bench-attacks-"))
    data = split_npz(*synthetic_digits(1200, seed=0), work / "data", 4)
    settings = {"model": {"name": "mnist_cnn"}, "train": {"epochs": 1}, "vote": {"metric": "loss"},
                "chain": {"proposal_window": 120}}  # four nodes starting at once on 2 cores: 30 s for round 1
    print(f"work folder {work}; {os.cpu_count()} CPU cores; {args.rounds} rounds a run; 3 honest members + 1")
    t0 = time.perf_counter()
    base = member_attack(None, work / "baseline", data, rounds=args.rounds, settings=settings)
    print(f"without the attacker: accuracy {base.accuracy:.4f}, honest votes {base.duties.cast}/{base.duties.due}, "
          f"{base.seconds:.0f} s{'' if base.held else ' (' + base.why + ')'}", flush=True)
    header = ("attack", "held", "honest votes", "honest suspended", "accuracy", "vs without", "s", "audit says / why not")
    rows, results = [], []
    for case in cases:
        root = work / case.replace(" ", "_").replace("'", "")
        shutil.rmtree(root, ignore_errors=True)
        r = member_attack(case, root, data, rounds=args.rounds, settings=settings, drip_s=args.drip_s)
        results.append(r)
        delta = (r.accuracy - base.accuracy) * 100 if not math.isnan(r.accuracy) else math.nan
        said = r.why if not r.held else (r.audit_lines[0].split(": ", 1)[-1] if r.audit_lines else "-")
        rows.append((case, "yes" if r.held else "NO", f"{r.duties.cast}/{r.duties.due}", len(r.duties.suspended),
                     f"{r.accuracy:.4f}", f"{delta:+.1f} pt", f"{r.seconds:.0f}", said[:150]))
        print(f"  {case}: {'held' if r.held else 'NOT held: ' + r.why} ({r.seconds:.0f} s)", flush=True)
    print()
    print("\n".join(bench.table(header, rows)))
    held = sum(r.held for r in results)
    suspended = sum(len(r.duties.suspended) for r in results)
    named = sum(r.audit_exit == 0 and bool(r.audit_lines) for r in results)
    exits = sum(r.audit_exit == 0 for r in results)
    worst = max((abs(r.accuracy - base.accuracy) * 100 for r in results if not math.isnan(r.accuracy)), default=math.nan)
    print(f"largest accuracy difference from the run without the attacker: {worst:.1f} points; "
          f"{time.perf_counter() - t0:.0f} s in all")
    print(f"member attacks held: {held}/{len(results)}; honest members suspended: {suspended}; "
          f"audit: exit 0 in {exits}/{len(results)}, the attacker named in {named}/{len(results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
