"""What sealed votes add to a round: gas, transactions and seconds, sealed against unsealed.

    python bench/sealed_votes.py [--members 5,16] [--rounds 5] [--chains embedded,anvil]

For each chain (the embedded py-evm chain, and Anvil started by cohep.ledger.anvil with automine),
each member count and each vote mode (vote transactions, and signed ballots relayed in batches) it
deploys the Coordinator twice, with ``sealed`` off (vote() / submit_ballots) and on (commit, then
reveal: commit_vote + submit_reveals per voter, or submit_commits + submit_reveals batches), and plays
the same rounds: the drawn proposer proposes, every other member votes (two in three approve), a
member finalizes. It prints one row per case: gas per round, transactions per round, seconds per
round (the client's time on the chain, signing included), and sealed / unsealed.
"""
from __future__ import annotations

import hashlib
import sys
from fractions import Fraction

from cohep.ledger import Chain, Coordinator
from cohep.ledger import ballots as B
from cohep.testing import bench


def parser():
    ap = bench.parser(__doc__)
    ap.add_argument("--members", default="5,16", help="member counts, comma-separated")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--chains", default="embedded,anvil", help="embedded and/or anvil")
    return ap


def h(s: str) -> bytes:
    return hashlib.sha256(s.encode()).digest()


def play(chain: Chain, n: int, rounds: int, signed: bool, sealed: bool) -> dict[str, float]:
    """Mean gas, transactions and seconds per round of ``rounds`` rounds."""
    members = chain.accounts[:n]
    coord = Coordinator.deploy(chain, members, threshold=Fraction(1, 2), seed=h("seed"), initial_digest=h("init"),
                               model_digest=h("model"), vote_window=max(50, n), max_missed=3, sealed=sealed)
    gas0, tx0, s0 = coord.gas_used, coord.transactions, coord.seconds
    domain = coord.ballot_domain()
    for k in range(rounds):
        r = coord.round()
        st = coord.round_state(r)
        p = st.proposer
        coord.propose(p, r, h(f"w{k}"), f"file:///store/{k}.safetensors")
        votes = {m: ((i + k) % 3 != 0, 900_000 + i) for i, m in enumerate(members) if m in st.voters}
        if not sealed and not signed:
            for m, (approve, score) in votes.items():
                coord.vote(m, r, approve, score)
        elif not sealed:
            coord.submit_ballots(p, r, [coord.sign_ballot(m, r, a, s) for m, (a, s) in votes.items()])
        else:
            salts = {m: B.new_salt() for m in votes}
            commitments = {m: B.commitment(domain, r, m, int(a), [s], salts[m]) for m, (a, s) in votes.items()}
            if signed:
                coord.submit_commits(p, r, [coord.sign_commit(m, r, c) for m, c in commitments.items()])
                coord.submit_reveals(p, r, [B.Reveal(m, r, int(a), (s,), salts[m]) for m, (a, s) in votes.items()])
            else:
                for m, c in commitments.items():
                    coord.commit_vote(m, r, c)
                for m, (a, s) in votes.items():
                    coord.reveal_vote(m, r, int(a), [s], salts[m])
        coord.finalize(members[0], r)
    return {"gas": (coord.gas_used - gas0) / rounds, "tx": (coord.transactions - tx0) / rounds,
            "s": (coord.seconds - s0) / rounds}


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    sizes = [int(x) for x in args.members.split(",")]
    print(f"{'chain':<9} {'members':>7} {'votes':<8} {'sealed':<6} {'gas/round':>11} {'tx/round':>8} "
          f"{'s/round':>8}   sealed/unsealed (gas, tx, s)")
    for kind in args.chains.split(","):
        for n in sizes:
            if kind == "anvil":
                from cohep.ledger.anvil import Anvil

                with Anvil(accounts=n) as anvil:
                    rows = {(signed, sealed): play(Chain.connect(anvil.url, n), n, args.rounds, signed, sealed)
                            for signed in (False, True) for sealed in (False, True)}
            else:
                rows = {(signed, sealed): play(Chain.embedded(n), n, args.rounds, signed, sealed)
                        for signed in (False, True) for sealed in (False, True)}
            for signed in (False, True):
                base = rows[(signed, False)]
                for sealed in (False, True):
                    m = rows[(signed, sealed)]
                    ratio = "" if not sealed else (f"   x{m['gas'] / base['gas']:.2f}, x{m['tx'] / base['tx']:.2f}, "
                                                   f"x{m['s'] / base['s']:.2f}")
                    print(f"{kind:<9} {n:>7} {'signed' if signed else 'tx':<8} {'yes' if sealed else 'no':<6} "
                          f"{m['gas']:>11,.0f} {m['tx']:>8.1f} {m['s']:>8.3f}{ratio}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
