"""``cohep status``: what the chain says about an experiment, as tables (live with ``--watch``).

Everything shown is read from the contract (its events and views): rounds with their proposer, the
proposal's digest, the votes and the outcome, and per member what it proposed, how often it was
accepted, its votes and missed duties, and whether it is suspended.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Group
from rich.table import Table


@dataclass
class RoundRow:
    round: int
    proposer: int
    digest: str = ""
    approvals: int = 0
    rejections: int = 0
    required: int | None = None
    outcome: str = "open"


def round_rows(events, members: list[str]) -> list[RoundRow]:
    """One row per round from the contract's events (oldest first)."""
    index = {m.lower(): i for i, m in enumerate(members)}
    rows: dict[int, RoundRow] = {}
    for e in events:
        a = e.args if hasattr(e, "args") else e["args"]
        name = e.name if hasattr(e, "name") else e["name"]
        if "round" not in a or name in ("Suspended", "Rejoined"):
            continue
        r = int(a["round"])
        row = rows.setdefault(r, RoundRow(r, index.get(str(a.get("proposer", "")).lower(), -1)))
        if name == "Proposed":
            row.digest, row.outcome = _hex(a["digest"]), "proposed"
        elif name == "Voted":
            if (int(a["approvals"]) & 1) if "approvals" in a else a["approve"]:  # slot 0 (v2: approve)
                row.approvals += 1
            else:
                row.rejections += 1
        elif name == "Finalized":
            row.outcome = "accepted" if a["accepted"] else "rejected"
            row.required = int(a["required"]) if "required" in a else None
        elif name == "RoundVoided":
            row.outcome = "void"
    return [rows[r] for r in sorted(rows)]


def _hex(value) -> str:
    return value.hex() if isinstance(value, (bytes, bytearray)) else str(value).removeprefix("0x")


def render(coord, title: str, *, last: int = 20, rounds_total: int | None = None):
    """The rounds table (the last ``last`` rounds of the experiment) and the members table."""
    members = list(coord.settings().members)
    rounds = Table(title=title, expand=False)
    for col in ("round", "proposer", "proposal", "approve", "reject", "needed", "outcome"):
        rounds.add_column(col, justify="right" if col not in ("proposal", "outcome") else "left")
    rows = [r for r in round_rows(coord.events(), members) if rounds_total is None or r.round < rounds_total]
    for row in rows[-last:]:
        colour = {"accepted": "green", "rejected": "red", "void": "dim"}.get(row.outcome, "yellow")
        rounds.add_row(str(row.round + 1), str(row.proposer), row.digest[:12], str(row.approvals),
                       str(row.rejections), "" if row.required is None else str(row.required),
                       f"[{colour}]{row.outcome}[/{colour}]")
    people = Table(title="members")
    for col in ("member", "address", "proposed", "accepted", "votes", "with outcome", "missed", "status"):
        people.add_column(col, justify="right" if col not in ("address", "status") else "left")
    for i, m in enumerate(members):
        s = coord.member_stats(m)
        status = "[red]suspended[/red]" if getattr(s, "suspended", False) else "active"
        people.add_row(str(i), m, str(s.proposed), str(s.accepted), str(s.votes_cast), str(s.votes_with_majority),
                       str(s.missed), status)
    return Group(rounds, people)


def show(coord, title: str, *, watch: bool = False, interval: float = 2.0, until_round: int | None = None) -> None:
    """Print the tables once, or keep them live until ``until_round`` rounds are decided (or Ctrl-C)."""
    from rich.console import Console
    from rich.live import Live

    console = Console()
    if not watch:
        console.print(render(coord, title, rounds_total=until_round))
        return
    with Live(render(coord, title, rounds_total=until_round), console=console, refresh_per_second=4) as live:
        while until_round is None or coord.round() < until_round:
            time.sleep(interval)
            live.update(render(coord, title, rounds_total=until_round))
