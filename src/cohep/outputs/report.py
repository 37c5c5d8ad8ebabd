"""A Markdown run report: what ran, what came out, where the files are."""
from __future__ import annotations

from pathlib import Path

from cohep.core.files import atomic_write_text


def write_report(cfg, result, path: str | Path) -> Path:
    e = cfg.experiment
    shares = result.time_shares()
    per_round = sum(t.total for t in result.timings) / max(1, len(result.timings))
    lines = [
        f"# cohep run: {e.name}",
        "",
        f"- mode: **{result.mode}**, {e.learners} learner(s), {e.rounds} rounds, seed {e.seed}",
        f"- model: `{cfg.model.name}`; data: {cfg.data.kind} `{cfg.data.path or 'download'}`, split {cfg.data.split}",
        f"- vote: {cfg.vote.metric}, margin {cfg.vote.margin}, threshold {cfg.vote.threshold}",
    ]
    if result.contract:
        lines.append(f"- chain id {result.chain_id}, coordinator contract `{result.contract}`")
    lines += [
        "",
        "## Results",
        "",
        f"- final mean test accuracy: **{result.final_accuracy:.4f}**",
        f"- accepted proposals per learner: {result.accepted}",
        f"- mean wall time per round: {per_round:.2f} s "
        + "(" + ", ".join(f"{k} {100 * v:.1f}%" for k, v in shares.items()) + ")",
        "",
        "| round | proposer | votes (approve/reject) | outcome | mean test accuracy |",
        "|---:|---:|---|---|---:|",
    ]
    for rnd in sorted({r.round for r in result.records if r.round > 0}):
        rows = [r for r in result.records if r.round == rnd]
        ap = sum(r.vote == "approve" for r in rows)
        rj = sum(r.vote == "reject" for r in rows)
        outcome = "void" if rows[0].void else ("accepted" if rows[0].accepted else "rejected")
        acc = sum(r.test_accuracy for r in rows) / len(rows)
        lines.append(f"| {rnd} | {rows[0].proposer} | {ap}/{rj} | {outcome} | {acc:.4f} |")
    lines += _privacy(getattr(result, "privacy", None))
    lines += ["", "## Files", ""]
    for key, p in result.files.items():
        lines.append(f"- {key}: `{Path(p).name}`")
    lines.append("- report: `report.md`")
    atomic_write_text(path, "\n".join(lines) + "\n")
    return Path(path)


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
