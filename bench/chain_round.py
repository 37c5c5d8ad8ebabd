"""Cost of one protocol round on the embedded chain: gas per transaction and wall time.

    python bench/chain_round.py [--members 5] [--rounds 10]

Every round: the drawn proposer proposes, every other member votes (two in three approve), and a
member finalizes. The v1 contract (basis-point threshold, digest-fed draw, no suspension), measured
with this script on commit 794f0ea, is printed next to the default workload for comparison.
"""
from __future__ import annotations

import hashlib
import statistics
import sys
import time
from fractions import Fraction

from cohep.ledger import Chain, Coordinator
from cohep.testing import bench

#: v1 (commit 794f0ea), 5 members, 10 rounds: the same workload as this script's defaults.
V1_GAS_5_MEMBERS = {"propose": 161_189, "vote": 72_449, "finalize": 186_575, "round": 694_708}


def parser():
    ap = bench.parser(__doc__)
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=10)
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    n = args.members
    chain = Chain.embedded(n)
    members = chain.accounts[:n]

    def h(s):
        return hashlib.sha256(s.encode()).digest()

    t0 = time.perf_counter()
    coord = Coordinator.deploy(chain, members, threshold=Fraction(1, 2), seed=h("seed"), initial_digest=h("init"),
                               model_digest=h("model"), vote_window=max(50, n), max_missed=3, sealed=False)
    deploy_s = time.perf_counter() - t0
    deploy_gas = coord.gas_used
    gas: dict[str, list[int]] = {"propose": [], "vote": [], "finalize": []}
    times = []
    for k in range(args.rounds):
        t0 = time.perf_counter()
        r = coord.round()
        p = coord.proposer(r)
        gas["propose"].append(coord.propose(p, r, h(f"w{k}"), f"file:///store/{k}.safetensors")["gasUsed"])
        for i, m in enumerate(members):
            if m != p:
                gas["vote"].append(coord.vote(m, r, (i + k) % 3 != 0, 900_000 + i)["gasUsed"])
        before = coord.gas_used
        coord.finalize(members[0], r)
        gas["finalize"].append(coord.gas_used - before)
        times.append(time.perf_counter() - t0)
    print(f"embedded chain, {n} members, {args.rounds} rounds (deploy {deploy_s:.2f} s, {deploy_gas:,} gas)")
    for name, values in gas.items():
        print(f"  {name:<9} gas: min {min(values):>9,}  median {int(statistics.median(values)):>9,}  max {max(values):>9,}")
    per_round = sum(gas["propose"] + gas["vote"] + gas["finalize"]) / args.rounds
    print(f"  gas per round (mean) : {per_round:,.0f}")
    if (n, args.rounds) == (5, 10):
        v1 = V1_GAS_5_MEMBERS
        print(f"  v1 contract, same run: {v1['round']:,} per round (median propose {v1['propose']:,}, "
              f"vote {v1['vote']:,}, finalize {v1['finalize']:,}); v2 / v1 = {per_round / v1['round']:.3f}")
    print(f"  wall time per round  : median {statistics.median(times) * 1000:.0f} ms, first {times[0] * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
