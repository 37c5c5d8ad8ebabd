"""``cohep status``: what the chain says about an experiment, as tables (live with ``--watch``).

Everything shown is read from the contract (its events and views): rounds with their proposer, the
proposal's digest, the votes and the outcome, and per member what it proposed, how often it was
accepted, its votes and missed duties, and whether it is suspended; and every suspension with the
duty whose miss caused it (contract v4's ``Suspended`` reason) and when the member rejoined. A
finished run directory is shown
from what it kept instead: its chain log (``chain_events.jsonl``) and its records, the same files
``cohep audit`` reads.
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


@dataclass
class Suspension:
    """One ``Suspended`` event and the ``Rejoined`` that ended it, if any (rounds 0-based, as on chain)."""

    member: int
    address: str
    round: int  #: the round whose missed duty suspended it; inactive from round + 1
    reason: str  #: the duty missed last ("missed vote", ...); "" from a contract before v4
    rejoined: int | None = None  #: the round it is active again from

    def line(self) -> str:
        why = self.reason or "reason not recorded (contract before v4)"
        back = (f"rejoined, active again from round {self.rejoined + 1}" if self.rejoined is not None
                else "still suspended")
        return f"member {self.member} {self.address}: suspended in round {self.round + 1} ({why}); {back}"


def suspensions(events, members: list[str]) -> list[Suspension]:
    """Every suspension, oldest first, each with the rejoin that ended it (from the events alone)."""
    index = {m.lower(): i for i, m in enumerate(members)}
    out: list[Suspension] = []
    open_: dict[str, Suspension] = {}
    for e in events:
        a = e.args if hasattr(e, "args") else e["args"]
        name = e.name if hasattr(e, "name") else e["name"]
        if name not in ("Suspended", "Rejoined"):
            continue
        who = str(a["member"]).lower()
        if name == "Suspended":
            s = Suspension(index.get(who, -1), str(a["member"]), int(a["round"]), str(a.get("reason", "") or ""))
            out.append(s)
            open_[who] = s
        elif who in open_:
            open_.pop(who).rejoined = int(a["round"])
    return out


def _suspensions_table(rows: list[Suspension]) -> Table:
    table = Table(title="suspensions")
    for col in ("member", "address", "round", "why", "rejoined"):
        table.add_column(col, justify="right" if col in ("member", "round") else "left")
    for s in rows:
        table.add_row(str(s.member), s.address, str(s.round + 1), s.reason or "(not recorded)",
                      f"active from round {s.rejoined + 1}" if s.rejoined is not None else "[red]no[/red]")
    return table


def _hex(value) -> str:
    return value.hex() if isinstance(value, (bytes, bytearray)) else str(value).removeprefix("0x")


def _rounds_table(title: str, rows: list[RoundRow], accuracy: dict[int, float] | None = None) -> Table:
    """One line per round; ``accuracy``: the mean test accuracy after each (1-based) round, if known."""
    rounds = Table(title=title, expand=False)
    columns = ["round", "proposer", "proposal", "approve", "reject", "needed", "outcome"]
    for col in columns + (["mean test acc"] if accuracy is not None else []):
        rounds.add_column(col, justify="right" if col not in ("proposal", "outcome") else "left")
    for row in rows:
        colour = {"accepted": "green", "rejected": "red", "void": "dim"}.get(row.outcome, "yellow")
        cells = [str(row.round + 1), str(row.proposer), row.digest[:12], str(row.approvals),
                 str(row.rejections), "" if row.required is None else str(row.required),
                 f"[{colour}]{row.outcome}[/{colour}]"]
        if accuracy is not None:
            cells.append(f"{accuracy[row.round + 1]:.4f}" if row.round + 1 in accuracy else "")
        rounds.add_row(*cells)
    return rounds


def mean_accuracy(records) -> dict[int, float]:
    """Round (1-based) -> the learners' mean test accuracy after it."""
    by_round: dict[int, list[float]] = {}
    for r in records:
        if r.round > 0:
            by_round.setdefault(r.round, []).append(r.test_accuracy)
    return {k: sum(v) / len(v) for k, v in by_round.items()}


def render_run(run_dir) -> Table | Group:
    """The rounds of a finished run directory, from its chain log and records (what ``cohep audit``
    reads); a baseline run, which has no chain, from its records alone."""
    from pathlib import Path

    from cohep.outputs import rundir

    p = Path(run_dir)
    manifest = rundir.read_manifest(p)
    records = rundir.read_records(p)
    accuracy = mean_accuracy(records)
    title = f"{p}: {manifest.get('mode', 'colearn')}, {len(accuracy)} round(s)"
    if (manifest.get("files") or {}).get("chain_log"):
        members = list((manifest.get("contract_settings") or {}).get("members") or [])
        events = rundir.read_events(p)
        rounds = _rounds_table(title, round_rows(events, members), accuracy)
        held = suspensions(events, members)
        return Group(rounds, _suspensions_table(held)) if held else rounds
    table = Table(title=title, expand=False)
    for col in ("round", "kept", "mean test acc"):
        table.add_column(col, justify="right")
    for rnd in sorted(accuracy):
        kept = sum(1 for r in records if r.round == rnd and r.accepted)
        table.add_row(str(rnd), str(kept), f"{accuracy[rnd]:.4f}")
    return table


def render(coord, title: str, *, last: int = 20, rounds_total: int | None = None):
    """The rounds table (the last ``last`` rounds of the experiment), the members table and, if any
    member was ever suspended, every suspension with its reason and rejoin."""
    members = list(coord.settings().members)
    events = coord.events()
    rows = [r for r in round_rows(events, members) if rounds_total is None or r.round < rounds_total]
    rounds = _rounds_table(title, rows[-last:])
    people = Table(title="members")
    for col in ("member", "address", "proposed", "accepted", "votes", "with outcome", "missed", "status"):
        people.add_column(col, justify="right" if col not in ("address", "status") else "left")
    for i, m in enumerate(members):
        s = coord.member_stats(m)
        status = "[red]suspended[/red]" if getattr(s, "suspended", False) else "active"
        people.add_row(str(i), m, str(s.proposed), str(s.accepted), str(s.votes_cast), str(s.votes_with_majority),
                       str(s.missed), status)
    held = suspensions(events, members)
    return Group(rounds, people, _suspensions_table(held)) if held else Group(rounds, people)


def round_line(row: RoundRow) -> str:
    """One round as one plain line (``--watch`` without a terminal)."""
    proposal = f"proposal {row.digest[:12]}" if row.digest else "no proposal yet"
    needed = "" if row.required is None else f" (needed {row.required})"
    return (f"round {row.round + 1}: proposer {row.proposer}, {proposal}, {row.approvals} approve, "
            f"{row.rejections} reject{needed}, {row.outcome}")


def watch_lines(coord, *, interval: float = 2.0, until_round: int | None = None, echo=print) -> None:
    """``--watch`` where no terminal is attached (a log file, a pipe, CI): a plain line, flushed, for
    each round whose row changed and each suspension or rejoin (with its reason), until ``until_round``
    rounds are decided (the rich live tables draw nothing there)."""
    members = list(coord.settings().members)
    seen: dict[int, str] = {}
    said: dict[int, str] = {}  # suspension (by its place in the event order) -> its line as last printed
    while True:
        events = coord.events()
        rows = [r for r in round_rows(events, members) if until_round is None or r.round < until_round]
        for row in rows:
            line = round_line(row)
            if seen.get(row.round) != line:
                echo(line)
                seen[row.round] = line
        for k, s in enumerate(suspensions(events, members)):
            line = s.line()
            if said.get(k) != line:
                echo(line)
                said[k] = line
        if until_round is not None and coord.round() >= until_round:
            return
        time.sleep(interval)


def show(coord, title: str, *, watch: bool = False, interval: float = 2.0, until_round: int | None = None) -> None:
    """Print the tables once, or keep them live until ``until_round`` rounds are decided (or Ctrl-C);
    without a terminal, ``watch`` prints plain lines instead (``watch_lines``)."""
    from rich.console import Console
    from rich.live import Live

    console = Console()
    if not watch:
        console.print(render(coord, title, rounds_total=until_round))
        return
    if not console.is_terminal:
        print(title, flush=True)
        watch_lines(coord, interval=interval, until_round=until_round, echo=lambda text: print(text, flush=True))
        return
    with Live(render(coord, title, rounds_total=until_round), console=console, refresh_per_second=4) as live:
        while until_round is None or coord.round() < until_round:
            time.sleep(interval)
            live.update(render(coord, title, rounds_total=until_round))
