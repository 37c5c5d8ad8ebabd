"""The ``cohep`` command line: each command is a thin wrapper over the library.

Errors the user can fix (``CohepError``) print one line naming the file or field and exit with 2.
"""
from __future__ import annotations

import functools
import inspect
import sys
from pathlib import Path
from typing import ClassVar
from collections.abc import Callable, Mapping

import click
import typer
from rich.markup import escape
from typer.core import TyperCommand, TyperOption

from cohep.core.errors import CohepError
from cohep.core.settings import describe

app = typer.Typer(
    name="cohep",
    help="Decentralised collaborative learning for particle physics.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # children inherit it: -h everywhere
)


def _print_version(given: bool) -> None:
    if given:
        from cohep import __version__

        typer.echo(__version__)
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", "-V", is_eager=True, callback=_print_version,
                                 help="Print the cohep version and exit."),
) -> None:
    # typer's --install-completion / --show-completion hang off this callback too
    pass


@app.command()
def version() -> None:
    """Print the cohep version."""
    _print_version(True)


# -- flags that are settings: each declared once, as the section.field it overrides ------------
#
# A command's settings flags are a table, flag -> "section.field". Each flag's option (its type,
# help, choices and the default shown) is built from that field, so `--help` says what the section
# says; a flag not given is None, and the config file or the section's default decides.


def _experiment_config() -> type:
    from cohep.config.experiment import ExperimentConfig

    return ExperimentConfig


def _setting_help(doc) -> str:
    """The field's help, safe from rich markup, with the section's default the way typer shows one."""
    text = escape(doc.help)
    if doc.default is not None and doc.default != "":
        text += f" [dim]\\[default: {escape(str(doc.default))}][/dim]"
    return text


_CLICK_TYPES = {int: click.INT, float: click.FLOAT, str: click.STRING, bool: click.BOOL}


def _setting_option(flag: str, doc, short: str | None) -> TyperOption:
    if doc.kind is None:
        raise TypeError(f"--{flag}: its field takes a list or a table; the command must declare and parse it")
    decls = [flag, "--" + flag.replace("_", "-"), *([short] if short else [])]
    metavar = f"[{'|'.join(map(str, doc.choices))}]" if doc.choices else None
    return TyperOption(param_decls=decls, type=_CLICK_TYPES[doc.kind], default=None, help=_setting_help(doc),
                       metavar=metavar)


def _with_settings(params: list[click.Parameter], table: Mapping[str, str], short: Mapping[str, str],
                   root: type) -> list[click.Parameter]:
    """The command's own parameters, then one per flag of ``table`` in its order: the one the command
    declares itself (to make it an argument or a path; its help comes from the field) or a new option."""
    declared = {p.name: p for p in params}
    out = [p for p in params if p.name not in table]
    for flag, target in table.items():
        doc = describe(root, target)
        if flag in declared:
            param = declared[flag]
            param.help = param.help or _setting_help(doc)
            out.append(param)
        else:
            out.append(_setting_option(flag, doc, short.get(flag)))
    return out


class _SettingsCommand(TyperCommand):
    """A command whose settings flags are added when it parses its arguments or shows its help: the
    sections import torch, and only the command that runs should pay for that (``cohep version`` stays quick)."""

    table: ClassVar[Mapping[str, str]] = {}
    short: ClassVar[Mapping[str, str]] = {}
    sections: ClassVar[Callable[[], type]] = staticmethod(_experiment_config)
    _complete = False

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if not self._complete:
            self.params = _with_settings(self.params, self.table, self.short, self.sections())
            self._complete = True
        return super().get_params(ctx)


def settings_command(table: Mapping[str, str], *, short: Mapping[str, str] | None = None,
                     sections: Callable[[], type] = _experiment_config, name: str | None = None):
    """``@app.command()`` for a command with settings flags: ``table`` maps each flag to the
    ``section.field`` (under the class ``sections()`` returns) it overrides, ``short`` gives some an
    alias. The command takes ``overrides``: every flag's value (None: not given) by its ``section.field``."""

    def register(command: Callable) -> Callable:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "overrides"]

        @functools.wraps(command)
        def with_overrides(**values):
            overrides = {target: values.get(flag) for flag, target in table.items()}
            return command(**{p.name: values[p.name] for p in own}, overrides=overrides)

        with_overrides.__signature__ = signature.replace(parameters=own)
        kind = type(f"{command.__name__}_command", (_SettingsCommand,),
                    {"table": table, "short": short or {}, "sections": staticmethod(sections)})
        return app.command(name, cls=kind)(with_overrides)

    return register


# -- commands are added below, one per concept; keep each a thin wrapper over the library -------

def _data_path(option: Path | None, positional: Path | None, *, required: bool = True) -> Path | None:
    """The data file of a command: ``--data`` (the one documented way, as in run, deploy and node), or
    the older positional form, which still works but is no longer shown; both at once is an error."""
    if option is not None and positional is not None and option != positional:
        raise CohepError(f"--data {option} and the file {positional} both given: give --data only")
    path = option if option is not None else positional
    if path is None and required:
        raise CohepError("--data: give the data file")
    return path



@app.command()
def simulate(
    # required, except with --print-config (checked in the body, after it)
    events: int | None = typer.Option(None, "--events", min=1, help="Number of events to simulate. Required."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output HDF5 file. Required."),
    seed: int = typer.Option(0, min=0, help="Seed: the same seed gives the same file content."),
    workers: int = typer.Option(0, min=0, help="Worker processes (0: all cores); the content does not depend on it."),
    detector: str | None = typer.Option(None, help="Detector preset: microboone (default), protodune, "
                                        "microboone_surface, protodune_sp or dune_fd."),
    config: Path | None = typer.Option(None, "--config", help="TOML simulation configuration."),
    set_: list[str] = typer.Option([], "--set", help="FIELD=VALUE or detector.FIELD=VALUE (a TOML value, else a "
                                   "string): any field of the simulation configuration, applied after --config and "
                                   "--detector; repeatable."),
    print_config: bool = typer.Option(False, "--print-config",
                                      help="Print the effective configuration as TOML and exit without running."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out (refused by default)."),
    shard: str | None = typer.Option(None, "--shard", help="Write only shard i/N (0-based) of the run's events, "
                                     "for a batch array; `cohep merge` joins the N shards into the whole run's file."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Run the blocks of events on a Dask cluster: a "
                                         "scheduler address (tcp://host:8786), or local:K for K local worker processes."),
) -> None:
    """Simulate LArTPC neutrino events (NC / numu CC / nue CC, three wire-plane views) to HDF5."""
    from cohep.core.files import claim_output
    from cohep.lartpc.shards import parse_shard, shard_range
    from cohep.lartpc.simulate import default_config, load_config, simulate as run_simulation

    cfg = load_config(config, detector=detector) if config else default_config(detector or "microboone")
    if set_:
        from cohep.core.settings import merge as merge_settings
        from cohep.lartpc.simulate import SimulationConfig

        cfg = SimulationConfig.from_dict(merge_settings(cfg.to_dict(), _parse_sets(set_, what="FIELD")))
    if print_config:  # TOML has no None: an unset field is left out, as a file would leave it
        typer.echo(toml_text(_without_none(cfg.to_dict())), nl=False)
        raise typer.Exit(0)
    for flag, value in (("--events", events), ("--out", out)):
        if value is None:
            raise click.UsageError(f"Missing option '{flag}'.", ctx=click.get_current_context())
    assert events is not None and out is not None  # for mypy
    part = parse_shard(shard) if shard is not None else None
    if part is not None:
        shard_range(events, *part)  # a bad split is refused before anything starts
    claim_output(out, overwrite=overwrite)
    path = run_simulation(events, out, seed=seed, workers=workers, config=cfg, progress=True, shard=part,
                          scheduler=scheduler)
    if part is None:
        typer.echo(f"wrote {events} events to {path}")
    else:
        a, b = shard_range(events, *part)
        typer.echo(f"wrote shard {part[0]}/{part[1]}: events {a}..{b - 1} of {events} to {path}")


def _without_none(doc: Mapping) -> dict:
    return {k: _without_none(v) if isinstance(v, Mapping) else v for k, v in doc.items() if v is not None}


@app.command()
def merge(
    shards: list[Path] = typer.Argument(..., help="The shard files of one run (cohep simulate --shard i/N), any order."),
    out: Path = typer.Option(..., "--out", "-o", help="The whole run's HDF5 file."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out (refused by default)."),
) -> None:
    """Join the N shards of one simulation run into the file a one-machine run writes (byte for byte)."""
    from cohep.core.files import claim_output
    from cohep.lartpc.shards import merge as merge_shards

    claim_output(out, overwrite=overwrite)
    path = merge_shards(shards, out)
    typer.echo(f"merged {len(shards)} shards into {path}")


@app.command()
def show(
    data: Path | None = typer.Option(None, "--data", "-d", help="HDF5 event file."),
    event: int = typer.Option(0, "--event", help="Event index."),
    out: Path = typer.Option(Path("event.png"), "--out", "-o", help="Output PNG."),
    data_file: Path | None = typer.Argument(None, hidden=True),
) -> None:
    """Draw one event's three wire-plane views with its truth (the paper's Figure 3)."""
    from cohep.outputs.plots.events import event_display

    typer.echo(f"wrote {event_display(_data_path(data, data_file), event, out)}")


def _import_settings() -> type:
    from cohep.datasets.importer import ImportSettings

    return ImportSettings


#: ``cohep import`` flags -> the setting each one overrides (the flags are the fields' names)
IMPORT_FLAGS = {name: name for name in (
    "format", "images", "labels", "tree", "axes", "map_shape", "map_dtype", "map_suffix", "info_suffix", "label_line",
    "label_map", "class_names", "flip", "wire_pitch_mm", "time_per_pixel_us", "drift_mm_us", "size", "vertex",
    "charge_unit", "charge_factor", "calibrate", "calibration_events", "limit",
)}


@settings_command(IMPORT_FLAGS, sections=_import_settings, name="import")
def import_(
    source: Path = typer.Argument(..., help="NPZ, HDF5, ROOT (a TTree) or a directory of zlib-compressed pixel maps "
                                  "(docs/import.md)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output HDF5 event file."),
    # settings flags whose fields are lists or tables: taken as text, parsed below; help from the fields
    class_names: str | None = typer.Option(None, "--class-names"),
    map_shape: str | None = typer.Option(None, "--map-shape"),
    label_map: str | None = typer.Option(None, "--label-map"),
    size: str | None = typer.Option(None, "--size"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out (refused by default)."),
    *,
    overrides: dict[str, object],
) -> None:
    """Import other pipelines' events into the HDF5 event format: resample, calibrate, centre."""
    from cohep.core.files import claim_output
    from cohep.datasets.importer import ImportSettings, import_events, parse_label_map, parse_sizes

    claim_output(out, overwrite=overwrite)

    values = {
        **overrides, "map_shape": parse_sizes(map_shape, "map_shape"), "label_map": parse_label_map(label_map),
        "class_names": [s.strip() for s in class_names.split(",")] if class_names else None,
        "size": parse_sizes(size, "size"),
    }
    settings = ImportSettings.from_mapping({k: v for k, v in values.items() if v is not None})
    for line in import_events(source, out, settings).lines():
        typer.echo(line)


def _demo_settings() -> type:
    from cohep.run.demo import DemoSettings

    return DemoSettings


#: ``cohep demo`` flags -> the setting each one overrides
DEMO_FLAGS = {name: name for name in ("events", "learners", "rounds", "seed", "workers")}


@settings_command(DEMO_FLAGS, short={"learners": "-n", "rounds": "-r"}, sections=_demo_settings)
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Demo directory."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier demo in --out (refused by default)."),
    *,
    overrides: dict[str, object],
) -> None:
    """Simulate neutrino events and learn from them collaboratively (the `make demo` job)."""
    from cohep.core.files import claim_output, replace_output
    from cohep.run.demo import DATA, DemoSettings, run_demo

    settings = DemoSettings.from_mapping({k: v for k, v in overrides.items() if v is not None})
    claim_output(out, overwrite=overwrite, marker=DATA)
    if overwrite:  # the demo's settings are checked: nothing later depends on the user's input
        replace_output(out, marker=DATA)
    result, files = run_demo(out, settings, announce=typer.echo)
    _print_run_summary(result)
    for name, path in files.items():
        typer.echo(f"{name}: {path}")


@app.command()
def models() -> None:
    """List the registered models (name, framework, description)."""
    from cohep.models import registry

    for name in registry.available():
        entry = registry.get(name)
        typer.echo(f"{name:<12} {entry.framework:<6} {entry.description}")


def _parse_params(items: list[str]) -> dict:
    import json as _json

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CohepError(f"--param must be KEY=VALUE, got {item!r}")
        try:
            out[key] = _json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _set_value(text: str):
    """A ``--set`` value: a TOML value (number, boolean, quoted string, array, inline table), else
    JSON, else the text itself as a string."""
    import json as _json
    import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    try:
        value = _json.loads(text)
    except ValueError:
        return text
    return text if value is None else value


def _parse_sets(items: list[str] | tuple[str, ...], what: str = "SECTION.FIELD") -> dict:
    """``--set section.field=value`` items as nested overrides (the sections validate them)."""
    from cohep.core.settings import dotted

    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CohepError(f"--set must be {what}=VALUE, got {item!r}")
        pairs[key.strip()] = _set_value(value.strip())
    return dotted(pairs)


_SET_HELP = ("SECTION.FIELD=VALUE (a TOML value, else a string): any setting of the experiment file, "
             "applied after --config and before the other flags; repeatable.")
_PRINT_CONFIG_HELP = "Print the effective configuration as TOML and exit without running."


def _toml_key(key: str) -> str:
    import re

    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_value(key)


def _toml_value(value) -> str:
    import json as _json
    import math

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return _json.dumps(str(value))  # a JSON string is a TOML basic string


def toml_text(doc: Mapping) -> str:
    """Nested tables (no None values) as TOML: a table's values, then its sub-tables as ``[a.b]``.
    A small writer because the package has no TOML-writing dependency."""
    lines: list[str] = []

    def table(path: list[str], mapping: Mapping) -> None:
        values = [(k, v) for k, v in mapping.items() if not isinstance(v, Mapping)]
        tables = [(k, v) for k, v in mapping.items() if isinstance(v, Mapping)]
        if path and (values or not tables):
            lines.extend([*([""] if lines else []), f"[{'.'.join(map(_toml_key, path))}]"])
        lines.extend(f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in values)
        for k, v in tables:
            table([*path, str(k)], v)

    table([], doc)
    return "\n".join(lines) + "\n"


def _settings(config: Path | None, flags: dict[str, object], params: list[str] | None = None,
              sets: list[str] | tuple[str, ...] = (), print_config: bool = False, base: Mapping | None = None):
    """The experiment settings: the config file (or ``base``, a config as a manifest records it), then
    each ``--set``, then each flag as an override of its ``section.field``. With ``print_config`` they
    are printed as TOML and the command stops."""
    from cohep.config import experiment as cfgmod
    from cohep.core.settings import dotted, merge

    if flags.get("data.path") is not None and flags.get("data.kind") is None:
        flags = {**flags, "data.kind": "auto"}  # the file given decides its own kind, not the config's
    set_overrides = _parse_sets(sets)
    overrides = merge(set_overrides, dotted({k: (str(v) if isinstance(v, Path) else v) for k, v in flags.items()}))
    if params:
        file_params = cfgmod.load(config, set_overrides).model.params if config is not None or sets else {}
        overrides = merge(overrides, {"model": {"params": {**file_params, **_parse_params(params)}}})
    cfg = cfgmod.load(config, merge(dict(base), overrides) if base is not None else overrides)
    if print_config:
        typer.echo(toml_text(cfgmod.to_toml_dict(cfg)), nl=False)
        raise typer.Exit(0)
    return cfg


#: ``cohep train`` flags -> the setting each one overrides
TRAIN_FLAGS = {
    "data": "data.path", "model": "model.name", "epochs": "central.epochs", "val_fraction": "central.val_fraction",
    "val": "central.val", "batch_size": "train.batch_size", "lr": "train.lr", "optimizer": "train.optimizer",
    "seed": "experiment.seed", "limit": "data.limit", "device": "train.device", "out": "central.out",
}


@settings_command(TRAIN_FLAGS, short={"model": "-m", "batch_size": "-b"})
def train(
    # settings flags declared here for their shape (an argument, paths); their help is still the fields'
    data: Path | None = typer.Option(None, "--data", "-d"),
    config: Path | None = typer.Option(None, "--config", "-c",
                                       help="Experiment TOML (\\[data], \\[model], \\[train], \\[central]); flags override it."),
    param: list[str] = typer.Option([], "--param", "-p", help="Model parameter KEY=VALUE (JSON value), repeatable."),
    val: Path | None = typer.Option(None, "--val"),
    out: Path | None = typer.Option(None, "--out", "-o"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier training's --out (refused by default)."),
    set_: list[str] = typer.Option([], "--set", help=_SET_HELP),
    print_config: bool = typer.Option(False, "--print-config", help=_PRINT_CONFIG_HELP),
    data_file: Path | None = typer.Argument(None, hidden=True),
    *,
    overrides: dict[str, object],
) -> None:
    """Train one model centrally: per-epoch curves, best-epoch checkpoint, Figure 4."""
    from cohep.central.train import train_from_config

    overrides["data.path"] = _data_path(data, data_file, required=False)

    cfg = _settings(config, overrides, param, set_, print_config)

    def show(row: dict) -> None:
        running = row.get("train_accuracy_running")
        extra = f" (running {running:.4f})" if running is not None else ""
        typer.echo(
            f"epoch {row['epoch']:>3}/{cfg.central.epochs}  train acc {row['train_accuracy']:.4f}{extra} "
            f"loss {row['train_loss']:.4f}  |  val acc {row['val_accuracy']:.4f} loss {row['val_loss']:.4f}"
            f"  |  {row['train_images_per_s'] or 0:.1f} events/s{'  *best' if row.get('best') else ''}"
        )

    result = train_from_config(cfg, on_epoch=show, overwrite=overwrite, announce=typer.echo)
    typer.echo(
        f"best epoch {result.best_epoch}: val accuracy {result.best['val_accuracy']:.4f}; "
        f"{result.train_images_per_s:.1f} training events/s; {result.n_parameters:,} parameters"
    )
    typer.echo(f"checkpoint {result.files['checkpoint']}  figure {result.files.get('figure', '-')}")


@app.command()
def evaluate(
    source: Path = typer.Argument(..., help="Checkpoint (checkpoint.json, best.safetensors or its folder) or run directory."),
    data_file: Path | None = typer.Argument(None, hidden=True),
    data: Path | None = typer.Option(None, "--data", "-d", help="HDF5 event file to score on."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the report as JSON here."),
    plot: Path | None = typer.Option(None, "--plot", help="Write the confusion-matrix figure here (PNG)."),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Inference batch size."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    scores: Path | None = typer.Option(None, "--scores", help="Write per-event scores, prediction and truth here "
                                       "(.parquet or .h5)."),
    plots: Path | None = typer.Option(None, "--plots", help="Write ROC, score, efficiency-purity and binned "
                                      "efficiency figures into this folder."),
    vs: list[str] = typer.Option(["nu_energy"], "--vs", help="Truth variable to bin efficiency and purity in "
                                 "(repeatable; default nu_energy)."),
    log: bool = typer.Option(False, "--log", help="Also draw the score distributions on a log scale."),
    balance: str | None = typer.Option(None, "--balance", metavar="A,B",
                                       help="Decide between classes A and B (e.g. 'NC,numu_CC') at the working "
                                            "point that gives them equal efficiency on --balance-on."),
    balance_on: Path | None = typer.Option(None, "--balance-on", metavar="FILE",
                                           help="Your own validation or vote set to fit --balance on (not the "
                                                "scored events)."),
) -> None:
    """Score trained weights on an event file: accuracy, efficiency and purity with intervals, ROC, per-event scores."""
    from cohep.central.evaluation import evaluate as run_evaluation

    report = run_evaluation(source, _data_path(data, data_file), out_json=json_out, plot=plot, batch_size=batch_size,
                            device=device, scores=scores, plots=plots, vs=tuple(vs), log=log,
                            balance=balance, balance_on=balance_on)
    typer.echo(report.text())
    if json_out is not None:
        typer.echo(f"report written to {json_out}")
    if plot is not None:
        typer.echo(f"figure written to {plot}")
    for name, path in report.files.items():
        typer.echo(f"{name} written to {path}")


@app.command()
def export(
    source: Path = typer.Argument(..., help="Checkpoint (checkpoint.json, best.safetensors or its folder) or run directory."),
    onnx: Path | None = typer.Option(None, "--onnx", help="Write an ONNX graph here (torch models; normalisation inside)."),
    torchscript: Path | None = typer.Option(None, "--torchscript", help="Write a TorchScript archive here (torch models)."),
    keras: Path | None = typer.Option(None, "--keras", help="Write the Keras format here (.keras; Keras models)."),
) -> None:
    """Export trained weights for inference without cohep: ONNX or TorchScript (torch), the Keras format (Keras)."""
    from cohep.outputs.export import export as run_export

    for line in run_export(source, onnx=onnx, torchscript=torchscript, keras=keras).lines():
        typer.echo(line)


#: ``cohep run`` flags -> the setting each one overrides
RUN_FLAGS = {
    "mode": "experiment.mode", "learners": "experiment.learners", "rounds": "experiment.rounds",
    "seed": "experiment.seed", "data": "data.path", "data_kind": "data.kind", "split": "data.split",
    "alpha": "data.alpha", "holdout": "data.holdout", "limit": "data.limit", "model": "model.name",
    "epochs": "train.epochs", "batch_size": "train.batch_size", "lr": "train.lr",
    "lr_schedule": "train.lr_schedule", "metric": "vote.metric", "margin": "vote.margin",
    "threshold": "vote.threshold", "rpc": "chain.rpc", "ballots": "chain.ballots", "store": "store.url",
    "device": "train.device", "proposers": "round.proposers", "combine": "round.combine",
    "server_lr": "round.server_lr", "weighting": "round.weighting", "proximal_mu": "train.proximal_mu",
    "epsilon": "privacy.epsilon", "attack": "attack.kind", "malicious": "attack.members",
    "protocol": "experiment.protocol",
}


@settings_command(RUN_FLAGS, short={"learners": "-n", "rounds": "-r", "model": "-m", "data": "-d"})
def run(
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML experiment config."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run directory (default runs/<name>)."),
    no_figure: bool = typer.Option(False, "--no-figure", help="Skip the PNG figure."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace an earlier run directory, weights/ included (refused by default)."),
    set_: list[str] = typer.Option([], "--set", help=_SET_HELP),
    print_config: bool = typer.Option(False, "--print-config", help=_PRINT_CONFIG_HELP),
    resume: Path | None = typer.Option(None, "--resume", help="Continue the interrupted run in this directory "
                                       "(Ctrl-C keeps its finished rounds) to the result an uninterrupted run gives."),
    *,
    overrides: dict[str, object],
) -> None:
    """Run a collaborative (or baseline) experiment; writes records, manifest, figure and report."""
    from cohep.core.errors import RunInterrupted
    from cohep.core.files import claim_output
    from cohep.outputs.rundir import MANIFEST
    from cohep.outputs.report import warnings_for
    from cohep.run.local import resume_experiment, run_experiment

    if resume is not None:
        if out is not None or overwrite:
            raise CohepError("--resume continues the run directory it names: give no --out or --overwrite with it")
        # the run's own config, under a --config file given instead and under every flag and --set given
        given = config is not None or bool(set_) or any(v is not None for v in overrides.values())
        cfg = _settings(config, overrides, sets=set_, print_config=print_config,
                        base=None if config is not None else _recorded_config(resume))
        start = functools.partial(resume_experiment, resume, cfg if given else None)
    else:
        cfg = _settings(config, overrides, sets=set_, print_config=print_config)
        out_dir = claim_output(out or Path("runs") / cfg.experiment.name, overwrite=overwrite, marker=MANIFEST)
        start = functools.partial(run_experiment, cfg, out_dir, replace=overwrite)
    try:
        result = start(figure=not no_figure, announce=typer.echo)
    except RunInterrupted as exc:  # Ctrl-C once rounds were kept: where it stopped, how to resume (exit 130)
        typer.echo(f"cohep: {exc.line}", err=True)
        raise typer.Exit(130) from None
    except KeyboardInterrupt:  # before the run began (reading the data): it made nothing
        typer.echo("cohep: interrupted before the first round; nothing was written", err=True)
        raise typer.Exit(130) from None
    _print_run_summary(result)
    for warning in warnings_for(result):  # also in report.md; stderr so a script's log shows it
        typer.echo(warning, err=True)


def _recorded_config(run_dir: Path) -> dict:
    """The config a run directory's run was started with (``run --resume``)."""
    from cohep.outputs.rundir import MANIFEST, read_manifest

    recorded = read_manifest(run_dir).get("config")
    if not isinstance(recorded, dict):
        raise CohepError(f"{run_dir / MANIFEST}: no config recorded: not resumable")
    return recorded


#: ``cohep deploy`` flags -> the setting each one overrides
DEPLOY_FLAGS = {
    "name": "experiment.name", "rounds": "experiment.rounds", "seed": "experiment.seed", "model": "model.name",
    "threshold": "vote.threshold", "proposal_window": "chain.proposal_window",
    "vote_window": "chain.vote_window", "max_missed": "chain.max_missed", "ballots": "chain.ballots",
}


def _seed_given(config: Path | None, overrides: Mapping[str, object], sets: list[str]) -> bool:
    """Whether the seed comes from the user: --seed, --set experiment.seed=N or the config file."""
    from cohep.core.settings import read_toml

    if overrides.get("experiment.seed") is not None or any(s.split("=", 1)[0].strip() == "experiment.seed" for s in sets):
        return True
    return config is not None and "seed" in (read_toml(config).get("experiment") or {})


@settings_command(DEPLOY_FLAGS, short={"rounds": "-r"})
def deploy(
    # required, except with --print-config (checked in the body, after it)
    data: Path | None = typer.Option(None, "--data",
                                     help="A data file of the experiment's kind: only its image shape and class names are "
                                     "read. Required."),
    member: list[str] = typer.Option([], "--member",
                                     help="ADDRESS or ADDRESS=STORE_URL (where its proposals live); repeat for each member. "
                                     "Required."),
    rpc: str | None = typer.Option(None, "--rpc", help="Ethereum JSON-RPC URL. Required."),
    keystore: Path | None = typer.Option(None, "--keystore",
                                         help="The deployer's encrypted keystore (pays for the deployment). Required."),
    store: str | None = typer.Option(None, "--store", help="Store URL for the initial weights (readable by every member): "
                                     "a folder, s3://bucket/prefix, any fsspec URL; an http:// store is read-only "
                                     "(--public-url). Required."),
    public_url: str | None = typer.Option(None, "--public-url",
                                          help="The URL members read --store's folder at (served by you), e.g. http://host:8701."),
    shared_store: str | None = typer.Option(None, "--shared-store",
                                            help="A store every member may use (default: --public-url, else --store)."),
    out: Path = typer.Option(Path("experiment.json"), "--out", "-o", help="The shared experiment file to write."),
    config: Path | None = typer.Option(None, "--config", "-c",
                                       help="Experiment TOML (\\[experiment], \\[model], \\[train], \\[vote], \\[chain], "
                                       "\\[data] shares)."),
    set_: list[str] = typer.Option([], "--set", help=_SET_HELP),
    print_config: bool = typer.Option(False, "--print-config", help=_PRINT_CONFIG_HELP),
    *,
    overrides: dict[str, object],
) -> None:
    """Deploy an experiment for a list of members on any JSON-RPC chain; writes the shared experiment file."""
    from cohep.run import keys
    from cohep.run.deploy import MemberSpec, deploy as run_deploy

    drawn = not _seed_given(config, overrides, set_)
    if drawn:  # no seed given: draw one, so no two experiments share initial weights, splits and order
        import secrets

        overrides = {**overrides, "experiment.seed": secrets.randbits(32)}
    # the members are the learners: the round's shape and the vote window's check follow their count
    if member:
        overrides = {**overrides, "experiment.learners": len(member)}
    cfg = _settings(config, overrides, sets=set_, print_config=print_config)
    for flag, value in (("--data", data), ("--member", member), ("--rpc", rpc), ("--keystore", keystore),
                        ("--store", store)):
        if not value:
            raise click.UsageError(f"Missing option '{flag}'.", ctx=click.get_current_context())
    assert data is not None and rpc is not None and keystore is not None and store is not None  # for mypy
    key = keys.load(keystore, keys.password(what=f"keystore {keystore}"))
    exp = run_deploy(cfg, data_path=str(data), members=[MemberSpec.parse(m) for m in member], rpc=rpc,
                     deployer_key=key.private_key, store=store, public_url=public_url,
                     shared_store=shared_store or public_url or store, out=out, check_clock=True)
    typer.echo(f"deployed {exp.name!r}: contract {exp.contract} on chain {exp.chain_id}, {len(exp.members)} members, "
               f"model {exp.model.name}; experiment file {out}")
    if drawn:
        typer.echo(f"seed {cfg.experiment.seed} (drawn; recorded in the experiment file; --seed N to choose one)")


@app.command()
def node(
    experiment: Path = typer.Option(..., "--experiment", "-e", help="The shared experiment file (cohep deploy)."),
    keystore: Path = typer.Option(..., "--keystore", help="This member's encrypted keystore."),
    data: Path = typer.Option(..., "--data", help="This member's private data (it never leaves this machine)."),
    rpc: str = typer.Option(..., "--rpc", help="Ethereum JSON-RPC URL."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Folder for this node's records (default runs/node-<address>)."),
    store: str | None = typer.Option(None, "--store",
                                     help="Where to put this node's proposals (default: its store in the experiment)."),
    serve: str | None = typer.Option(None, "--serve", help="HOST:PORT: serve this node's store folder over HTTP, read-only."),
    public_url: str | None = typer.Option(None, "--public-url",
                                          help="URL its proposals are announced under (default: the store's)."),
    poll: float = typer.Option(0.3, "--poll", min=0.01, help="Seconds between looks at the chain."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
) -> None:
    """Take part in a deployed experiment as one autonomous member, until its last round."""
    from cohep.run import keys
    from cohep.run.node import NodeOptions, run_node

    key = keys.load(keystore, keys.password(what=f"keystore {keystore}"))
    opts = NodeOptions(poll_s=poll, store=store, serve=serve, public_url=public_url, quiet=quiet)
    try:
        result = run_node(experiment, key, str(data), rpc, out or Path("runs") / f"node-{key.address[:10]}", opts)
    except CohepError as exc:  # a raw "insufficient funds" from the RPC node, said with the address
        from cohep.ledger.chain import funds_error

        raise funds_error(exc, key.address) or exc from None
    accepted = sum(1 for r in result.records if r.round > 0 and r.accepted)
    typer.echo(f"node {result.address} (member {result.index}): {result.rounds} rounds, {accepted} accepted; "
               f"final weights {result.final_digest[:16]}; records {result.out_dir / 'records.csv'}")


@app.command()
def status(
    run_dir: Path | None = typer.Argument(None, help="A finished run directory (its chain log and records)."),
    experiment: Path | None = typer.Option(None, "--experiment", "-e", help="A deployed experiment's shared file instead."),
    rpc: str | None = typer.Option(None, "--rpc", help="Ethereum JSON-RPC URL (with --experiment)."),
    watch: bool = typer.Option(False, "--watch", "-w",
                               help="Keep the tables live until the last round (without a terminal: one plain line per change)."),
    interval: float = typer.Option(2.0, "--interval", min=0.1, help="Seconds between refreshes with --watch."),
) -> None:
    """Rounds, proposers, votes and outcomes of a deployed experiment or a finished run directory."""
    from cohep.run.experiment_file import Experiment
    from cohep.ledger import Chain, Coordinator
    from cohep.run.status import render_run, show

    if (run_dir is None) == (experiment is None):
        raise CohepError("give a run directory, or --experiment FILE with --rpc URL")
    if run_dir is not None:
        from rich.console import Console

        Console().print(render_run(run_dir))
        return
    if rpc is None:
        raise CohepError("--experiment needs --rpc")
    exp = Experiment.read(experiment)
    coord = Coordinator.at(Chain.connect(rpc, 0), exp.contract)
    show(coord, f"{exp.name}: round {min(coord.round(), exp.config.experiment.rounds)} of "
                f"{exp.config.experiment.rounds}", watch=watch, interval=interval,
         until_round=exp.config.experiment.rounds)


@app.command()
def audit(
    run_dir: Path | None = typer.Argument(None, help="A finished run directory (it keeps its chain's event log)."),
    experiment: Path | None = typer.Option(None, "--experiment", "-e", help="Audit a deployed experiment instead."),
    rpc: str | None = typer.Option(None, "--rpc", help="The chain's JSON-RPC URL (with --experiment)."),
    mirror: list[str] = typer.Option([], "--mirror", help="Another store holding copies of members' blobs (by digest), "
                                     "for blobs no longer served; repeatable."),
) -> None:
    """Replay the contract's rules over the chain's events, re-verify every blob; exit 1 on any mismatch."""
    from cohep.run.audit import audit_chain, audit_run

    if (run_dir is None) == (experiment is None):
        raise CohepError("give a run directory, or --experiment FILE with --rpc URL")
    if experiment is not None and rpc is None:
        raise CohepError("--experiment needs --rpc")
    report = audit_run(run_dir) if run_dir is not None else audit_chain(experiment, rpc, mirror)
    typer.echo(report.text())
    if not report.clean:
        raise typer.Exit(1)


keys_app = typer.Typer(help="Encrypted keystores for members.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("new")
def keys_new(
    out: Path = typer.Option(..., "--out", "-o", help="Keystore file to write (never overwritten)."),
    private_key_env: str | None = typer.Option(None, "--private-key-env",
                                               help="Encrypt the key held in this environment variable instead of a new one."),
) -> None:
    """Create an encrypted keystore (password from $COHEP_KEYSTORE_PASSWORD or a prompt)."""
    import os

    from cohep.run import keys

    secret = keys.password(confirm=True)
    key = None
    if private_key_env:
        key = os.environ.get(private_key_env)
        if not key:
            raise CohepError(f"--private-key-env: ${private_key_env} is not set")
    typer.echo(keys.create(out, secret, private_key=key))


@keys_app.command("address")
def keys_address(keystore: Path = typer.Argument(..., help="Keystore file.")) -> None:
    """Print the address of a keystore (no password needed)."""
    from cohep.run import keys

    typer.echo(keys.address_of(keystore))


@app.command()
def quality(
    run_dir: Path | None = typer.Argument(None, help="A finished colearn run directory."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the measures as JSON here."),
    plot: Path | None = typer.Option(None, "--plot", help="Write per-learner bars with 95% intervals (PNG)."),
    experiment: Path | None = typer.Option(None, "--experiment", "-e", help="A deployed experiment instead (events only)."),
    rpc: str | None = typer.Option(None, "--rpc", help="The chain's JSON-RPC URL (with --experiment)."),
    shapley: bool = typer.Option(False, "--shapley", help="Also retrain coalitions: Shapley values and leave-one-out (slow)."),
    permutations: int = typer.Option(0, "--permutations", min=0,
                                     help="With --shapley: Monte-Carlo permutations (0: exact up to 5 learners)."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="With --shapley: train the coalitions on a Dask "
                                         "cluster (tcp://host:8786, or local:K worker processes); the same values."),
) -> None:
    """Per-learner data-set quality from the recorded rounds (worst first): acceptance, gain, agreement, score offset."""
    import json

    from cohep.studies import quality as q
    from cohep.core.files import atomic_write_text

    if (run_dir is None) == (experiment is None):
        raise CohepError("give a run directory, or --experiment FILE with --rpc URL")
    if experiment is not None and rpc is None:
        raise CohepError("--experiment needs --rpc")
    if shapley and run_dir is None:
        raise CohepError("--shapley needs a run directory (it retrains on the run's data)")
    report = q.from_run(run_dir) if run_dir is not None else q.from_chain(experiment, rpc)
    typer.echo(report.text())
    doc = report.to_dict()
    if scheduler is not None and not shapley:
        raise CohepError("--scheduler needs --shapley (only the retrainings run on a cluster)")
    if shapley:
        from cohep.core.executor import resolve

        ex, close = resolve(scheduler=scheduler)
        try:
            contrib = q.contributions_of_run(run_dir, permutations=permutations or None, executor=ex)
        finally:
            if close:
                ex.close()
        typer.echo(contrib.text())
        doc["contributions"] = contrib.to_dict()
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(doc, indent=2, sort_keys=True) + "\n")
        typer.echo(f"wrote {json_out}")
    if plot is not None:
        typer.echo(f"wrote {q.plot(report, plot)}")


#: ``cohep compete`` flags -> the setting each one overrides
COMPETE_FLAGS = {
    "training": "competition.training", "rounds": "experiment.rounds", "seconds": "experiment.max_seconds",
    "data": "data.path",
}


@settings_command(COMPETE_FLAGS, short={"rounds": "-r"})
def compete(
    config: Path = typer.Option(..., "--config", "-c",
                                help="Experiment TOML with \\[\\[competition.entries]] (name, model, params, owner)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Competition directory (default runs/<name>-competition)."),
    no_figure: bool = typer.Option(False, "--no-figure", help="Skip the heat map."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Train the entries on a Dask cluster "
                                         "(tcp://host:8786, or local:K worker processes); the same leaderboard."),
    set_: list[str] = typer.Option([], "--set", help=_SET_HELP),
    print_config: bool = typer.Option(False, "--print-config", help=_PRINT_CONFIG_HELP),
    *,
    overrides: dict[str, object],
) -> None:
    """Entries compete on one task at an equal budget; every member scores the others' entries on chain."""
    from cohep.core.executor import resolve
    from cohep.studies.competition import run_competition

    cfg = _settings(config, overrides, sets=set_, print_config=print_config)
    ex, close = resolve(scheduler=scheduler) if scheduler is not None else (None, False)
    try:
        board = run_competition(cfg, out or Path("runs") / f"{cfg.experiment.name}-competition", figure=not no_figure,
                                executor=ex)
    finally:
        if close:
            ex.close()
    typer.echo(board.text())
    typer.echo(f"scores recorded on chain {board.chain_id}, contract {board.contract}; "
               f"leaderboard {board.files['json']}")


def _print_run_summary(result) -> None:
    from rich.console import Console

    shares = ", ".join(f"{k} {100 * v:.1f}%" for k, v in result.time_shares().items())
    con = Console()
    con.print(f"[bold]{result.mode}[/bold]: final mean test accuracy [bold]{result.final_accuracy:.4f}[/bold]")
    if result.mode == "colearn":
        con.print(f"accepted proposals per learner: {result.accepted}")
    else:  # a baseline has no proposals judged by others: its learners keep or drop their own training
        con.print(f"rounds each learner kept its own training: {result.accepted}")
    if getattr(result, "privacy", None):
        con.print("epsilon spent per learner: " + ", ".join(f"{p['epsilon_spent']:.2f}/{p['epsilon_budget']:g}"
                                                             for p in result.privacy))
    if result.contract:
        con.print(f"chain id {result.chain_id}, contract {result.contract}")
    con.print(f"time: {shares}")
    con.print(f"run directory: {result.out_dir}")


def _is_usage_error(exc: BaseException) -> bool:
    """Click-style errors (typer's own or click's, depending on the typer version) and aborts."""
    return (hasattr(exc, "format_message") and hasattr(exc, "exit_code")) or type(exc).__name__ == "Abort"


def _usage_line(exc: BaseException) -> str:
    """One line naming the command and the bad option or argument, pointing at --help."""
    if type(exc).__name__ == "Abort":
        return "cohep: aborted"
    ctx = getattr(exc, "ctx", None)
    command = getattr(ctx, "command_path", None) or "cohep"
    message = _once(" ".join(str(exc.format_message()).split()))
    return f"{command}: error: {message} (see '{command} --help')"


def _once(message: str) -> str:
    """The message with a repeated sentence dropped: click and typer both add "Did you mean ...?"."""
    import re

    sentences = re.split(r"(?<=[.?!]) ", message)
    return " ".join(s for i, s in enumerate(sentences) if s not in sentences[:i])


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point. Returns the exit code when given ``argv`` (tests), else exits."""
    try:
        # not standalone: usage errors come back here as exceptions and get the one-line treatment
        rv = app(args=argv, prog_name="cohep", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except CohepError as exc:
        typer.echo(f"cohep: error: {exc}", err=True)
        code = exc.exit_code
    except KeyboardInterrupt:
        typer.echo("cohep: interrupted", err=True)
        code = 130
    except Exception as exc:
        if not _is_usage_error(exc):
            raise
        typer.echo(_usage_line(exc), err=True)
        code = int(getattr(exc, "exit_code", 2))
    if argv is None:
        sys.exit(code)
    return code
