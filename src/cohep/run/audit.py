"""``cohep audit``: check an experiment from its chain's event log alone, trusting nobody.

The audit replays the contract's rules in Python over the recorded events: it recomputes who had to
propose each round (the seeded draw over the members active at the round's start), who could vote,
how many approvals were required, the outcome from the recorded ballots, every missed duty and every
suspension. It re-fetches every proposed blob from the store its URI names and re-verifies it against
the digest on chain (an accepted blob that does not verify is a failure; a rejected one is the
voters' reason, noted). A round with several accepted proposals leaves their average
(``combine.adopted``): the audit recomputes its sha256 from the verified blobs and checks it against
what every member recorded adopting and the weights the experiment ended with. With a server step
(``[round] server_lr`` != 1, read from the run's manifest or the experiment file) a round's weights
depend on the weights it started from, so the audit chains the recomputation from the initial weights
(in the store under the contract's initial digest) through every accepted round. With
``[round] weighting = "examples"`` the average is weighted by the example counts the blobs declare
(inside the blob, so the verified digest covers them), clipped as every member clips them. Any
disagreement is
a finding; ``cohep audit`` exits 1 if there is one.

What a member did that the rules allow but an honest member would not do (a proposal every voter
rejected and why, where that can be known; a URI outside the proposer's own store; a blob withheld
after its acceptance; a vote committed and never revealed; a ballot identical to one that was public
before it; missed duties and suspensions with their reason) is a finding *about that member*
(``member_findings``): printed, never a reason for exit 1, since an honest run's arithmetic holds
whatever a member does within the rules (docs/attacks.md).

It runs on a live chain (an experiment file and an RPC URL) or on a finished run directory, which
keeps the chain's event log (``chain_events.jsonl``) and its weight store.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from collections.abc import Callable, Iterable

from cohep.core.errors import DataError, IntegrityError
from cohep.protocol.vote import required_approvals


@dataclass
class ContractRules:
    """What the contract was deployed with (its settings view)."""

    members: list[str]
    threshold: Fraction
    max_missed: int
    seed: bytes  #: the seed the draw uses: the contract's draw_seed (v4; earlier contracts drew from their seed)
    initial_digest: str  #: hex
    proposers: int = 1  #: slots per round
    vote_on_average: bool = False  #: combine "average"

    @classmethod
    def of(cls, settings) -> "ContractRules":
        return cls([m.lower() for m in settings.members], Fraction(settings.threshold_num, settings.threshold_den),
                   int(settings.max_missed), bytes(getattr(settings, "draw_seed", settings.seed)),
                   bytes(settings.initial_digest).hex(),
                   int(settings.proposers), bool(settings.vote_on_average))

    def to_dict(self) -> dict:
        return {"members": self.members, "threshold_num": self.threshold.numerator,
                "threshold_den": self.threshold.denominator, "max_missed": self.max_missed,
                "seed": self.seed.hex(), "initial_digest": self.initial_digest,
                "proposers": self.proposers, "vote_on_average": self.vote_on_average}

    @classmethod
    def from_dict(cls, d: dict) -> "ContractRules":
        try:
            return cls([str(m).lower() for m in d["members"]], Fraction(int(d["threshold_num"]), int(d["threshold_den"])),
                       int(d["max_missed"]), bytes.fromhex(str(d["seed"]).removeprefix("0x")),
                       str(d["initial_digest"]).removeprefix("0x"), int(d.get("proposers", 1)),
                       bool(d.get("vote_on_average", False)))
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            raise DataError(f"malformed contract settings ({exc.__class__.__name__}: {exc})") from None


@dataclass
class AuditReport:
    rounds: int = 0
    proposals: int = 0
    accepted: int = 0
    voided: int = 0
    suspensions: int = 0
    blobs_verified: int = 0
    final_digest: str = ""
    #: sha256 of the weights the last accepted round left (its average when several were accepted);
    #: set by verify_blobs, which has the blobs
    adopted_digest: str = ""
    findings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: (member index, what it did): misbehaviour the rules allow, found by member_findings
    about_members: list[tuple[int, str]] = field(default_factory=list)
    #: (member index, round, "proposal" | "vote" | "reveal"): every duty replay counted as missed
    missed: list[tuple[int, int, str]] = field(default_factory=list)
    #: (member index, round, reason on chain or ""): every Suspended event
    suspended: list[tuple[int, int, str]] = field(default_factory=list)
    #: the replayed rounds: round -> proposers, active set, voters, required, ballots, slots, outcome
    replayed: dict = field(default_factory=dict, repr=False)

    @property
    def clean(self) -> bool:
        return not self.findings

    def text(self) -> str:
        lines = [f"{self.rounds} rounds: {self.proposals} proposals, {self.accepted} accepted, {self.voided} void, "
                 f"{self.suspensions} suspensions; {self.blobs_verified} blobs re-verified; "
                 f"final weights {self.final_digest[:16] or '-'}"]
        lines += [f"note: {n}" for n in self.notes]
        lines += [f"member {i} {text}" for i, text in self.about_members]
        lines += [f"MISMATCH: {f}" for f in self.findings]
        lines.append("audit: clean" if self.clean else f"audit: FAILED ({len(self.findings)} findings)")
        return "\n".join(lines)


def _hex(value) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    return str(value).lower().removeprefix("0x")


def _event(e) -> tuple[str, dict]:
    if isinstance(e, dict):
        return e["name"], e["args"]
    return e.name, e.args


def _position(e) -> tuple[int, int]:
    """(block, log index) of an event: when it became public (a run directory's log may lack them)."""
    if isinstance(e, dict):
        return int(e.get("block", 0) or 0), int(e.get("log_index", 0) or 0)
    return int(getattr(e, "block", 0) or 0), int(getattr(e, "log_index", 0) or 0)


def replay(events: Iterable, rules: ContractRules, report: AuditReport | None = None) -> AuditReport:
    """Recompute every round from the events in chain order; disagreements become findings."""
    from cohep.protocol.combine import combination
    from cohep.ledger.draw import proposer_indices

    report = report or AuditReport()
    n = len(rules.members)
    index = {m: i for i, m in enumerate(rules.members)}
    active = [True] * n
    in_a_row = [0] * n
    expected_suspensions: list[tuple[int, int]] = []
    rounds = report.replayed
    accepted_digest = rules.initial_digest

    def find(text: str) -> None:
        report.findings.append(text)

    def miss(i: int, r: int, kind: str) -> None:
        report.missed.append((i, r, kind))
        in_a_row[i] += 1
        if in_a_row[i] >= rules.max_missed and active[i]:
            active[i] = False
            expected_suspensions.append((i, r))

    def member(value) -> int:
        return index.get("0x" + _hex(value), -1)

    for e in events:
        name, a = _event(e)
        if name == "RoundStarted":
            r = int(a["round"])
            picks = proposer_indices(rules.seed, n, r, active, rules.proposers)
            named = [member(x) for x in a["proposers"]] if "proposers" in a else [member(a["proposer"])]
            if named != picks[:len(named)] or ("proposers" in a and len(named) != len(picks)):
                find(f"round {r + 1}: the chain named members {named} to propose, the draw gives {picks}")
            snapshot = list(active)
            n_active = sum(snapshot)
            voters = {i for i in range(n) if snapshot[i] and (len(picks) > 1 or i != picks[0])}
            average = rules.vote_on_average and len(picks) > 1
            need = required_approvals(n_active if average else max(0, n_active - 1), rules.threshold)
            for key, value in (("eligible", len(voters)), ("required", need)):
                if key in a and int(a[key]) != value:
                    find(f"round {r + 1}: {key} {a[key]} on chain, {value} by the rules")
            rounds[r] = {"proposer": picks[0], "proposers": picks, "active": snapshot, "voters": voters,
                         "required": need, "average": average, "ballots": {}, "slots": {}, "digest": None,
                         "accepted": False, "accepted_slots": [], "scores": {}, "voted_at": {}, "committed": {}}
        elif name == "Proposed":
            r = int(a["round"])
            st = rounds.get(r)
            if st is None:
                find(f"round {r + 1}: a proposal before the round started")
                continue
            j = int(a.get("slot", 0))
            if j >= len(st["proposers"]) or member(a["proposer"]) != st["proposers"][j] or j in st["slots"]:
                find(f"round {r + 1}: slot {j} proposed by {a['proposer']}, not its drawn proposer (or twice)")
                continue
            st["slots"][j] = (_hex(a["digest"]), a["uri"])
            in_a_row[st["proposers"][j]] = 0
            report.proposals += 1
        elif name == "Voted":
            r = int(a["round"])
            st = rounds.get(r)
            v = member(a["voter"])
            if st is None or not st["slots"]:
                find(f"round {r + 1}: a vote without a proposal")
                continue
            if v not in st["voters"] or v in st["ballots"]:
                find(f"round {r + 1}: a vote from {a['voter']}, who could not vote (again)")
                continue
            bits = int(a["approvals"]) if "approvals" in a else int(bool(a["approve"]))
            own = {j for j, p in enumerate(st["proposers"]) if p == v}
            allowed = {0} if st["average"] else set(st["slots"]) - own
            if any(bits >> j & 1 and j not in allowed for j in range(bits.bit_length())):
                find(f"round {r + 1}: {a['voter']} approved a slot it could not approve")
            st["ballots"][v] = bits
            st["scores"][v] = [int(x) for x in a.get("scores_ppm") or ()]
            st["voted_at"][v] = _position(e)
            in_a_row[v] = 0
        elif name == "Committed":
            st = rounds.get(int(a["round"]))
            if st is not None:
                st["committed"].setdefault(member(a["voter"]), _position(e))
        elif name == "CommitsPosted":  # aggregated ballots: the voters a commitments post names
            st = rounds.get(int(a["round"]))
            if st is not None:
                for i in range(n):
                    if int(a["voters"]) >> i & 1:
                        st["committed"].setdefault(i, _position(e))
        elif name == "RevealsPosted":  # aggregated: the tally claimed, counted at finalize unless disproven
            st = rounds.get(int(a["round"]))
            if st is not None:
                st["claim"], st["approved"] = int(a["voted"]), int(a["approved"])
        elif name == "RelayFault":  # a challenge proved the post wrong: discarded
            st = rounds.get(int(a["round"]))
            if st is not None and a["phase"] == "reveals":
                st["claim"] = 0
        elif name in ("Finalized", "RoundVoided"):
            r = int(a["round"])
            st = rounds.get(r)
            if st is None:
                find(f"round {r + 1}: closed but never started")
                continue
            report.rounds += 1
            silent = {p for j, p in enumerate(st["proposers"]) if j not in st["slots"]} if any(st["active"]) else set()
            if name == "RoundVoided":
                report.voided += 1
                if st["slots"]:
                    find(f"round {r + 1}: voided although a proposal was recorded")
                for i in sorted(silent):
                    miss(i, r, "proposal")
                continue
            claim = st.get("claim", 0)
            for i in range(n):  # a standing claim's voters, less those that revealed directly since
                if claim >> i & 1 and i not in st["ballots"]:
                    if i not in st["voters"]:
                        find(f"round {r + 1}: the reveals post counts member {i}, who could not vote")
                        continue
                    st["ballots"][i] = st.get("approved", 0) >> i & 1
                    st["voted_at"][i] = _position(e)
                    in_a_row[i] = 0
            proposed = sorted(st["slots"])
            if st["average"]:
                approvals = [sum(b & 1 for b in st["ballots"].values())]
                chosen = proposed if approvals[0] >= st["required"] else []
            else:
                approvals = [sum(b >> j & 1 for b in st["ballots"].values()) for j in range(len(st["proposers"]))]
                chosen = [j for j in proposed if approvals[j] >= st["required"]]
            accepted = bool(chosen)
            digest = combination([bytes.fromhex(st["slots"][j][0]) for j in (chosen or proposed)]).hex()
            mask = sum(1 << j for j in chosen)
            on_chain = {"approvals": a.get("approvals"), "votes": a.get("votes"), "required": a.get("required"),
                        "accepted": a.get("accepted"), "digest": _hex(a["digest"]) if "digest" in a else None,
                        "accepted_slots": a.get("accepted_slots")}
            recomputed = {"approvals": approvals, "votes": len(st["ballots"]), "required": st["required"],
                          "accepted": accepted, "digest": digest, "accepted_slots": mask}
            for key, value in recomputed.items():
                got = on_chain[key]
                if got is None:
                    continue
                if isinstance(value, list):
                    got = [int(x) for x in got] if isinstance(got, (list, tuple)) else [int(got)]
                    value = value[:len(got)]
                elif not isinstance(value, str):
                    got = type(value)(got)
                if got != value:
                    find(f"round {r + 1}: {key} {got} on chain, {value} recomputed from the ballots")
            st["accepted"], st["accepted_slots"], st["digest"] = accepted, chosen, digest
            if accepted:
                accepted_digest = digest
                report.accepted += 1
            for i in sorted(silent | (st["voters"] - set(st["ballots"]))):  # one missed duty a round at most
                miss(i, r, "proposal" if i in silent else "reveal" if i in st["committed"] else "vote")
        elif name == "Suspended":
            i = member(a["member"])
            report.suspensions += 1
            report.suspended.append((i, int(a["round"]), str(a.get("reason", ""))))
            if a.get("reason") == "faulty relay" and i >= 0:  # a proven fault of its post (RelayFault follows)
                active[i] = False
            elif (i, int(a["round"])) in expected_suspensions:
                expected_suspensions.remove((i, int(a["round"])))
            else:
                find(f"member {i} suspended in round {int(a['round']) + 1} without {rules.max_missed} missed duties in a row")
        elif name == "Rejoined":
            i = member(a["member"])
            if i < 0 or active[i]:
                find(f"member {i} rejoined without being suspended")
            else:
                active[i], in_a_row[i] = True, 0
    for i, r in expected_suspensions:
        find(f"member {i} missed {rules.max_missed} duties in a row by round {r + 1} but was not suspended")
    report.final_digest = accepted_digest
    report.adopted_digest = accepted_digest
    return report


def verify_blobs(report: AuditReport, fetch: Callable[[str, bytes], object], mirrors: list = (), *,
                 initial=None, server_lr: float = 1.0, weighting: str = "equal",
                 weight_cap: float = 2.0) -> None:
    """Re-fetch every proposal by its URI and re-verify it; only accepted ones must verify.

    ``mirrors`` are (fetch, WeightStore) pairs of other stores to try by digest when a recorded URI
    is no longer served (a member's node is gone): blobs are content-addressed, so any copy that
    hashes to the digest is the blob. Each accepted round's adopted weights (the average of its
    accepted proposals in slot order) are recomputed: their sha256 is the round's ``adopted``. With
    ``server_lr`` != 1 each round steps from the previous round's weights, starting at ``initial``;
    a round that cannot be recomputed (an accepted blob that does not verify, a finding already)
    leaves every later round unrecomputed too. ``weighting`` and ``weight_cap``: the run's
    ``[round]`` settings of the same names (how every member weighed the accepted proposals).
    """
    from cohep.protocol.combine import adopted

    if server_lr != 1.0:
        if initial is None:
            raise ValueError("a server step needs the initial weights to chain the rounds from")
        report.notes.append(f"server step {server_lr:g}: each accepted round's weights recomputed from the "
                            "previous round's")
    start = initial
    for r, st in sorted(report.replayed.items()):
        weights = {}
        for j, (hexdigest, uri) in sorted(st["slots"].items()):
            accepted = j in st["accepted_slots"]
            digest = bytes.fromhex(hexdigest)
            try:
                try:
                    weights[j] = fetch(uri, digest)
                except IntegrityError as exc:
                    if not str(exc).startswith(("unavailable", "timeout")):
                        raise
                    weights[j] = _from_mirror(mirrors, digest)
                    if weights[j] is None:
                        raise
                    st.setdefault("unserved", {})[j] = str(exc)  # member_findings: why its URI failed
                report.blobs_verified += 1
            except IntegrityError as exc:
                where = f"round {r + 1}" + (f" slot {j}" if len(st["proposers"]) > 1 else "")
                st.setdefault("unverified", {})[j] = str(exc)  # member_findings: why no copy verified
                if accepted:
                    report.findings.append(f"{where}: the accepted weights do not verify: {exc}")
                else:
                    report.notes.append(f"{where}: rejected proposal does not verify ({exc})")
        chosen = st["accepted_slots"]
        if not chosen:
            continue
        if all(j in weights for j in chosen) and (server_lr == 1.0 or start is not None):
            start, d = adopted([weights[j] for j in chosen], [bytes.fromhex(st["slots"][j][0]) for j in chosen],
                               start=start, server_lr=server_lr, weighting=weighting, weight_cap=weight_cap)
            st["adopted"] = d.hex()
            report.adopted_digest = d.hex()
        else:
            start = None  # the chain of stepped rounds is broken here


#: the score a voter records when it rejects without judging (a failed check: ``vote.to_ppm`` of NaN)
NO_SCORE_PPM = 10**15
#: how a fetch that found no copy begins its reason (wire/fetch.py's Unavailable)
_UNOBTAINABLE = ("unavailable", "timeout", "blob not available")


def _store_holding(uri: str, stores: list[str | None]) -> int | None:
    """Which of ``stores`` ``uri`` points into (the longest matching store URL), or None."""
    from cohep.wire.fetch import parse_place

    try:
        place = parse_place(uri, strict=False)
    except ValueError:
        return None
    best = None
    for i, url in enumerate(stores):
        if not url:
            continue
        try:
            base = parse_place(url.rstrip("/") or url, strict=False)
        except ValueError:
            continue
        if (base.scheme, base.host) == (place.scheme, place.host) and place.parts[:len(base.parts)] == base.parts \
                and (best is None or len(base.parts) > best[1]):
            best = (i, len(base.parts))
    return None if best is None else best[0]


def _rounds_text(rounds: list[int]) -> str:
    return ", ".join(str(r + 1) for r in rounds)


def store_answer(uri: str, timeout: float = 3.0) -> str | None:
    """How an HTTP store answers a HEAD for ``uri`` when it refuses it (``HTTP 404``); None when it
    serves it, is not HTTP or does not answer at all (a store that is down withholds nothing on purpose)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = kind(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("HEAD", parts.path or "/")
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    return None if status == 200 else f"HTTP {status}"


def member_findings(report: AuditReport, rules: ContractRules, stores: list[str | None] | None = None,
                    shared: str | None = None, probe: Callable[[str], str | None] | None = None) -> None:
    """What each member did that an honest one would not, from the replayed chain (and, for URIs, the
    experiment's ``stores``: member i's own store; ``shared``: the experiment's): appended to
    ``report.about_members`` as (member, text). Run after replay and verify_blobs (which say which
    blobs could be obtained); ``probe(uri)``: how the proposer's own store answers for an accepted
    blob when it refuses it (``store_answer``), None when it serves it."""
    found: dict[int, list[str]] = {}
    voted: dict[int, list[int]] = {}  #: rounds each member's vote was public in (unsealed rounds)
    echoed: dict[int, list[int]] = {}  #: of those, rounds its ballot equalled one already public

    def say(i: int, text: str) -> None:
        found.setdefault(i, []).append(text)

    for r, st in sorted(report.replayed.items()):
        for j, (_, uri) in sorted(st["slots"].items()):
            p = st["proposers"][j]
            where = f"round {r + 1}" + (f" slot {j}" if len(st["proposers"]) > 1 else "")
            if stores is not None and p < len(stores) and (stores[p] or shared):
                holder = _store_holding(uri, list(stores))
                in_shared = shared is not None and _store_holding(uri, [shared]) == 0
                if not in_shared and holder != p:
                    say(p, f"{where}: its proposal names a file outside its own store"
                           + (f", in the store of member {holder}" if holder is not None else ""))
            judged = {v: b for v, b in st["ballots"].items() if v != p}
            approvals = {v for v, b in judged.items() if (b & 1 if st["average"] else b >> j & 1)}
            unjudged = sorted(v for v in judged if not st["average"] and v not in approvals
                              and len(st["scores"].get(v, [])) > j and st["scores"][v][j] == NO_SCORE_PPM)
            problem = st.get("unverified", {}).get(j)
            # a blob that verifies, scored by some voters and unscored by others: served to some only,
            # whatever the outcome (the scored ones may have rejected it too)
            partial = bool(unjudged) and problem is None and len(unjudged) < len(judged)
            if judged and not approvals and j not in st["accepted_slots"] and not partial:
                why = [f"{len(unjudged)} of them without a score (a failed check)"] if unjudged else []
                if problem is not None:
                    why.append(f"its blob could be obtained from no store ({problem})"
                               if problem.startswith(_UNOBTAINABLE) else f"its blob does not verify ({problem})")
                if why:  # judged on its scores and found no better: what honest proposals also meet
                    say(p, f"{where}: its proposal was rejected by every voter ({len(judged)}): " + "; ".join(why))
            elif partial:
                others = sorted(v for v in judged if v not in unjudged)
                say(p, f"{where}: member(s) {', '.join(map(str, unjudged))} could not obtain or check its blob, "
                       f"which verifies and which member(s) {', '.join(map(str, others))} scored (served to some "
                       "voters only?)")
            unserved = st.get("unserved", {}).get(j)
            if j in st["accepted_slots"] and (unserved is None or "404" not in unserved) and probe is not None:
                unserved = probe(uri)
            if j in st["accepted_slots"] and unserved is not None and "404" in unserved:
                say(p, f"{where}: its accepted weights are withheld: its own store answers {unserved!r} "
                       "(a copy from another store verified)")
        for v, (block, index) in sorted(st["voted_at"].items()):
            if st["committed"]:
                break  # sealed votes: nothing was public before every commitment was in
            mine = (st["ballots"][v], st["scores"].get(v, []))
            voted.setdefault(v, []).append(r)
            if any(u != v and seen < (block, index) and (st["ballots"][u], st["scores"].get(u, [])) == mine
                   for u, seen in st["voted_at"].items()):
                echoed.setdefault(v, []).append(r)
    for v, rs in sorted(echoed.items()):
        # scores on a small vote set are coarse, so two honest ballots may tie once; every one, never
        if len(rs) >= 2 and rs == voted[v]:
            say(v, f"its ballot equals one already public when it voted, in every round it voted ({_rounds_text(rs)}): "
                   "copied")
    missed: dict[int, dict[str, list[int]]] = {}
    for i, r, kind in report.missed:
        missed.setdefault(i, {}).setdefault(kind, []).append(r)
    words = {"proposal": "missed its proposal", "vote": "missed its vote",
             "reveal": "committed a vote and never revealed it"}
    for i, kinds in sorted(missed.items()):
        say(i, "; ".join(f"{words[k]} in round{'s' if len(rs) > 1 else ''} {_rounds_text(rs)}" for k, rs in kinds.items()))
    for i, r, reason in report.suspended:
        say(i, f"suspended in round {r + 1}" + (f" ({reason})" if reason else "")
               + f" after {rules.max_missed} missed duties in a row")
    for i in sorted(found):
        address = rules.members[i] if 0 <= i < len(rules.members) else "?"
        report.about_members += [(i, f"({address[:10]}): {text}") for text in found[i]]


def policy_of(config: dict | None, where) -> dict:
    """How a run's rounds combined their proposals, from its recorded config: ``[round] server_lr``,
    ``weighting`` and ``weight_cap``, checked by the rules the config itself follows (their defaults
    when absent: runs before they existed)."""
    from cohep.protocol.combine import RoundSection
    from cohep.core.errors import ConfigError

    section = config.get("round") if isinstance(config, dict) else None
    known = {k: v for k, v in section.items() if k in ("server_lr", "weighting", "weight_cap")} \
        if isinstance(section, dict) else {}
    try:
        return RoundSection.from_mapping(known, where="config.round").policy()
    except ConfigError as exc:
        raise DataError(f"{where}: {exc}") from None


def _from_mirror(mirrors, digest: bytes):
    for fetch, store in mirrors:
        try:
            return fetch(store.uri(digest), digest)
        except IntegrityError:
            continue
    return None


def _mirrors(urls, max_bytes: int, reference) -> list:
    from cohep.wire.fetch import Fetcher
    from cohep.wire.store import WeightStore

    out = []
    for url in urls or ():
        store = WeightStore(url)
        out.append((Fetcher(allowed=[store.base_uri], max_bytes=max_bytes, reference=reference).fetch, store))
    return out


def audit_run(run_dir: str | Path) -> AuditReport:
    """Audit a finished run directory from its chain log, store and manifest; creates nothing.

    The directory may have moved since the run: its own store is read where it is now (the manifest
    records it as ``weights``, relative to the run directory; an older, absolute one ending in
    ``weights`` is taken as this directory's when it holds that folder), and each chain URI that
    named that store is read from this directory's copy. A blob that is missing is named by file
    and digest; one that the run's voters scored but that no longer verifies has been changed since.
    Every vote and score in records.csv is checked against the chain's ballots (``_check_records``).
    """
    from cohep.outputs import rundir

    p = Path(run_dir)
    manifest = rundir.read_manifest(p)
    interrupted = manifest.get("interrupted")
    if isinstance(interrupted, dict):
        raise DataError(f"{p} holds an interrupted run (rounds 1-{interrupted.get('rounds_done', '?')} kept): "
                        f"resume it first (cohep run --resume {p})")
    if not isinstance(manifest.get("contract_settings"), dict):
        raise DataError(f"{p / rundir.MANIFEST}: no contract settings (not a colearn run?)")
    rules = ContractRules.from_dict(manifest["contract_settings"])
    events = rundir.read_events(p)
    report = replay(events, rules)
    store = manifest.get("store")
    if not isinstance(store, str):
        raise DataError(f"{p / rundir.MANIFEST}: no store URL")
    fetch = _RunStore(p, manifest, store)
    policy = policy_of(manifest.get("config"), p / rundir.MANIFEST)
    initial_digest = bytes.fromhex(rules.initial_digest)
    try:
        reference = fetch(fetch.uri(initial_digest), initial_digest)
    except IntegrityError as exc:
        report.findings.append(f"the initial weights: {exc}")
        reference = None
    fetch.reference = reference
    if reference is not None or policy["server_lr"] == 1.0:
        verify_blobs(report, fetch, initial=reference, **policy)
        _changed_blobs(report)
    digests = manifest.get("digests") or {}
    if digests.get("chain_accepted") != report.final_digest:
        report.findings.append(f"the manifest's accepted digest {str(digests.get('chain_accepted'))[:16]} is not "
                               f"the last accepted {report.final_digest[:16]}")
    try:
        final = digest_bytes_of(rundir.read_model(p).weights_path)
    except OSError as exc:
        raise DataError(f"cannot read the final weights of {p}: {exc}") from None
    if final != report.adopted_digest:
        report.findings.append(f"final_weights.safetensors ({final[:16]}) is not the last accepted weights "
                               f"({report.adopted_digest[:16]}, recomputed from the accepted blobs)")
    _check_records(p, report, manifest)
    return report


def digest_bytes_of(path: Path) -> str:
    from cohep.wire.weights import digest_bytes

    return digest_bytes(path.read_bytes()).hex()


class _RunStore:
    """A run directory's blobs by (chain URI, digest): a URI inside the store the run wrote to is read
    from that store where it is now (this directory's ``weights`` for the run's own store), checked
    like any fetch; nothing is created. ``uri(digest)``: where the run's store put a digest."""

    def __init__(self, run_dir: Path, manifest: dict, store: str):
        from cohep.outputs import rundir
        from cohep.wire.fetch import parse_place

        self.run_dir = run_dir
        self.here = rundir.own_store(run_dir, manifest)  # None: an external store, read where it is
        self.written = manifest.get("store_uri") or (store if self.here is None or Path(store).is_absolute() else None)
        self.local = str(self.here.resolve()) if self.here is not None else store
        self.max_bytes = int(manifest.get("max_bytes") or 2**31)
        self.reference = None
        try:
            self._written = parse_place(self.written.rstrip("/"), strict=False) if self.written else None
        except ValueError:
            self._written = None

    def uri(self, digest: bytes) -> str:
        return f"{(self.written or self.local).rstrip('/')}/{digest.hex()}.safetensors"

    def shown(self, name: str) -> str:
        if self.here is not None:
            from cohep.outputs import rundir

            return f"{rundir.STORE}/{name}"
        return f"{self.local.rstrip('/')}/{name}"

    def __call__(self, uri: str, digest: bytes):
        from cohep.wire.fetch import Fetcher, parse_place

        name = f"{digest.hex()}.safetensors"
        target = uri
        try:
            place = parse_place(uri, strict=True)
        except ValueError:
            place = None
        if place is not None and self._written is not None and place.parts[-1:] == (name,) \
                and (place.scheme, place.host, place.parts[:-1]) == (self._written.scheme, self._written.host,
                                                                      self._written.parts):
            target = f"{self.local.rstrip('/')}/{name}"  # the run's store, where it is now
            if self.here is not None and not (self.here / name).is_file():
                raise IntegrityError(f"blob {self.shown(name)} (digest 0x{digest.hex()}) missing")
        return Fetcher(allowed=[self.local], max_bytes=self.max_bytes, reference=self.reference).fetch(target, digest)


def _changed_blobs(report: AuditReport) -> None:
    """A rejected blob that does not verify now, though voters of the run scored it then: changed since
    (an accepted one is a finding already)."""
    for r, st in sorted(report.replayed.items()):
        for j, problem in sorted(st.get("unverified", {}).items()):
            if j in st["accepted_slots"]:
                continue
            at = 0 if st["average"] else j
            scored = [v for v, ppm in st["scores"].items() if len(ppm) > at and ppm[at] != NO_SCORE_PPM
                      and v != st["proposers"][j]]
            if scored:
                where = f"round {r + 1}" + (f" slot {j}" if len(st["proposers"]) > 1 else "")
                report.findings.append(f"{where}: the proposal does not verify now ({problem}), but member(s) "
                                       f"{', '.join(map(str, sorted(scored)))} scored it in the run: changed since")


#: findings about records.csv listed one by one before the rest are counted
_RECORD_FINDINGS = 20


def _check_records(run_dir: Path, report: AuditReport, manifest: dict | None = None) -> None:
    """The run's own records must agree with the chain: each round's outcome and proposer, each
    member's adopted weights, and each voter's vote and score (its ballot's approval bits and ppm
    scores). A row's score over several slots is their mean; where it is a screened average's
    (``vote.judge = "screened_average"``) it is the score the voter's ballot gives its own slot (which it
    cannot approve; see :mod:`cohep.protocol.ballot`); a voter that holds no slot has nowhere to put it,
    so its row's score is not checked (a note says so)."""
    from cohep.outputs import rundir
    from cohep.protocol.vote import to_ppm

    vote = ((manifest or {}).get("config") or {}).get("vote") or {}
    screened = vote.get("judge") == "screened_average"
    adopted: dict[int, str | None] = {}
    current = None  # before the first acceptance: the initial weights, checked against the manifest
    for r in range(max(report.replayed, default=-1) + 1):  # the weights every member holds after round r
        st = report.replayed.get(r)
        if st is not None and st["accepted"]:
            current = st.get("adopted")
        adopted[r + 1] = current
    found: list[str] = []
    unchecked = 0
    for row_number, rec in enumerate(rundir.read_records(run_dir), 2):  # line 1 is the header
        st = report.replayed.get(rec.round - 1)
        if rec.round == 0 or st is None:
            continue
        where = f"records.csv line {row_number} (round {rec.round}, learner {rec.learner})"
        if rec.accepted != st["accepted"] or rec.void != (not st["slots"]) or rec.proposer != st["proposer"]:
            found.append(f"{where}: outcome or proposer differs from the chain")
            continue
        expected = adopted.get(rec.round)
        if rec.adopted and expected is not None and rec.adopted != expected:
            found.append(f"{where}: adopted {rec.adopted[:16]}, the accepted blobs give {expected[:16]}")
        bits, ppm = st["ballots"].get(rec.learner), st["scores"].get(rec.learner, [])
        several = len(st["proposers"]) > 1 and not st["average"]
        if bits is None:
            chain_vote = ""
        elif several:
            chain_vote = "/".join("-" if p == rec.learner or j not in st["slots"] else
                                  ("approve" if bits >> j & 1 else "reject") for j, p in enumerate(st["proposers"]))
        else:
            chain_vote = "approve" if bits & 1 else "reject"
        if rec.vote != chain_vote:
            found.append(f"{where}: field vote is {rec.vote!r}, the chain's ballot says {chain_vote!r}")
            continue
        if bits is None:
            continue
        if several:
            judged = [ppm[j] for j, v in enumerate(chain_vote.split("/")) if v != "-" and j < len(ppm)
                      and ppm[j] != NO_SCORE_PPM]
            if screened:  # the screened average's score: the voter's own slot carries it
                own = [j for j, p in enumerate(st["proposers"]) if p == rec.learner and j < len(ppm)]
                if not own:
                    unchecked += 1 if ppm else 0
                    continue
                on_chain = ppm[own[0]]
            elif not judged:
                continue
            else:
                on_chain = sum(judged) / len(judged)
        else:
            if not ppm:
                continue
            on_chain = ppm[0]
        mine = to_ppm(rec.vote_score)
        if abs(mine - on_chain) > 1.5:
            shown = "nan" if on_chain == NO_SCORE_PPM else f"{on_chain / 1e6:.6f}"
            found.append(f"{where}: field vote_score is {rec.vote_score!r}, the chain's ballot says {shown}")
    report.findings += found[:_RECORD_FINDINGS]
    if len(found) > _RECORD_FINDINGS:
        report.findings.append(f"records.csv: {len(found) - _RECORD_FINDINGS} more rows differ from the chain")
    if unchecked:
        report.notes.append(f"records.csv: {unchecked} votes' scores are their screened average's, cast by voters "
                            "without a slot of their own to carry it: their votes are checked, their scores not")


def audit_chain(experiment_path: str | Path, rpc: str, mirrors: list[str] | None = None) -> AuditReport:
    """Audit a live (or finished) experiment on its chain, fetching blobs from the allowed stores
    (and, for blobs no longer served there, from ``mirrors``: copies of members' stores)."""
    from cohep.run.experiment_file import Experiment
    from cohep.ledger import Chain, Coordinator
    from cohep.wire.fetch import Fetcher

    exp = Experiment.read(experiment_path)
    chain = Chain.connect(rpc, 0)
    coord = Coordinator.at(chain, exp.contract)
    rules = ContractRules.of(coord.settings())
    report = replay(coord.events(), rules)
    # blobs are content-addressed and every node keeps what it verified: each blob is read from its
    # URI, else from any member's store or mirror holding a copy that verifies (one honest store will do)
    stores = exp.allowed_stores() + list(mirrors or ())
    probe = Fetcher(allowed=stores, max_bytes=exp.max_bytes)
    reference = probe.fetch_any(exp.initial_uri, bytes.fromhex(exp.initial_digest))
    verify_blobs(report, Fetcher(allowed=stores, max_bytes=exp.max_bytes, reference=reference).fetch_any,
                 _mirrors(mirrors, exp.max_bytes, reference), initial=reference, **exp.config.round.policy())
    on_chain = coord.accepted_digest().hex()
    if on_chain != report.final_digest:
        report.findings.append(f"the contract holds {on_chain[:16]}, the replay ends at {report.final_digest[:16]}")
    member_findings(report, rules, [m.store for m in exp.members], exp.shared_store, store_answer)
    return report
