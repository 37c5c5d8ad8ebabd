"""Data-set quality of each member, read from what a run already recorded (no retraining).

A member's private data shows twice in the protocol: in its proposals (trained on its train set,
judged by everyone else) and in its votes (its vote set judging others' proposals). So the measures
are, per learner:

* ``acceptance``: accepted / proposals, with a Wilson 95 % interval (few proposals per learner);
* ``gain``: over its accepted proposals, the mean over the other learners of the oriented
  ``vote_score - current_vote_score`` (what its accepted work brought to the others);
* ``delta``: the same difference over *all* its proposals, accepted or not (how good its
  proposals looked on the others' vote sets; rejected ones count too, so a member that is never
  accepted still gets a value);
* ``agreement``: share of its votes that matched the round's outcome (Wilson interval);
* ``offset``: mean over the rounds it voted of its own oriented vote score minus the mean of the
  other voters' scores of the same proposal: a member whose vote set is off (wrong labels, another
  detector) scores the same weights differently from everyone else.

Scores are oriented so that higher is better (for ``vote.metric = loss`` the sign is flipped). The
``rank`` puts the worst first by the mean of the learners' standardised ``delta`` and ``offset``
(see docs/quality.md for why those two and not agreement). ``chain_quality`` derives what the chain
alone shows (proposals, acceptance, agreement, the voters' announced ``score_ppm``).

A round of several proposers (``round.proposers`` = k > 1, the default protocol) is counted slot by
slot: each proposed slot is one proposal of its holder, each voter's verdict on a slot it judged is
one vote. Its records hold one row per member with the judged slots' mean score, so such a run is
read from its chain events (:func:`from_events`), the records adding each voter's current score.

A run of a few rounds gives each member one or two proposals: a rank always comes out, but the data
may not support it. :func:`ranking_doubt` says why not (too few proposals, or the worst learner's
intervals overlapping the next one's on every combined measure), and every output carries it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cohep.core.errors import DataError
from cohep.core.intervals import wilson
from cohep.protocol.records import RoundRecord
from cohep.protocol.vote import to_ppm

#: measures in the table, in order; ``combined`` ranks
MEASURES = ("acceptance", "gain", "delta", "agreement", "offset", "combined")
#: the measures the combined rank averages: neither can be bought by copying public ballots
COMBINED = ("delta", "offset")
#: fewer proposals than this for some learner: no ranking is claimed
MIN_PROPOSALS = 3


def _mean_ci(values: list[float]) -> tuple[float, float, float]:
    """Mean and a normal 95 % interval (NaN width for fewer than two values)."""
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if len(v) < 2:
        return m, math.nan, math.nan
    half = 1.959964 * float(v.std(ddof=1)) / math.sqrt(len(v))
    return m, m - half, m + half


@dataclass
class LearnerQuality:
    """One learner's measures; ``*_lo`` / ``*_hi`` are 95 % intervals (NaN where undefined)."""

    learner: int
    proposals: int = 0
    accepted: int = 0
    acceptance: float = math.nan
    acceptance_lo: float = math.nan
    acceptance_hi: float = math.nan
    gain: float = math.nan
    gain_lo: float = math.nan
    gain_hi: float = math.nan
    delta: float = math.nan
    delta_lo: float = math.nan
    delta_hi: float = math.nan
    votes: int = 0
    agreed: int = 0
    agreement: float = math.nan
    agreement_lo: float = math.nan
    agreement_hi: float = math.nan
    offset: float = math.nan
    offset_lo: float = math.nan
    offset_hi: float = math.nan
    combined: float = math.nan  #: mean standardised delta and offset; lower is worse
    rank: int = 0  #: 1 = worst


@dataclass
class QualityReport:
    """Per-learner measures, ranked worst first, with where they came from."""

    learners: list[LearnerQuality]
    source: str
    rounds: int
    metric: str = "accuracy"
    notes: list[str] = field(default_factory=list)

    def ranked(self) -> list[LearnerQuality]:
        return sorted(self.learners, key=lambda q: q.rank)

    def sample(self) -> dict[str, list[int]]:
        """Proposals judged and votes cast per learner, by learner index."""
        qs = sorted(self.learners, key=lambda q: q.learner)
        return {"proposals": [q.proposals for q in qs], "votes": [q.votes for q in qs]}

    def doubt(self) -> str | None:
        """Why the worst-first ranking is not supported by the data (None: it is)."""
        return ranking_doubt(self.ranked())

    def verdict(self) -> str:
        """One line: the worst learner, or that the data cannot name one, and why."""
        doubt = self.doubt()
        if doubt:
            return f"ranking not supported by the data: {doubt}; the order below is indicative only"
        return f"worst learner {self.ranked()[0].learner}: separated from the next on at least one of {', '.join(COMBINED)}"

    def worst(self, measure: str = "combined") -> int:
        """The learner a single measure ranks last (lowest value; NaN counts as unknown, not worst)."""
        vals = [(getattr(q, measure), q.learner) for q in self.learners]
        finite = [v for v in vals if math.isfinite(v[0])]
        if not finite:
            return -1
        return min(finite)[1]

    def to_dict(self) -> dict:
        def clean(x):
            return None if isinstance(x, float) and not math.isfinite(x) else x

        doubt = self.doubt()
        return {"source": self.source, "rounds": self.rounds, "metric": self.metric, "notes": self.notes,
                "combined_of": list(COMBINED), "sample": self.sample(),
                "ranking_supported": doubt is None, "ranking_doubt": doubt,
                "learners": [{k: clean(v) for k, v in asdict(q).items()} for q in self.ranked()]}

    def text(self) -> str:
        def f(x, d=3):
            return "-" if not math.isfinite(x) else f"{x:+.{d}f}" if d else f"{x:.0f}"

        def iv(p, lo, hi):
            return "-" if not math.isfinite(p) else f"{p:.2f} [{lo:.2f},{hi:.2f}]"

        head = (f"{'rank':>4} {'learner':>7} {'props':>5} {'acceptance [95%]':>18} {'gain':>7} {'delta':>7} "
                f"{'votes':>5} {'agreement [95%]':>18} {'offset':>7} {'combined':>8}")
        sample = self.sample()
        lines = [f"{self.source}: {self.rounds} rounds, vote metric {self.metric} (higher is better; worst first)",
                 f"sample size: {_span(sample['proposals'])} proposal(s) and {_span(sample['votes'])} vote(s) per learner",
                 self.verdict(), head]
        for q in self.ranked():
            lines.append(f"{q.rank:>4} {q.learner:>7} {q.proposals:>5} "
                         f"{iv(q.acceptance, q.acceptance_lo, q.acceptance_hi):>18} {f(q.gain):>7} {f(q.delta):>7} "
                         f"{q.votes:>5} {iv(q.agreement, q.agreement_lo, q.agreement_hi):>18} {f(q.offset):>7} "
                         f"{f(q.combined, 2):>8}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _span(counts: list[int]) -> str:
    """``3`` when every learner has 3, ``1-4`` otherwise."""
    if not counts:
        return "0"
    lo, hi = min(counts), max(counts)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def ranking_doubt(ranked: list[LearnerQuality], *, min_proposals: int = MIN_PROPOSALS) -> str | None:
    """Why naming ``ranked[0]`` the worst is not supported, or None.

    Supported only when every learner was judged on at least ``min_proposals`` proposals and, on at
    least one of the combined measures, the worst learner's 95 % interval lies wholly below the next
    one's (an interval needs two values; one proposal has none).
    """
    if len(ranked) < 2:
        return "fewer than two learners to compare"
    if not math.isfinite(ranked[0].combined):
        return "no learner has a combined score"
    few = min(q.proposals for q in ranked)
    if few < min_proposals:
        return f"a learner has only {few} proposal(s) (fewer than {min_proposals})"
    worst, nxt = ranked[0], ranked[1]
    for m in COMBINED:
        w_hi, n_lo = getattr(worst, m + "_hi"), getattr(nxt, m + "_lo")
        if math.isfinite(w_hi) and math.isfinite(n_lo) and w_hi < n_lo:
            return None
    return (f"the intervals of learner {worst.learner} (worst) and learner {nxt.learner} (next) overlap "
            f"or are undefined on every one of {', '.join(COMBINED)}")


def _rank(learners: list[LearnerQuality]) -> None:
    """combined = mean over COMBINED of the learner's z-score among learners; rank 1 = lowest."""
    zs = []
    for m in COMBINED:
        v = np.array([getattr(q, m) for q in learners], dtype=float)
        ok = np.isfinite(v)
        z = np.full(len(v), np.nan)
        if ok.sum() >= 2:
            sd = v[ok].std()
            z[ok] = (v[ok] - v[ok].mean()) / sd if sd > 0 else 0.0
        zs.append(z)
    zs = np.array(zs)
    for i, q in enumerate(learners):
        col = zs[:, i][np.isfinite(zs[:, i])]
        q.combined = float(col.mean()) if len(col) else math.nan
    order = sorted(learners, key=lambda q: (q.combined if math.isfinite(q.combined) else math.inf, q.learner))
    for k, q in enumerate(order, 1):
        q.rank = k


def from_records(records: list[RoundRecord], *, metric: str = "accuracy", source: str = "records") -> QualityReport:
    """The measures from a run's records (one row per round and learner; round 0 is the start)."""
    sign = -1.0 if metric == "loss" else 1.0
    rows = [r for r in records if r.round > 0]
    if not records:
        raise DataError(f"{source}: no records")
    n = max(r.learner for r in records) + 1
    by_round: dict[int, list[RoundRecord]] = {}
    for r in rows:
        by_round.setdefault(r.round, []).append(r)
    if not one_proposer(records):
        raise DataError(f"{source}: rounds of several proposers: their per-slot outcomes and scores are in the "
                        "chain events, not the records (read the run directory, or the chain)")
    props = [[0, 0] for _ in range(n)]
    gains: list[list[float]] = [[] for _ in range(n)]
    deltas: list[list[float]] = [[] for _ in range(n)]
    votes = [[0, 0] for _ in range(n)]
    offsets: list[list[float]] = [[] for _ in range(n)]
    void = 0
    for rs in by_round.values():
        if any(r.void for r in rs):
            void += 1
            continue
        p = rs[0].proposer
        accepted = rs[0].accepted
        props[p][0] += 1
        props[p][1] += accepted
        judged = [r for r in rs if not r.is_proposer and r.vote and math.isfinite(r.vote_score)
                  and math.isfinite(r.current_vote_score)]
        if judged:
            d = float(np.mean([sign * (r.vote_score - r.current_vote_score) for r in judged]))
            deltas[p].append(d)
            if accepted:
                gains[p].append(d)
        for r in rs:
            if r.is_proposer or not r.vote:
                continue
            votes[r.learner][0] += 1
            votes[r.learner][1] += (r.vote == "approve") == accepted
        scored = [r for r in rs if not r.is_proposer and math.isfinite(r.vote_score)]
        if len(scored) >= 2:
            total = sum(r.vote_score for r in scored)
            for r in scored:
                others = (total - r.vote_score) / (len(scored) - 1)
                offsets[r.learner].append(sign * (r.vote_score - others))
    out = []
    for i in range(n):
        q = LearnerQuality(i, proposals=props[i][0], accepted=props[i][1], votes=votes[i][0], agreed=votes[i][1])
        q.acceptance, q.acceptance_lo, q.acceptance_hi = wilson(props[i][1], props[i][0])
        q.gain, q.gain_lo, q.gain_hi = _mean_ci(gains[i])
        q.delta, q.delta_lo, q.delta_hi = _mean_ci(deltas[i])
        q.agreement, q.agreement_lo, q.agreement_hi = wilson(votes[i][1], votes[i][0])
        q.offset, q.offset_lo, q.offset_hi = _mean_ci(offsets[i])
        out.append(q)
    _rank(out)
    notes = [f"{void} void round(s) left out"] if void else []
    return QualityReport(out, source, len(by_round), metric, notes)


def one_proposer(records: list[RoundRecord]) -> bool:
    """Every round had one proposer (the paper's round): one row of each round marks its proposal, and
    no vote is a per-slot verdict list (``approve/-/reject``)."""
    count: dict[int, int] = {}
    for r in records:
        if r.round > 0 and r.is_proposer:
            count[r.round] = count.get(r.round, 0) + 1
    return all(c <= 1 for c in count.values()) and not any("/" in r.vote for r in records)


def from_run(run_dir: str | Path) -> QualityReport:
    """The measures of a finished run directory: from its records and the vote metric in its manifest;
    rounds of several proposers from its chain events, with the records' current scores."""
    from cohep.outputs import rundir

    manifest = rundir.read_manifest(run_dir)
    if manifest.get("mode", "colearn") != "colearn":
        raise DataError(f"{run_dir}: the run's mode is {manifest.get('mode')}; it has no proposals judged by others")
    metric = ((manifest.get("config") or {}).get("vote") or {}).get("metric", "accuracy")
    records = rundir.read_records(run_dir)
    if one_proposer(records):
        return from_records(records, metric=metric, source=str(run_dir))
    members = (manifest.get("contract_settings") or {}).get("members")
    if not isinstance(members, list) or not members:
        raise DataError(f"{run_dir}: the manifest names no contract_settings.members (needed to read its chain events)")
    current = {(r.round - 1, r.learner): r.current_vote_score for r in records if r.round > 0}
    return from_events(rundir.read_events(run_dir), [str(m) for m in members], metric=metric,
                       source=str(run_dir), current=current)


def from_events(events: list, members: list[str], *, metric: str = "accuracy", source: str = "chain",
                current: dict[tuple[int, int], float] | None = None) -> QualityReport:
    """What the chain shows, slot by slot: proposals, acceptance, agreement, and the announced scores.

    Each proposed slot is one proposal of its holder, accepted iff its bit is in ``accepted_slots``;
    each voter's verdict on a proposed slot not its own is one vote, agreeing iff its approval bit is
    the slot's outcome, and its score on that slot minus the other voters' mean is one ``offset``.
    With ``combine = "average"`` (one verdict per round) every proposed slot shares the round's outcome
    and a ballot is one vote on the average. The chain has no "current score" per voter, so ``gain``
    and ``delta`` need ``current`` ((contract round, learner) -> the voter's current vote score, from
    a run's records); without it they stay empty. ``events`` are dicts or ``ChainEvent`` (name, args).
    """
    sign = -1.0 if metric == "loss" else 1.0
    index = {m.lower(): i for i, m in enumerate(members)}
    n = len(members)
    props = [[0, 0] for _ in range(n)]
    gains: list[list[float]] = [[] for _ in range(n)]
    deltas: list[list[float]] = [[] for _ in range(n)]
    votes = [[0, 0] for _ in range(n)]
    offsets: list[list[float]] = [[] for _ in range(n)]
    ballots: dict[int, dict[int, tuple[int, list[float]]]] = {}
    holders: dict[int, dict[int, int]] = {}  # round -> slot -> member
    rounds, void = set(), 0

    def who(addr) -> int:
        i = index.get(str(addr).lower())
        if i is None:
            raise DataError(f"{source}: event from {addr}, not a member")
        return i

    for e in events:
        name, args = (e["name"], e["args"]) if isinstance(e, dict) else (e.name, e.args)
        r = int(args.get("round", -1))
        if name == "RoundStarted" and args.get("proposers"):
            holders[r] = {j: who(a) for j, a in enumerate(args["proposers"])}
        elif name == "Proposed":
            holders.setdefault(r, {})[int(args.get("slot", 0))] = who(args["proposer"])
        elif name == "Voted":
            ballots.setdefault(r, {})[who(args["voter"])] = _ballot(args)
        elif name == "Finalized":
            rounds.add(r)
            slots = holders.get(r) or {0: who(args["proposer"])}
            proposed, accepted = _slot_masks(args)
            average = len(slots) > 1 and len(args.get("approvals") or ()) == 1
            bs = ballots.get(r, {})
            for j, p in sorted(slots.items()):
                if proposed >> j & 1:
                    props[p][0] += 1
                    props[p][1] += accepted >> j & 1
            judged = [(0, -1)] if average else [(j, p) for j, p in sorted(slots.items()) if proposed >> j & 1]
            for j, p in judged:
                outcome = bool(accepted) if average else bool(accepted >> j & 1)
                voters = {v: b for v, b in bs.items() if v != p}
                for v, (approvals, _) in voters.items():
                    votes[v][0] += 1
                    votes[v][1] += bool(approvals >> j & 1) == outcome
                scored = {v: sc[j] for v, (_, sc) in voters.items() if j < len(sc) and math.isfinite(sc[j])}
                if len(scored) >= 2:
                    total = sum(scored.values())
                    for v, s in scored.items():
                        offsets[v].append(sign * (s - (total - s) / (len(scored) - 1)))
                if current is None or average:
                    continue
                moved = [sign * (s - current[(r, v)]) for v, s in scored.items() if math.isfinite(current.get((r, v), math.nan))]
                if moved:
                    deltas[p].append(float(np.mean(moved)))
                    if outcome:
                        gains[p].append(deltas[p][-1])
        elif name == "RoundVoided":
            rounds.add(r)
            void += 1
    out = []
    for i in range(n):
        q = LearnerQuality(i, proposals=props[i][0], accepted=props[i][1], votes=votes[i][0], agreed=votes[i][1])
        q.acceptance, q.acceptance_lo, q.acceptance_hi = wilson(props[i][1], props[i][0])
        q.gain, q.gain_lo, q.gain_hi = _mean_ci(gains[i])
        q.delta, q.delta_lo, q.delta_hi = _mean_ci(deltas[i])
        q.agreement, q.agreement_lo, q.agreement_hi = wilson(votes[i][1], votes[i][0])
        q.offset, q.offset_lo, q.offset_hi = _mean_ci(offsets[i])
        out.append(q)
    _rank(out)
    notes = [f"{void} void round(s) left out"] if void else []
    notes.append("from chain events, slot by slot" + (
        ": gain and delta from the voters' announced slot scores against their recorded current scores"
        if current is not None else ": gain and delta need the voters' current scores (records)"))
    return QualityReport(out, source, len(rounds), metric, notes)


def from_chain(experiment_path: str | Path, rpc: str) -> QualityReport:
    """The live-chain variant: a deployed experiment's events, read from its contract."""
    from cohep.run.experiment_file import Experiment
    from cohep.ledger import Chain, Coordinator

    exp = Experiment.read(experiment_path)
    coord = Coordinator.at(Chain.connect(rpc, 0), exp.contract)
    members = list(coord.settings().members)
    return from_events(coord.events(), members, metric=exp.config.vote.metric, source=f"{exp.name} on {rpc}")


def plot(report: QualityReport, path: str | Path) -> Path:
    """Per-learner bars with 95 % intervals, one panel per measure (the worst learner in red only where
    the data supports naming one; the title says the sample size and, otherwise, why not)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("acceptance", "acceptance rate"), ("delta", "score change of its proposals (others)"),
              ("agreement", "vote agreement with outcome"), ("offset", "own score - other voters'")]
    qs = sorted(report.learners, key=lambda q: q.learner)
    doubt = report.doubt()
    worst = report.ranked()[0].learner if qs and doubt is None else -1
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6))
    for ax, (m, title) in zip(axes, panels):
        x = np.arange(len(qs))
        v = np.array([getattr(q, m) for q in qs], dtype=float)
        lo = np.array([getattr(q, m + "_lo") for q in qs], dtype=float)
        hi = np.array([getattr(q, m + "_hi") for q in qs], dtype=float)
        err = np.vstack([np.where(np.isfinite(lo), v - lo, 0), np.where(np.isfinite(hi), hi - v, 0)])
        err = np.clip(np.nan_to_num(err), 0, None)  # Wilson bounds at 0 or 1 meet p up to rounding
        colors = ["tab:red" if q.learner == worst else "tab:blue" for q in qs]
        ax.bar(x, np.nan_to_num(v), yerr=np.nan_to_num(err), color=colors, capsize=3)
        ax.set_xticks(x, [str(q.learner) for q in qs])
        ax.set_xlabel("learner")
        ax.set_title(title, fontsize=9)
        ax.axhline(0, color="k", lw=0.5)
    sample = report.sample()
    size = f"{_span(sample['proposals'])} proposal(s), {_span(sample['votes'])} vote(s) per learner"
    claim = f"worst learner {worst} (combined rank)" if doubt is None else f"no supported worst learner: {doubt}"
    fig.suptitle(f"{Path(str(report.source)).name}: {claim}\n{size}", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# -- contribution by re-training (research mode) ---------------------------------------------------


def timed(fn, coalition: tuple[int, ...]) -> tuple[float, float]:
    """``fn(coalition)`` and the seconds it took: one task (a training, on whichever worker runs it)."""
    import time

    t0 = time.perf_counter()
    value = float(fn(frozenset(coalition)))
    return value, time.perf_counter() - t0


class Utility:
    """A coalition's value, cached, counting the distinct evaluations and their seconds (the cost).

    With an ``executor`` (:mod:`cohep.core.executor`) every evaluation is a task there, and
    :meth:`prefetch` sends the coalitions a method will need all at once (``fn`` must then pickle:
    a module-level function or an object such as :class:`RetrainTask`). Values do not depend on the
    executor: each coalition's training is seeded on its own, and results come back in order."""

    def __init__(self, fn, n: int, *, executor=None):
        self.fn, self.n = fn, n
        self.executor = executor
        self.cache: dict[frozenset, float] = {}
        self.calls = 0  #: distinct non-empty coalitions evaluated (trainings, for a retraining utility)
        self.seconds = 0.0  #: summed over the evaluations (CPU time across workers when they run in parallel)

    def _store(self, key: frozenset, value: float, seconds: float) -> None:
        self.cache[key] = value
        self.seconds += seconds
        self.calls += bool(key)

    def prefetch(self, coalitions) -> None:
        """Evaluate the coalitions not yet known, in parallel on the executor (without one: nothing)."""
        if self.executor is None:
            return
        todo = list(dict.fromkeys(frozenset(c) for c in coalitions if frozenset(c) not in self.cache))
        tasks = [(self.fn, tuple(sorted(k))) for k in todo]
        for key, (value, seconds) in zip(todo, self.executor.map(timed, tasks)):
            self._store(key, value, seconds)

    def __call__(self, coalition) -> float:
        key = frozenset(coalition)
        if key not in self.cache:
            if self.executor is None:
                value, seconds = timed(self.fn, tuple(sorted(key)))
            else:
                value, seconds = next(iter(self.executor.map(timed, [(self.fn, tuple(sorted(key)))])))
            self._store(key, value, seconds)
        return self.cache[key]


def needed(method: str, n: int, *, permutations: int = 0, seed: int = 0, tolerance: float = 0.0) -> list[frozenset]:
    """The coalitions a method evaluates, known before it runs (for :meth:`Utility.prefetch`); a
    truncated Monte-Carlo run learns its own as it goes, so only the grand coalition is known."""
    from itertools import combinations

    everyone = frozenset(range(n))
    if method == "leave_one_out":
        return [everyone] + [everyone - {i} for i in range(n)]
    if method == "shapley_exact":
        return [frozenset(s) for size in range(n + 1) for s in combinations(range(n), size)]
    if tolerance > 0:
        return [everyone, frozenset()]
    rng = np.random.default_rng(seed)  # the permutations shapley_monte_carlo draws, in its order
    out = [frozenset()]
    for _ in range(permutations):
        order = [int(i) for i in rng.permutation(n)]
        out += [frozenset(order[:k]) for k in range(1, n + 1)]
    return out


def shapley_exact(u, n: int) -> list[float]:
    """Exact Shapley values: the weighted mean marginal value over every coalition (2^n utilities)."""
    from itertools import combinations

    fact = [math.factorial(k) for k in range(n + 1)]
    out = []
    for i in range(n):
        rest = [j for j in range(n) if j != i]
        total = 0.0
        for size in range(n):
            w = fact[size] * fact[n - size - 1] / fact[n]
            for s in combinations(rest, size):
                total += w * (u(set(s) | {i}) - u(set(s)))
        out.append(total)
    return out


def shapley_monte_carlo(u, n: int, permutations: int, *, seed: int = 0, tolerance: float = 0.0) -> list[float]:
    """Permutation-sampling Shapley; with ``tolerance`` > 0, a permutation stops once its prefix is within
    ``tolerance`` of the grand coalition's value (truncation: later marginals count as 0)."""
    rng = np.random.default_rng(seed)
    full = u(range(n)) if tolerance > 0 else math.nan
    total = np.zeros(n)
    for _ in range(permutations):
        prefix: set[int] = set()
        before = u(prefix)
        for i in rng.permutation(n):
            if tolerance > 0 and abs(full - before) < tolerance:
                break
            prefix.add(int(i))
            after = u(prefix)
            total[i] += after - before
            before = after
    return list(total / max(permutations, 1))


def leave_one_out(u, n: int) -> list[float]:
    """u(all) - u(all but i): n + 1 utilities, blind to redundancy between members."""
    full = u(range(n))
    return [full - u(set(range(n)) - {i}) for i in range(n)]


@dataclass
class Contributions:
    """Per-learner values by method, and what each method cost (trainings, seconds)."""

    values: dict[str, list[float]]
    cost: dict[str, dict[str, float]]
    utility: str

    def to_dict(self) -> dict:
        return {"values": self.values, "cost": self.cost, "utility": self.utility}

    def text(self) -> str:
        n = len(next(iter(self.values.values())))
        lines = [f"contributions ({self.utility})", f"{'method':>14} " + " ".join(f"{f'L{i}':>8}" for i in range(n))
                 + f" {'trainings':>9} {'seconds':>8}"]
        for m, v in self.values.items():
            c = self.cost[m]
            lines.append(f"{m:>14} " + " ".join(f"{x:+8.4f}" for x in v) + f" {c['trainings']:>9.0f} {c['seconds']:>8.1f}")
        return "\n".join(lines)


def contributions(fn, n: int, *, permutations: int | None = None, seed: int = 0, tolerance: float = 0.0,
                  utility: str = "utility", executor=None) -> Contributions:
    """Leave-one-out, and Shapley: exact up to 5 learners (or when ``permutations`` is None and n <= 5),
    else Monte-Carlo with ``permutations`` (default 10 n). Each method counts its own cost (fresh cache).
    ``executor``: each method's coalitions are trained there as parallel tasks (same values)."""
    values, cost = {}, {}
    k = permutations or 10 * n
    runs = [("leave_one_out", "leave_one_out", lambda u: leave_one_out(u, n))]
    if permutations is None and n <= 5:
        runs.append(("shapley_exact", "shapley_exact", lambda u: shapley_exact(u, n)))
    else:
        runs.append((f"shapley_mc{k}", "shapley_mc",
                     lambda u: shapley_monte_carlo(u, n, k, seed=seed, tolerance=tolerance)))
    for name, kind, method in runs:
        u = Utility(fn, n, executor=executor)
        u.prefetch(needed(kind, n, permutations=k, seed=seed, tolerance=tolerance))
        values[name] = [float(x) for x in method(u)]
        cost[name] = {"trainings": u.calls, "seconds": u.seconds}
    return Contributions(values, cost, utility)


def retraining_utility(cfg, data, parts, spec):
    """u(S): test accuracy on the whole held-out set of a model trained from the initial weights on the
    pooled train sets of coalition S, with the run's [train] budget (one proposal's worth); u({}) is the
    initial weights' accuracy. One seed for every coalition, so differences come from the data."""
    from cohep import models
    from cohep.run.tasks import learner_seed

    test = data.subset(np.sort(np.concatenate([p.test for p in parts])))
    initial = models.initial_weights(spec, cfg.experiment.seed)

    def u(coalition: frozenset) -> float:
        members = sorted(coalition) or list(range(len(parts)))
        train = np.sort(np.concatenate([parts[i].train for i in members]))
        vote = np.sort(np.concatenate([parts[i].vote for i in members]))
        lr = models.build_learner(spec, data.subset(train), data.subset(vote), test, cfg.train,
                                  seed=learner_seed(cfg.experiment.seed, 0), initial=initial)
        weights = lr.propose() if coalition else initial
        return lr.evaluate(weights).test.accuracy

    return u


class RetrainTask:
    """u(S) of a run's configuration, as an object that pickles to the configuration alone: a worker
    (this process, or a Dask worker) prepares the data once and keeps it for the next coalitions."""

    _prepared: dict[str, tuple] = {}  #: per process: configuration JSON -> (cfg, utility)

    def __init__(self, config: dict) -> None:
        self.config = config

    def _utility(self):
        import json

        from cohep.config import experiment as config
        from cohep.run.tasks import prepare

        key = json.dumps(self.config, sort_keys=True, default=str)
        if key not in RetrainTask._prepared:
            RetrainTask._prepared.clear()  # one run at a time per worker
            cfg, data, parts, spec = prepare(config.from_dict(self.config))
            RetrainTask._prepared[key] = (cfg, parts, retraining_utility(cfg, data, parts, spec))
        return RetrainTask._prepared[key]

    def __call__(self, coalition: frozenset) -> float:
        return self._utility()[2](coalition)


def contributions_of_run(run_dir: str | Path, *, permutations: int | None = None, tolerance: float = 0.0,
                         executor=None) -> Contributions:
    """Re-train coalitions of a finished run's learners on the data its manifest config names;
    ``executor`` (:mod:`cohep.core.executor`, e.g. Dask) runs the trainings as parallel tasks."""
    from cohep.outputs import rundir

    manifest = rundir.read_manifest(run_dir)
    if not isinstance(manifest.get("config"), dict):
        raise DataError(f"{run_dir}: the manifest records no config")
    task = RetrainTask(manifest["config"])
    cfg, parts, _ = task._utility()
    if not len(parts[0].test):
        raise DataError(f"{run_dir}: the run held out no test items (data.holdout = 0), nothing to score coalitions on")
    return contributions(task, len(parts), permutations=permutations, seed=cfg.experiment.seed, tolerance=tolerance,
                         utility=f"held-out accuracy after {cfg.train.epochs:g} epoch(s) on the coalition's data",
                         executor=executor)


def _ballot(args) -> tuple[int, list[float]]:
    """A Voted event's approval bitmap and its score per slot (NaN: not known: the contract's stand-in
    for a non-finite score). v2 logs carry one approve / score_ppm, v3 a bitmap and one score per slot
    (the voter's own slot: 0; combine "average": one, the average's)."""
    if "approvals" in args:
        return int(args["approvals"]), [_score(x) for x in args["scores_ppm"]]
    return int(bool(args["approve"])), [_score(args["score_ppm"])]


def _score(ppm) -> float:
    """A ppm score as a number; the clamp value (what a failed check or a non-finite score becomes) is NaN."""
    x = int(ppm)
    return math.nan if abs(x) >= to_ppm(math.inf) else x / 1e6


def _slot_masks(args) -> tuple[int, int]:
    """A Finalized event's proposed and accepted slot bitmaps (v2 logs: one slot, its verdict)."""
    if "proposed_slots" in args:
        return int(args["proposed_slots"]), int(args["accepted_slots"])
    return 1, int(bool(args["accepted"]))
