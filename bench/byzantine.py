"""Does the vote stop Byzantine members? Every attack of ``cohep.research.attacks`` in real colearn runs.

Setups: 5 learners with 1 malicious (``5/1``) and 6 with 2 (``6/2``, a third). For each attack and
seed, one run; the same seed's clean run (nobody malicious) is the reference. Per attack: the share
of the malicious members' proposals the contract accepted, the share of the honest members'
proposals accepted, the final test accuracy against the clean run, and for the backdoor the attack
success rate (non-target test images classified as the target once triggered). With ``--defence``
the same runs again with the patch-probe guard on (``vote.probe``, cohep.protocol.screens).

Default (MNIST t10k, first 2,000 images, the 6/2 setup, 12 rounds, 1 seed, the defence for the
clean run and the backdoor; about 6 minutes on 2 idle cores, several times that when they are shared):
``python bench/byzantine.py --data ../shared/data/mnist``.
Full size: ``--full`` (both setups, all 10,000 images, 15 rounds, 3 seeds, the defence for every attack), and
``--events data/events-12k.h5`` adds the neutrino task (compact model; ``--events-limit``).
The last line: ``gross attacks accepted: X % (...), accuracy drop: Y pts`` for the ``6/2`` setup.

Round shape (``[round]``, docs/protocol_variants.md): ``--proposers K --combine each|average``, the same
for the clean and the attacked runs. With ``--proposers 6 --combine each`` every member proposes every
round and each slot is voted on separately, so a malicious slot is dropped without voiding the round.
Acceptance is counted per slot from the contract's events (``Finalized``'s accepted slots). The doc
keeps one section per round shape (``--doc``), so a K = 1 run and a K = 6 run sit side by side.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("COHEP_PROGRESS", "0")
os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np

from cohep import models
from cohep.config import experiment as config
from cohep.config import research as catalogue
from cohep.frameworks.batches import as_tensors
from cohep.outputs import rundir
from cohep.research import attacks
from cohep.run.local import run_experiment
from cohep.run.tasks import prepare
from cohep.testing import bench
from cohep.wire import weights

HOME = bench.Home.of(__file__)

ALL = ("clean", *catalogue.ATTACKS)
#: attacks run with the defence in the default size (the full size runs them all)
DEFENCE_DEFAULT = ("clean", "backdoor")
SETUPS = {"5/1": (5, 1), "6/2": (6, 2)}
GROSS_LABEL = "sign-flip, noise, scaled, NaN, random"


@dataclass
class Task:
    name: str
    kind: str
    path: str
    limit: int | None
    rounds: int
    holdout: float | int
    backdoor: dict  #: the trigger (size, value) the attacker uses, in the task's units
    probe_size: int


@dataclass
class Outcome:
    task: str
    setup: str
    defence: bool
    attack: str
    seed: int
    mal_proposed: int
    mal_accepted: int
    hon_proposed: int
    hon_accepted: int
    accuracy: float
    asr: float
    seconds: float
    proposers: int = 1  #: slots per round ([round] proposers)
    combine: str = "each"  #: [round] combine
    training_s: float = math.nan  #: the run's training wall time, every member together (timings.csv)
    evaluation_s: float = math.nan  #: the same for scoring proposals and the adopted weights
    norm_bound: float | None = None  #: vote.norm_bound
    load: float = math.nan  #: the machine's 1-minute load average when the run ended
    peer_margin: float | None = None  #: vote.peer_margin
    metric: str | None = None  #: vote.metric (None: the default, accuracy)
    margin: float | None = None  #: vote.margin (None: the default, 0)
    weighting: str | None = None  #: [round] weighting (None: the default, equal)
    split: str | None = None  #: data.split (None: the default, IID)
    judge: str | None = None  #: vote.judge (None: the default, each slot alone)
    direction_floor: float | None = None  #: vote.direction_floor
    mal_rounds: list = field(default_factory=list)  #: the rounds in which a malicious slot was accepted
    direction_share: float | None = None  #: vote.direction_share
    strikes: int | None = None  #: vote.strikes


@dataclass(frozen=True)
class Shape:
    """The round shape every run of one invocation uses, clean and attacked alike."""

    proposers: int = 1
    combine: str = "each"
    norm_bound: float | None = None  #: vote.norm_bound (k >= 3)
    peer_margin: float | None = None  #: vote.peer_margin (k >= 3, each)
    metric: str | None = None  #: vote.metric (None: the default)
    margin: float | None = None  #: vote.margin (None: the default)
    weighting: str | None = None  #: [round] weighting (None: the default)
    split: str | None = None  #: data.split (None: the default; "dirichlet" uses alpha 0.5)
    judge: str | None = None  #: vote.judge (None: the default)
    direction_floor: float | None = None  #: vote.direction_floor (k >= 3)
    direction_share: float | None = None  #: vote.direction_share (with the floor)
    strikes: int | None = None  #: vote.strikes (with a negative floor)

    def slots(self, n: int) -> int:
        return min(self.proposers, n)

    def label(self) -> str:
        shape = "k = 1" if self.proposers == 1 else f"k = {self.proposers}, {self.combine}"
        return (shape + (f", norm bound {self.norm_bound:g}" if self.norm_bound is not None else "")
                + (f", peer margin {self.peer_margin:g}" if self.peer_margin is not None else "")
                + (f", vote on {self.metric}" if self.metric is not None else "")
                + (f", margin {self.margin:g}" if self.margin is not None else "")
                + (f", weighting {self.weighting}" if self.weighting is not None else "")
                + (f", {self.split} split" if self.split is not None else "")
                + (f", judge {self.judge}" if self.judge is not None else "")
                + (f", direction floor {self.direction_floor:g}" if self.direction_floor is not None else "")
                + (f", direction share {self.direction_share:g}" if self.direction_share is not None else "")
                + (f", strikes {self.strikes}" if self.strikes is not None else ""))

    def holds(self, o) -> bool:
        """``o`` (an Outcome) ran in this shape."""
        return (o.proposers == self.slots(SETUPS[o.setup][0]) and (o.proposers == 1 or o.combine == self.combine)
                and o.norm_bound == self.norm_bound and o.peer_margin == self.peer_margin
                and (o.metric, o.margin, o.weighting, o.split, o.judge, o.direction_floor, o.direction_share,
                     o.strikes)
                == (self.metric, self.margin, self.weighting, self.split, self.judge, self.direction_floor,
                    self.direction_share, self.strikes))


def base_config(task: Task, n: int, seed: int, attack: str, m: int, probe: float | None, epochs: float,
                shape: Shape = Shape()):
    raw = {
        "experiment": {"protocol": "paper", "name": f"byz-{task.name}", "learners": n, "rounds": task.rounds, "seed": seed},
        "data": {"kind": task.kind, "path": task.path, "limit": task.limit, "holdout": task.holdout,
                 "split": shape.split, "alpha": 0.5 if shape.split == "dirichlet" else None},
        "train": {"epochs": epochs, "batch_size": 32},
        # the neutrino figures in docs/ were measured with the compact model reading all three planes
        "model": {"name": "compact", "params": {"planes": "all"}} if task.kind == "events" else {},
        "vote": {"probe": probe, "probe_size": task.probe_size, "norm_bound": shape.norm_bound,
                 "peer_margin": shape.peer_margin, "metric": shape.metric, "margin": shape.margin,
                 "judge": shape.judge, "direction_floor": shape.direction_floor,
                 "direction_share": shape.direction_share, "strikes": shape.strikes},
        "round": {"proposers": shape.slots(n), "combine": shape.combine, "weighting": shape.weighting},
    }
    if attack != "clean":
        raw["attack"] = {"kind": attack, "members": m,
                         "params": dict(task.backdoor) if attack == "backdoor" else {}}
    return config.load(None, {k: {f: v for f, v in t.items() if v is not None} for k, t in raw.items()})


def proposals(events: list[dict], members: list[str], malicious: set[int]) -> tuple[int, int, int, int]:
    """(malicious proposed, accepted, honest proposed, accepted, the rounds of the accepted malicious
    slots), counted per slot from the contract's
    events: each round's slot holders (``RoundStarted``) and which slots were proposed and accepted
    (``Finalized``). Void rounds have no ``Finalized`` and count for nobody."""
    index = {m.lower(): i for i, m in enumerate(members)}
    holders: dict[int, list[str]] = {}
    rounds: list[int] = []
    mp = ma = hp = ha = 0
    for e in events:
        a = e["args"]
        if e["name"] == "RoundStarted":
            holders[int(a["round"])] = [str(p).lower() for p in a["proposers"]]
        elif e["name"] == "Finalized":
            proposed, accepted = int(a["proposed_slots"]), int(a["accepted_slots"])
            for j, who in enumerate(holders[int(a["round"])]):
                if not proposed >> j & 1:
                    continue
                ok = accepted >> j & 1
                if index[who] in malicious:
                    mp, ma = mp + 1, ma + ok
                    if ok:
                        rounds.append(int(a["round"]))
                else:
                    hp, ha = hp + 1, ha + ok
    return mp, ma, hp, ha, rounds


def attack_success(cfg, out: Path, trigger: dict) -> float:
    """The final weights' backdoor success rate on the run's held-out test items."""
    _, data, parts, spec = prepare(cfg)
    test = np.sort(np.concatenate([p.test for p in parts]))
    ds = data.subset(test)
    final = weights.decode((out / rundir.WEIGHTS).read_bytes())
    learner = models.build_learner(spec, ds, ds, None, cfg.train, seed=0, initial=final)
    learner.load_live(final)
    x, y = as_tensors(ds)
    params = attacks.parameters("backdoor", trigger)

    def predict(images):
        import torch
        from torch.utils.data import TensorDataset

        probs, _ = learner.predict(TensorDataset(images, torch.zeros(len(images), dtype=torch.long)))
        return probs.argmax(1)

    return attacks.attack_success(predict, x, y.numpy(), target=int(params["target"]), size=int(params["size"]),
                                  value=float(params["value"]))


def run_one(task: Task, setup: str, attack: str, seed: int, probe: float | None, epochs: float,
            folder: Path, shape: Shape = Shape()) -> Outcome:
    n, m = SETUPS[setup]
    cfg = base_config(task, n, seed, attack, m, probe, epochs, shape)
    out = folder / f"{task.name}-{setup.replace('/', 'of')}-{attack}-{seed}-{'probe' if probe else 'plain'}"
    start = time.perf_counter()
    res = run_experiment(cfg, out, figure=False)
    seconds = time.perf_counter() - start
    malicious = set(range(m)) if attack != "clean" else set()
    members = rundir.read_manifest(out)["contract_settings"]["members"]
    mp, ma, hp, ha, mal_rounds = proposals(rundir.read_events(out), members, malicious)
    asr = attack_success(cfg, out, task.backdoor) if attack in ("clean", "backdoor") else math.nan
    return Outcome(task.name, setup, probe is not None, attack, seed, mp, ma, hp, ha, res.final_accuracy, asr, seconds,
                   shape.slots(n), shape.combine, sum(t.training for t in res.timings),
                   sum(t.evaluation for t in res.timings), shape.norm_bound, os.getloadavg()[0], shape.peer_margin,
                   shape.metric, shape.margin, shape.weighting, shape.split, shape.judge, shape.direction_floor,
                   mal_rounds, shape.direction_share, shape.strikes)


def percent(x: float) -> str:
    """A share in percent that never rounds a non-zero count to 0 (1 of 600 is 0.2 %, not 0 %)."""
    return f"{x:.1f}" if 0 < x < 1 else f"{x:.0f}"


def share(k: int, n: int) -> str:
    return f"{k}/{n} ({percent(100 * k / n)} %)" if n else "-"


def mean(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.fmean(values) if values else math.nan


def table(outcomes: list[Outcome]) -> list[str]:
    """One markdown row per (task, setup, defence, attack), seeds pooled."""
    plain_clean = {(o.task, o.setup, o.seed): o.accuracy for o in outcomes if o.attack == "clean" and not o.defence}
    rows = []
    keys = sorted({(o.task, o.setup, o.defence, o.attack) for o in outcomes},
                  key=lambda k: (k[0], k[1], k[2], ALL.index(k[3])))
    for task, setup, defence, attack in keys:
        group = [o for o in outcomes if (o.task, o.setup, o.defence, o.attack) == (task, setup, defence, attack)]
        accs = [o.accuracy for o in group]
        # every run against the clean run of its seed without the defence: the defence's cost shows too
        drops = [100 * (plain_clean[(task, setup, o.seed)] - o.accuracy) for o in group
                 if (task, setup, o.seed) in plain_clean]
        sd = f" ± {statistics.stdev(accs):.3f}" if len(accs) > 1 else ""
        asr = mean([o.asr for o in group])
        rows.append((task, setup, "probe" if defence else "off", attack, len(group),
                     share(sum(o.mal_accepted for o in group), sum(o.mal_proposed for o in group)),
                     share(sum(o.hon_accepted for o in group), sum(o.hon_proposed for o in group)),
                     f"{mean(accs):.3f}{sd}", f"{mean(drops):+.1f}", "-" if math.isnan(asr) else f"{100 * asr:.0f} %"))
    return bench.table(("task", "setup", "defence", "attack", "seeds", "malicious accepted", "honest accepted",
                        "final accuracy", "vs clean (pts)", "backdoor success"), rows)


def headline(outcomes: list[Outcome], setup: str = "6/2") -> tuple[float, float, str]:
    """(gross acceptance %, the worst gross attack's mean accuracy drop in points, which) without the defence."""
    plain = [o for o in outcomes if o.setup == setup and not o.defence]
    clean = {(o.task, o.seed): o.accuracy for o in plain if o.attack == "clean"}
    every = [o for o in plain if o.attack in catalogue.GROSS]  # acceptance needs no clean run
    proposed = sum(o.mal_proposed for o in every)
    accepted = 100 * sum(o.mal_accepted for o in every) / proposed if proposed else math.nan
    gross = [o for o in every if (o.task, o.seed) in clean]
    drops = {a: mean([100 * (clean[(o.task, o.seed)] - o.accuracy) for o in gross if o.attack == a])
             for a in catalogue.GROSS if any(o.attack == a for o in gross)}
    if not drops:
        return accepted, math.nan, "no clean run to compare with"
    worst = max(drops, key=lambda a: drops[a])
    return accepted, drops[worst], worst


def headline_line(gross: float, drop: float) -> str:
    """The bench's last line; says what is missing instead of printing "nan" (no gross attack ran,
    or no clean run to compare with)."""
    accepted = f"{percent(gross)} %" if not math.isnan(gross) else "none run"
    lost = f"{drop:.1f} pts" if not math.isnan(drop) else "no gross attack with a clean run to compare"
    return f"gross attacks accepted: {accepted} ({GROSS_LABEL}), accuracy drop: {lost}"


def plot(outcomes: list[Outcome], path: Path) -> None:
    plt = bench.pyplot()
    tasks = sorted({o.task for o in outcomes})
    fig, axes = plt.subplots(len(tasks), 2, figsize=(12, 3.6 * len(tasks)), squeeze=False)
    names = list(catalogue.ATTACKS)
    for row, task in zip(axes, tasks):
        for setup_i, setup in enumerate(sorted({o.setup for o in outcomes if o.task == task})):
            for defence in (False, True):
                group = [o for o in outcomes if o.task == task and o.setup == setup and o.defence == defence]
                if not group:
                    continue
                acc_share = [sum(o.mal_accepted for o in group if o.attack == a) /
                             max(1, sum(o.mal_proposed for o in group if o.attack == a))
                             if any(o.attack == a for o in group) else np.nan for a in names]
                clean = mean([o.accuracy for o in group if o.attack == "clean"])
                drop = [100 * (clean - mean([o.accuracy for o in group if o.attack == a])) if any(
                    o.attack == a for o in group) else np.nan for a in names]
                offset = (setup_i * 2 + defence) * 0.2 - 0.3
                label = f"{setup}{' + probe' if defence else ''}"
                x = np.arange(len(names)) + offset
                row[0].bar(x, acc_share, width=0.2, label=label)
                row[1].bar(x, drop, width=0.2, label=label)
        for ax, title in zip(row, ("malicious proposals accepted (share)", "accuracy drop vs clean (pts)")):
            ax.set_xticks(np.arange(len(names)), names, rotation=40, ha="right", fontsize=8)
            ax.set_title(f"{task}: {title}", fontsize=10)
            ax.axhline(0, color="k", lw=0.5)
            ax.legend(fontsize=7)
    fig.tight_layout()
    bench.save_figure(fig, path)


INTRO = (
    "Every attack of `cohep.research.attacks` (docs/attacks.md) in real colearn runs on the embedded chain: 5 learners "
    "with 1 malicious (`5/1`) and 6 with 2 (`6/2`, a third). Malicious members are the first `m`; "
    "the proposer draw is the contract's. `malicious accepted`: the contract accepted the malicious "
    "members' proposals (per slot), over the slots they proposed; `honest accepted`: the same for honest proposers; "
    "`vs clean`: mean accuracy drop against the same seed's clean run without the defence, same round shape "
    "(positive: worse); `backdoor success`: non-target held-out images classified as the target once triggered. "
    "`defence probe`: the patch-probe guard on (`vote.probe`, cohep.protocol.screens).")
#: the page's sections are the round shapes: ``<!-- bench/byzantine.py: LABEL -->`` ... ``<!-- /bench/byzantine.py -->``
TAG = "bench/byzantine.py"


def load_note(outcomes: list[Outcome]) -> str:
    loads = [o.load for o in outcomes if not math.isnan(o.load)]
    if not loads:
        return f"load {os.getloadavg()[0]:.1f} when the doc was written"
    return (f"load {min(loads):.1f} to {max(loads):.1f} as the runs ended"
            + (f", recorded for {len(loads)} of {len(outcomes)} runs" if len(loads) < len(outcomes) else ""))


def section_title(shape: Shape) -> str:
    if shape.proposers == 1:
        return "## One proposer per round (k = 1)"
    what = "every slot voted on separately, the accepted ones averaged" if shape.combine == "each" else \
        "one vote on the average of every slot"
    bound = f", update-norm bound {shape.norm_bound:g}" if shape.norm_bound is not None else ""
    bound += f", peer margin {shape.peer_margin:g}" if shape.peer_margin is not None else ""
    bound += "".join(f", {name} {value}" for name, value in (("vote on", shape.metric), ("margin", shape.margin),
                                                              ("weighting", shape.weighting), ("split", shape.split),
                                                              ("judge", shape.judge),
                                                              ("direction floor", shape.direction_floor),
                                                              ("direction share", shape.direction_share),
                                                              ("strikes", shape.strikes))
                     if value is not None)
    return f"## {shape.proposers} proposers per round, combine = {shape.combine} ({what}{bound})"


def write_doc(path: Path, command: str, args, outcomes: list[Outcome], last: str, figure: Path,
              shape: Shape = Shape()) -> None:
    """Write this round shape's section of the doc: replaced if the doc has one, else added after
    the other shapes' sections (a new doc gets the title and the introduction first); the doc's
    other text (its introduction, the notes after the sections) is kept."""
    seconds = sum(o.seconds for o in outcomes)
    train = sum(o.training_s for o in outcomes if not math.isnan(o.training_s))
    section = [
        section_title(shape), "",
        f"Command: `{command}`", "",
        *[line for note in args.note for line in (note, "")],
        f"Settings: seeds {', '.join(str(x) for x in sorted({o.seed for o in outcomes}))} (`seeds`: how many "
        f"a row pools); MNIST first {args.limit or 10000} images, {args.rounds} rounds, "
        f"{shape.label()} (slots per round: at most the learners), "
        f"{args.epochs:g} epoch(s) per proposal, vote threshold 0.5; "
        f"probe {args.probe} with a {args.probe_size}x{args.probe_size} patch"
        + (f"; neutrino events: {args.events}, first {args.events_limit}, {args.events_rounds} rounds, compact model"
           if any(o.task == "neutrino" for o in outcomes) else "") + ".", "",
        *table(outcomes), "",
        f"`{last}`", "",
        f"![byzantine](../figures/{figure.name})", "",
        (f"Machine: {bench.machine()} ({load_note(outcomes)}); "
         f"{seconds / 60:.1f} minutes of runs, of which training {train / 60:.1f} minutes (timings are inflated "
         "when other jobs share the machine; the figures above are counts and accuracies, not timings)."),
    ]
    bench.write_doc(path, {shape.label(): "\n".join(section)}, tag=TAG, keep_head=True,
                    head=f"# Byzantine members (bench/byzantine.py)\n\n{INTRO}")


def parser():
    p = bench.parser(__doc__)
    bench.add_mnist(p, HOME, help="MNIST folder (IDX files)")
    p.add_argument("--limit", type=int, default=2000, help="first N MNIST images (0: all)")
    p.add_argument("--rounds", type=int, default=12)
    bench.add_seed_count(p, 1, first=True, help="seeds per run (the first ones from --first-seed)")
    p.add_argument("--setups", default="6/2", help="comma-separated: 5/1 (one of five malicious), 6/2 (a third)")
    p.add_argument("--attacks", default=",".join(ALL), help="comma-separated, 'clean' included")
    p.add_argument("--defence", default=",".join(DEFENCE_DEFAULT),
                   help="attacks also run with the probe ('all', or 'none'); only in the 6/2 setup")
    p.add_argument("--probe", type=float, default=0.15, help="vote.probe when the defence is on")
    p.add_argument("--probe-size", type=int, default=4)
    p.add_argument("--epochs", type=float, default=1.0, help="epochs per proposal")
    p.add_argument("--proposers", type=int, default=1,
                   help="[round] proposers: slots per round (at most the learners; 6 with 6/2 is full participation)")
    p.add_argument("--norm-bound", type=float, default=None,
                   help="vote.norm_bound for every run: reject a slot whose update exceeds this times the round's median")
    p.add_argument("--peer-margin", type=float, default=None,
                   help="vote.peer_margin for every run: reject a slot scoring this far below the round's median")
    p.add_argument("--combine", choices=("each", "average"), default="each",
                   help="[round] combine: vote on each slot and average the accepted ones, or vote on the average")
    p.add_argument("--metric", default=None, choices=("accuracy", "loss", "accuracy_or_loss"),
                   help="vote.metric for every run (default: the config's, accuracy)")
    p.add_argument("--margin", type=float, default=None,
                   help="vote.margin for every run (negative: a tolerated regression)")
    p.add_argument("--weighting", default=None, choices=("equal", "examples"),
                   help="[round] weighting for every run: average accepted proposals equally or by declared examples")
    p.add_argument("--split", default=None, choices=("iid", "dirichlet"),
                   help="data.split for every run (dirichlet: alpha 0.5; default: the config's, IID)")
    p.add_argument("--judge", default=None, choices=("alone", "screened_average"),
                   help="vote.judge for every run (screened_average: the slots that pass the screens judged by their average)")
    p.add_argument("--direction-floor", type=float, default=None,
                   help="vote.direction_floor for every run: reject a slot whose update points against the others' sum")
    p.add_argument("--direction-share", type=float, default=None,
                   help="vote.direction_share (with --direction-floor): raise the floor by this share of the round's "
                        "median cosine")
    p.add_argument("--strikes", type=int, default=None,
                   help="vote.strikes (with a negative --direction-floor): a member screened out in this many rounds "
                        "is held to a direction floor of 0")
    p.add_argument("--tasks", default="mnist", help="comma-separated: mnist, neutrino")
    p.add_argument("--events", default=str(HOME.events), help="neutrino event HDF5")
    p.add_argument("--events-limit", type=int, default=3000)
    p.add_argument("--events-rounds", type=int, default=8)
    p.add_argument("--events-setups", default="6/2")
    bench.add_full(p, "both setups, all images, 15 rounds, 3 seeds, defence for all")
    p.add_argument("--skip-clean", action="store_true",
                   help="no clean reference runs (another invocation's --json has them; combine with --from-json)")
    p.add_argument("--defence-only", action="store_true", help="only the runs with the defence on")
    p.add_argument("--json", default=None, help="also save the runs' outcomes here (JSON)")
    p.add_argument("--from-json", nargs="+", default=None, help="run nothing: table and doc from saved outcomes")
    bench.add_doc(p, HOME.doc())
    p.add_argument("--note", action="append", default=[],
                   help="a paragraph for the doc's section (e.g. the commands whose --json a --from-json merges)")
    bench.add_figure(p, None, help="default: docs/figures/byzantine.png (k = 1), byzantine-k6-each.png and so on")
    return p


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.proposers < 1:
        p.error("--proposers must be at least 1")
    if args.norm_bound is not None and args.proposers < 3:
        p.error("--norm-bound compares the proposals of one round: it needs --proposers 3 or more")
    if args.peer_margin is not None and (args.proposers < 3 or args.combine != "each"):
        p.error("--peer-margin compares the slots of one round voted one by one: it needs --proposers 3 or more "
                "and --combine each")
    shape = Shape(args.proposers, args.combine if args.proposers > 1 else "each", args.norm_bound, args.peer_margin,
                  args.metric, args.margin, args.weighting, args.split, args.judge, args.direction_floor,
                  args.direction_share, args.strikes)
    if args.figure is None:
        name = "byzantine" if shape.proposers == 1 else f"byzantine-k{shape.proposers}-{shape.combine}"
        name += "".join(f"-{v}" for v in (shape.metric, shape.weighting, shape.split, shape.judge) if v is not None)
        name += f"-margin{shape.margin:g}" if shape.margin is not None else ""
        name += f"-dir{shape.direction_floor:g}" if shape.direction_floor is not None else ""
        name += f"-share{shape.direction_share:g}" if shape.direction_share is not None else ""
        name += f"-strikes{shape.strikes}" if shape.strikes is not None else ""
        args.figure = HOME.figures / (name + (f"-norm{shape.norm_bound:g}" if shape.norm_bound else "")
                                      + (f"-peer{shape.peer_margin:g}" if shape.peer_margin else "") + ".png")
    if args.full:
        args.limit, args.rounds, args.seeds, args.defence, args.setups = 0, 15, 3, "all", "5/1,6/2"
    chosen = [a.strip() for a in args.attacks.split(",") if a.strip()]
    unknown = [a for a in chosen if a not in ALL]
    if unknown:
        p.error(f"unknown attack {unknown[0]} (known: {', '.join(ALL)})")
    if "clean" not in chosen and not args.skip_clean:
        chosen.insert(0, "clean")
    defended = chosen if args.defence == "all" else [] if args.defence == "none" else \
        [a for a in args.defence.split(",") if a in chosen or a == "clean"]
    if defended and "clean" not in defended and not args.skip_clean:
        defended.insert(0, "clean")
    tasks = []
    if "mnist" in args.tasks.split(","):
        tasks.append((Task("mnist", "mnist", args.data, args.limit or None, args.rounds, 0.2, {}, args.probe_size),
                      args.setups.split(",")))
    if "neutrino" in args.tasks.split(","):
        # charge units: a saturated 8x8 square, far above a wire's typical reading
        tasks.append((Task("neutrino", "events", args.events, args.events_limit or None, args.events_rounds, 0.2,
                           {"size": 8, "value": 500.0}, 8), args.events_setups.split(",")))
    outcomes: list[Outcome] = []
    if args.from_json:
        tasks = []
        for path in args.from_json:
            outcomes += [Outcome(**o) for o in json.loads(Path(path).read_text())]
        # only this round shape's runs: a comparison across shapes would not be like for like
        outcomes = [o for o in outcomes if shape.holds(o)]
    with tempfile.TemporaryDirectory(prefix="byzantine-") as tmp:
        for task, setups in tasks:
            for setup in setups:
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    plans = [] if args.defence_only else [(a, None) for a in chosen]
                    if setup == "6/2":
                        plans += [(a, args.probe) for a in defended]
                    for attack, probe in plans:
                        o = run_one(task, setup, attack, seed, probe, args.epochs, Path(tmp), shape)
                        outcomes.append(o)
                        print(f"{task.name} {setup} {shape.label()} seed {seed} {attack:>16} "
                              f"{'probe' if probe else 'plain'}: "
                              f"malicious {o.mal_accepted}/{o.mal_proposed}"
                              f"{' (rounds ' + ', '.join(map(str, o.mal_rounds)) + ')' if o.mal_rounds else ''}, "
                              f"honest {o.hon_accepted}/{o.hon_proposed}, "
                              f"accuracy {o.accuracy:.3f}"
                              + ("" if math.isnan(o.asr) else f", backdoor success {100 * o.asr:.0f} %")
                              + f" ({o.seconds:.0f} s)", flush=True)
                        if args.json:  # after every run, so a cut-off bench keeps what it did
                            bench.write_text(args.json, json.dumps([asdict(x) for x in outcomes], indent=1))
    print()
    print("\n".join(table(outcomes)))
    gross, drop, worst = headline(outcomes, "6/2" if any(o.setup == "6/2" for o in outcomes) else outcomes[0].setup)
    last = headline_line(gross, drop)
    figure = args.figure
    plot(outcomes, figure)
    given = list(argv if argv is not None else sys.argv[1:])
    shown = [a for i, a in enumerate(given) if a != "--note" and (i == 0 or given[i - 1] != "--note")]  # notes: below
    write_doc(args.doc, HOME.command(shown), args, outcomes, last + f" (worst: {worst}, a third malicious)", figure,
              shape)
    print(f"(worst gross attack: {worst}; doc {args.doc}, figure {figure})")
    print(last)
    return 0


if __name__ == "__main__":
    sys.exit(main())
