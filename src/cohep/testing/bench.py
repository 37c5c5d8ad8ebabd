"""What every script under bench/ shares: its arguments, where and how it writes, what machine ran it.

Why one harness: the figures in docs/ come from these scripts, and eighteen private copies of the
same argument, atomic write or page writer drift apart until two benchmarks report the same thing
differently. A script builds its command line here (``parser`` and the ``add_*`` arguments) and
exposes it as a module-level ``parser()``, so ``bench/run_all.py`` reads its flags from the parser
itself; it writes its results page with :func:`write_doc` (a whole page, or named sections merged
into the page already there), its tables with :func:`table`, its figures with :func:`save_figure`,
and describes the machine with :func:`machine`. Nothing here changes a figure: it only carries them.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.metadata
import importlib.util
import os
import platform
import re
import shlex
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType

from cohep.core.errors import ConfigError
from cohep.core.files import atomic_write_text
from cohep.core.settings import read_toml

__all__ = [
    "Home", "Machine", "add_device", "add_doc", "add_figure", "add_full", "add_mnist", "add_out", "add_seed",
    "add_seed_count", "add_seed_list", "add_threads", "flags", "load_script", "machine", "merge_sections",
    "overlays", "parser", "pyplot", "save_figure", "seed_list", "table", "write_doc", "write_text",
]

write_text = atomic_write_text  #: a text file written whole or not at all


# -- where a script lives and writes ----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Home:
    """A benchmark script and the checkout around it: the default places of its inputs and outputs."""

    script: Path

    @classmethod
    def of(cls, file: str | os.PathLike) -> Home:
        """The home of the script at ``file`` (pass ``__file__``)."""
        return cls(Path(file).resolve())

    @property
    def name(self) -> str:
        return self.script.stem

    @property
    def root(self) -> Path:
        """The checkout: the folder above bench/."""
        return self.script.parents[1]

    @property
    def docs(self) -> Path:
        """docs/benchmarks/: one results page per benchmark."""
        return self.root / "docs" / "benchmarks"

    @property
    def figures(self) -> Path:
        return self.root / "docs" / "figures"

    @property
    def mnist(self) -> Path:
        """Where the MNIST t10k IDX files sit beside the checkout (only a default: nothing checks it)."""
        return self.root.parent / "shared" / "data" / "mnist"

    @property
    def events(self) -> Path:
        """The paper's 12,000 simulated events, where ``bench/run_all.py`` makes them."""
        return self.root / "data" / "events-12k.h5"

    def doc(self, name: str | None = None) -> Path:
        """The results page of this benchmark (or of ``name``)."""
        return self.docs / f"{name or self.name}.md"

    def command(self, argv: Sequence[str]) -> str:
        """How to rerun this invocation from the checkout, for a results page."""
        return shlex.join(["python", self.script.relative_to(self.root).as_posix(), *argv])


# -- the command line ----------------------------------------------------------------------------

def parser(doc: str | None, *, whole_doc: bool = False) -> argparse.ArgumentParser:
    """A script's parser, described by its docstring's first line (or all of it, laid out as written)."""
    if whole_doc:
        return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    return argparse.ArgumentParser(description=doc.strip().splitlines()[0] if doc else None)


def seed_list(text: str) -> list[int]:
    """``--seeds 0,1,2``: comma-separated non-negative seeds (argparse names the flag on a bad one)."""
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be comma-separated integers, got {text!r}") from None
    if any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"seeds must be >= 0, got {text!r}")
    return seeds


def add_seed(ap: argparse.ArgumentParser, default: int = 0, help: str | None = None) -> None:
    """``--seed N``: the one seed of every run."""
    ap.add_argument("--seed", type=int, default=default, help=help)


def add_seed_count(ap: argparse.ArgumentParser, default: int = 1, *, first: bool = False,
                   help: str = "seeds 0..N-1") -> None:
    """``--seeds N`` (and with ``first``, ``--first-seed F``: seeds F..F+N-1, to split a grid over runs)."""
    ap.add_argument("--seeds", type=int, default=default, help=help)
    if first:
        ap.add_argument("--first-seed", type=int, default=0,
                        help="seeds first-seed .. first-seed + seeds - 1 (to split a long run)")


def add_seed_list(ap: argparse.ArgumentParser, default: str | None = "0", help: str | None = None) -> None:
    """``--seeds 0,1,2``: these seeds (a list of ints, or None when ``default`` is None)."""
    ap.add_argument("--seeds", type=seed_list, default=default, help=help or "comma-separated seeds")


def add_mnist(ap: argparse.ArgumentParser, home: Home, *, flag: str = "--data",
              help: str = "folder with the MNIST t10k IDX files") -> None:
    """The MNIST folder, by default the one beside the checkout (``../shared/data/mnist``)."""
    ap.add_argument(flag, default=str(home.mnist), help=help)


def add_full(ap: argparse.ArgumentParser, help: str) -> None:
    """``--full``: the size the script's docstring names (hours on a CPU)."""
    ap.add_argument("--full", action="store_true", help=help)


def add_out(ap: argparse.ArgumentParser, default, *, type=str, help: str | None = None) -> None:
    """``--out``: the folder (or file) the runs write into."""
    ap.add_argument("--out", type=type, default=default, help=help)


def _page(text: str) -> Path | None:
    return Path(text) if text else None


def add_doc(ap: argparse.ArgumentParser, default: Path, *, optional: bool = False, help: str | None = None) -> None:
    """``--doc``: the results page (a Path; with ``optional``, ``--doc ''`` writes none: None)."""
    ap.add_argument("--doc", type=_page if optional else Path, default=default,
                    help=help or ("results page to write" + ("; '' for none" if optional else "")))


def add_figure(ap: argparse.ArgumentParser, default: Path | None, help: str | None = None) -> None:
    """``--figure``: the figure the results page shows."""
    ap.add_argument("--figure", type=Path, default=default, help=help or "figure to write")


def add_device(ap: argparse.ArgumentParser, default: str = "cpu") -> None:
    """``--device``: the torch device the models run on (cpu, cuda, cuda:1)."""
    ap.add_argument("--device", default=default, help="torch device (cpu, cuda)")


def add_threads(ap: argparse.ArgumentParser, default: int | None, help: str = "torch threads") -> None:
    ap.add_argument("--threads", type=int, default=default, help=help)


def add_data_folder(ap: argparse.ArgumentParser) -> None:
    """``--data``: where a bench keeps its simulated files, so a second run reuses them."""
    ap.add_argument("--data", type=Path, default=None, help="keep or reuse the simulated files in this folder")


def data_folder(given: Path | None) -> tuple[Path, tempfile.TemporaryDirectory | None]:
    """The folder of ``--data`` (made if missing), else a temporary one that lasts while its handle,
    the second value, is alive."""
    tmp = None if given is not None else tempfile.TemporaryDirectory()
    folder = given if given is not None else Path(tmp.name)
    folder.mkdir(parents=True, exist_ok=True)
    return folder, tmp


def load_script(path: str | os.PathLike) -> ModuleType:
    """The script at ``path`` as a module (``bench_<name>``, loaded once), its ``main`` not run.

    How a script reaches another's functions, and ``bench/run_all.py`` and the tests a script's
    parser, wherever they are run from."""
    path = Path(path).resolve()
    name = f"bench_{path.stem}"
    module = sys.modules.get(name)
    if module is not None and Path(getattr(module, "__file__", "")).resolve() == path:
        return module
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: not a Python script")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def flags(path: str | os.PathLike) -> frozenset[str]:
    """Every option string the script at ``path`` parses, from its ``parser()``."""
    module = load_script(path)
    build = getattr(module, "parser", None)
    if build is None:
        raise ConfigError(f"{path}: has no parser() to read its flags from")
    return frozenset(s for action in build()._actions for s in action.option_strings)


def overlays(path: str | os.PathLike) -> dict[str, dict]:
    """Named setting overlays from a TOML file: one table per name, its ``section.field = value``
    changes, to merge over a base experiment (``cohep.config.experiment.merge``)."""
    raw = read_toml(path)
    for name, overlay in raw.items():
        if not isinstance(overlay, dict) or not all(isinstance(v, dict) for v in overlay.values()):
            raise ConfigError(f"{path}: [{name}] must be a table of sections (section.field = value)")
    return raw


# -- tables and figures --------------------------------------------------------------------------

def table(header: Sequence[str], rows: Iterable[Sequence], align: str = "") -> list[str]:
    """A markdown table's lines; ``align`` gives one letter a column, ``l`` or ``r`` (default ``l``)."""
    if any(a not in "lr" for a in align) or len(align) > len(header):
        raise ValueError(f"align takes one of l, r a column, got {align!r} for {len(header)} columns")
    rule = ["---:" if a == "r" else "---" for a in align.ljust(len(header), "l")]
    return ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|",
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)]


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (a benchmark has no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 110) -> Path:
    """Write ``fig`` whole or not at all (its format from the suffix), then close it."""
    from cohep.outputs.plots import save_figure as save

    return save(fig, path, dpi=dpi, formats=None)


# -- the results page ----------------------------------------------------------------------------

def _marks(tag: str) -> tuple[re.Pattern, str]:
    return re.compile(rf"^<!-- {re.escape(tag)}: (.+?) -->$", re.MULTILINE), f"<!-- /{tag} -->"


def _split(text: str, tag: str) -> list:
    """The page as free text (str) and sections ([name, body]). A section runs from its mark to its
    end mark; one with no end mark (pages written before end marks) to the next mark."""
    start, end = _marks(tag)
    parts: list = []
    at = 0
    found = list(start.finditer(text))
    for m, nxt in zip(found, found[1:] + [None]):
        parts.append(text[at:m.start()])
        stop = nxt.start() if nxt else len(text)
        close = text.find(end, m.end(), stop)
        if close >= 0:
            parts.append([m.group(1), text[m.end():close].strip("\n")])
            at = close + len(end)
        else:
            chunk = text[m.end():stop]
            parts.append([m.group(1), chunk.strip("\n")])
            at = m.end() + len(chunk.rstrip("\n"))
    parts.append(text[at:])
    return parts


def merge_sections(old: str, sections: Mapping[str, str], *, head: str = "", tag: str = "section",
                   keep_head: bool = False) -> str:
    """``old`` with each of ``sections`` in place of its namesake (between ``<!-- tag: name -->`` and
    ``<!-- /tag -->``) and the new ones after the last section; the text around them is kept.
    ``head`` replaces the text before the first section (with ``keep_head``, only on a new page)."""
    end = _marks(tag)[1]
    for name in sections:
        if "\n" in name or "-->" in name or not name.strip():
            raise ValueError(f"a section name must be one line without '-->', got {name!r}")
    parts = _split(old, tag) if old.strip() else [head.rstrip("\n")]
    if not keep_head or not old.strip():
        parts[0] = head.rstrip("\n") + "\n\n" if len(parts) > 1 else head.rstrip("\n")
    index = {p[0]: p for p in parts if isinstance(p, list)}
    for name, body in sections.items():
        if name in index:
            index[name][1] = body.strip("\n")
            continue
        last = max((i for i, p in enumerate(parts) if isinstance(p, list)), default=None)
        section = [name, body.strip("\n")]
        if last is None:
            parts[-1] = parts[-1].rstrip("\n") + "\n\n"
            parts += [section, "\n"]
        else:
            parts[last + 1:last + 1] = ["\n\n", section]
        index[name] = section
    return "".join(p if isinstance(p, str) else f"<!-- {tag}: {p[0]} -->\n{p[1]}\n{end}" for p in parts)


def write_doc(path: str | os.PathLike, page: str | Mapping[str, str], *, head: str = "", tag: str = "section",
              keep_head: bool = False) -> Path:
    """Write a results page whole or not at all: ``page`` itself, or named sections merged into the
    page already at ``path`` (:func:`merge_sections`: a rerun replaces only the sections it made)."""
    path = Path(path)
    if not isinstance(page, str):
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        page = merge_sections(old, page, head=head, tag=tag, keep_head=keep_head)
    atomic_write_text(path, page)
    return path


# -- the machine ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Machine:
    """What ran a benchmark, as the machine reports it: timings mean little without it."""

    cpu: str
    cores: int
    memory_gib: float
    python: str
    numpy: str
    torch: str
    gpu: str  #: the CUDA devices torch sees, or "no GPU"

    def __str__(self) -> str:
        return (f"{self.cpu}, {self.cores} cores, {self.memory_gib:.0f} GiB, Python {self.python}, "
                f"numpy {self.numpy}, torch {self.torch}, {self.gpu}")


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    return platform.processor() or platform.machine() or "unknown CPU"


def _memory_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return float("nan")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _gpus() -> str:
    try:
        import torch
    except ImportError:
        return "no GPU"
    if not torch.cuda.is_available():
        return "no GPU"
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return ", ".join(f"{names.count(n)} x {n}" for n in dict.fromkeys(names))


def machine() -> Machine:
    """This machine: CPU model, cores, memory, the Python, numpy and torch versions, the GPUs."""
    return Machine(_cpu_model(), os.cpu_count() or 1, _memory_gib(), platform.python_version(),
                   _version("numpy"), _version("torch"), _gpus())


def load_average() -> float:
    """The 1-minute load average (NaN where the system has none): how shared the machine was."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")
