"""A Markdown run report: what ran, what came out, where the files are, and what looks wrong.

A colearn run's table is the protocol's (proposer, votes, outcome); the baselines have no proposers
or votes, so theirs is each learner's own test accuracy per round. :func:`warnings_for` names a run
that learned nothing (no proposal accepted, or a final accuracy near chance) so that a small run
does not end silently at chance; :func:`start_line` says at the start what is about to run.
"""
from __future__ import annotations

import math
from pathlib import Path

from cohep.core.files import atomic_write_text

#: a final accuracy within this of chance (1 / classes) counts as "learned nothing"
CHANCE_MARGIN = 0.05


def start_line(cfg, *, model_auto: bool) -> str:
    """One line before training: the mode, the model (and whether the data picked it), the protocol, and the
    training augmentation where the prepared config applies it (wire-plane events)."""
    e = cfg.experiment
    model = f"model {cfg.model.name}" + (" (auto-picked for the data; --model to choose)" if model_auto else "")
    head = f"{e.mode}: {e.learners} learner(s), {e.rounds} round(s), {model}"
    if e.mode != "colearn":
        return (head + "; no protocol (" + ("each learner alone)" if e.mode == "individual" else "pooled data)")
                + augmentation_text(cfg))
    v, r = cfg.vote, cfg.round
    return (head + f"; protocol {e.protocol} (--protocol to choose): [round] proposers {r.proposers}, combine {r.combine}; "
            f"[vote] judge {v.judge}, metric {v.metric}, margin {v.margin:g}, threshold {v.threshold:g}"
            + augmentation_text(cfg))


def augmentation_text(cfg) -> str:
    """The part ``; [train.augment] <the switches on>`` where the (prepared) config augments, and "" where it
    does not (data without wire planes, ``enabled = false``, every switch 0)."""
    a = cfg.train.augment
    return f"; [train.augment] {a.describe()}" if a.active else ""


def warnings_for(result) -> list[str]:
    """At most one line: the run accepted nothing (colearn) or ended near chance, and what to try.

    ``result`` needs ``mode``, ``accepted``, ``final_accuracy``, ``num_classes`` and ``timings``
    (one per round played); an accuracy that is not finite (no test set) is not judged.
    """
    reasons = []
    rounds = len(result.timings)
    if result.mode == "colearn" and rounds and not sum(result.accepted):
        reasons.append(f"no proposal was accepted in {rounds} round(s)")
    k = result.num_classes
    acc = result.final_accuracy
    if k >= 2 and math.isfinite(acc) and acc <= 1 / k + CHANCE_MARGIN:
        reasons.append(f"the final test accuracy {acc:.4f} is within {CHANCE_MARGIN:g} of chance "
                       f"({1 / k:.4f} for {k} classes)")
    if not reasons:
        return []
    tries = ["more rounds (-r)", "more epochs per proposal (--epochs)"]
    if result.mode == "colearn":
        tries.append("a lower vote margin (--margin, negative tolerates a regression)")
    tries.append("another model (--model)" if result.mode == "colearn" else "a larger learning rate (--lr)")
    return ["warning: " + " and ".join(reasons) + "; try " + ", ".join(tries)]


def final_weights_line(mode: str, learners: int) -> str:
    """Whose model final_weights.safetensors holds (the runner saves learner 0's current weights)."""
    if mode == "colearn":
        return ("final_weights.safetensors holds learner 0's model: the weights the contract accepted last, "
                "which every member adopts (the initial weights if none was accepted)")
    if mode == "centralised":
        return "final_weights.safetensors holds the one model trained on the pooled data"
    return (f"final_weights.safetensors holds learner 0's own model only; the other {learners - 1} learner(s) "
            "trained alone and their models are not saved")


def write_report(cfg, result, path: str | Path) -> Path:
    e = cfg.experiment
    shares = result.time_shares()
    per_round = sum(t.total for t in result.timings) / max(1, len(result.timings))
    learners = sorted({r.learner for r in result.records})
    auto = " (auto-picked for the data)" if getattr(result, "model_auto", False) else ""
    lines = [
        f"# cohep run: {e.name}",
        "",
        f"- mode: **{result.mode}**, {len(learners)} learner(s), {e.rounds} rounds, seed {e.seed}",
        f"- model: `{cfg.model.name}`{auto}; data: {cfg.data.kind} `{cfg.data.path or 'download'}`, split {cfg.data.split}",
    ]
    if result.mode == "colearn":
        lines.append(f"- round: proposers {cfg.round.proposers}, combine {cfg.round.combine}")
        lines.append(f"- vote: {cfg.vote.metric}, margin {cfg.vote.margin}, threshold {cfg.vote.threshold}")
    else:
        lines.append("- no protocol: " + ("each learner trains alone and keeps a round's training when its own "
                                          "vote set scores it better" if result.mode == "individual" else
                                          "one learner trains on the pooled data of all learners"))
    if result.contract:
        lines.append(f"- chain id {result.chain_id}, coordinator contract `{result.contract}`")
    warned = warnings_for(result)
    if warned:
        lines += ["", *(f"**{w}**" for w in warned)]
    lines += ["", "## Results", "", f"- final mean test accuracy: **{result.final_accuracy:.4f}**"]
    if result.mode == "colearn":
        lines.append(f"- accepted proposals per learner: {result.accepted}")
    lines += [f"- mean wall time per round: {per_round:.2f} s "
              + "(" + ", ".join(f"{k} {100 * v:.1f}%" for k, v in shares.items()) + ")",
              f"- {final_weights_line(result.mode, len(learners))}", ""]
    lines += _protocol_table(result.records) if result.mode == "colearn" else _learner_table(result.records, learners)
    lines += _privacy(getattr(result, "privacy", None))
    lines += ["", "## Files", ""]
    for key, p in result.files.items():
        lines.append(f"- {key}: `{Path(p).name}`")
    lines.append("- report: `report.md`")
    atomic_write_text(path, "\n".join(lines) + "\n")
    return Path(path)


def _protocol_table(records) -> list[str]:
    """Colearn: per round the proposer, the votes, the contract's outcome and the mean test accuracy."""
    lines = ["| round | proposer | votes (approve/reject) | outcome | mean test accuracy |",
             "|---:|---:|---|---|---:|"]
    for rnd in sorted({r.round for r in records if r.round > 0}):
        rows = [r for r in records if r.round == rnd]
        ap = sum(r.vote == "approve" for r in rows)
        rj = sum(r.vote == "reject" for r in rows)
        outcome = "void" if rows[0].void else ("accepted" if rows[0].accepted else "rejected")
        acc = sum(r.test_accuracy for r in rows) / len(rows)
        lines.append(f"| {rnd} | {rows[0].proposer} | {ap}/{rj} | {outcome} | {acc:.4f} |")
    return lines


def _learner_table(records, learners: list[int]) -> list[str]:
    """Baselines: each learner's own test accuracy after every round (round 0: the initial weights)."""
    names = ["pooled"] if len(learners) == 1 else [f"learner {i}" for i in learners]
    lines = ["| round | " + " | ".join(names) + " |" + (" mean |" if len(learners) > 1 else ""),
             "|---:|" + "---:|" * (len(learners) + (len(learners) > 1))]
    for rnd in sorted({r.round for r in records}):
        acc = {r.learner: r.test_accuracy for r in records if r.round == rnd}
        cells = [f"{acc[i]:.4f}" if i in acc else "-" for i in learners]
        if len(learners) > 1:
            cells.append(f"{sum(acc.values()) / len(acc):.4f}")
        lines.append(f"| {rnd} | " + " | ".join(cells) + " |")
    return lines


def _privacy(rows: list[dict] | None) -> list[str]:
    """Each private learner's budget and what it spent (DP-SGD, ``[privacy]``)."""
    if not rows:
        return []
    lines = ["", "## Privacy", "",
             "| learner | epsilon spent | budget | delta | noise multiplier | proposals | stopped |",
             "|---:|---:|---:|---:|---:|---:|---|"]
    for p in rows:
        lines.append(f"| {p['learner']} | {p['epsilon_spent']:.3f} | {p['epsilon_budget']:g} | {p['delta']:.2g} | "
                     f"{p['noise_multiplier']:.3f} | {p['proposals']} | {p['stopped'] or '-'} |")
    return lines
