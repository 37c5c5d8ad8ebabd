"""One settings layer for every section of every command: declare fields once, validate once.

A section is a frozen dataclass that derives from :class:`Section`. Its fields' annotations are the
schema: ``int``, ``float``, ``str``, ``bool``, ``X | None``, ``Literal[...]`` (a closed set of
choices), ``tuple[...]``, ``dict``, a nested section, or :data:`Share` (a fraction or a count).
Bounds and the help text go in :func:`setting`. Construction, whether from a TOML table, a JSON
manifest, CLI flags or Python, coerces and checks every field and then runs the section's own
cross-field ``check``; every error is one :class:`~cohep.core.errors.ConfigError` line that names
``section.field``. :func:`describe` tells the command line what a field is (help, default, choices),
so a flag's help is the field's.

Why one layer: a config file, the CLI and the library used to parse and validate the same values in
different places with different defaults; now a value means the same thing wherever it comes from.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Annotated, ClassVar, Literal
from collections.abc import Mapping

from cohep.core.errors import ConfigError

_SHARE = "fraction-or-count"
#: A share of a collection: a fraction in [0, 1) or a whole count >= 1 (``0.2`` or ``2000``).
Share = Annotated[float, _SHARE]


def setting(default: Any = dataclasses.MISSING, *, ge=None, gt=None, le=None, lt=None, factory=None,
            help: str | None = None) -> Any:
    """A field with bounds (checked on construction) and a help text (shown by the CLI)."""
    meta = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt), ("help", help)) if v is not None}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class Section:
    """Mixin for a frozen settings dataclass: coerce and check on construction.

    Subclasses set ``section`` (the name used in error messages and config files) and may define
    ``check(self)`` for rules that involve several fields.
    """

    section: ClassVar[str] = "settings"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            where = join(self.section, f.name)
            value = coerce(getattr(self, f.name), _hints(type(self))[f.name], where)
            _check_bounds(value, f.metadata, where)
            object.__setattr__(self, f.name, value)
        self.check()

    def check(self) -> None:
        """Cross-field rules; raise ConfigError naming ``section.field``."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_mapping(cls, values: Any, *, base: "Section | None" = None, where: str | None = None):
        """Build from a mapping (a TOML table, parsed JSON); keys override ``base`` (default: defaults)."""
        return from_mapping(cls, values, base=base, where=where)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def join(where: str, name: str) -> str:
    """``section.field``; a file-level section (``section = ""``) names its fields bare."""
    return f"{where}.{name}" if where else name


def _check_bounds(value: Any, meta: Mapping, where: str) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number, got {value!r}")
    for key, op, text in (("ge", float.__ge__, ">="), ("gt", float.__gt__, ">"),
                          ("le", float.__le__, "<="), ("lt", float.__lt__, "<")):
        if key in meta and not op(float(value), float(meta[key])):
            raise ConfigError(f"{where} must be {text} {meta[key]}, got {value!r}")


def _kind(value: Any) -> str:
    return "a table" if isinstance(value, dict) else "a list" if isinstance(value, (list, tuple)) else repr(value)


def coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` converted to the annotated type ``hint``, or a ConfigError naming ``where``."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *extra = typing.get_args(hint)
        if _SHARE in extra:
            return _share(value, where)
        return coerce(value, base, where)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None:
            if type(None) in options:
                return None
            raise ConfigError(f"{where} is required")
        options = [o for o in options if o is not type(None)]
        for option in options:  # an exact match first: 2000 stays an int in ``float | int``
            if isinstance(option, type) and type(value) is option:
                return value
        errors = []
        for option in options:
            try:
                return coerce(value, option, where)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices or isinstance(value, bool):
            raise ConfigError(f"{where} must be one of {', '.join(map(str, choices))}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {_kind(value)}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where} must have {len(args)} values, got {len(value)}")
        return tuple(coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, got {_kind(value)}")
        return dict(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint) and issubclass(hint, Section):
        if isinstance(value, hint):
            return value
        return from_mapping(hint, value, where=where)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {_kind(value)}")
        return value
    if hint is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {_kind(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {_kind(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {_kind(value)}")
        return value
    if value is None:
        raise ConfigError(f"{where} is required")
    return value


def _share(value: Any, where: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where} must be a fraction in [0, 1) or a count >= 1, got {_kind(value)}")
    if isinstance(value, float) and value >= 1:
        if not value.is_integer():
            raise ConfigError(f"{where} must be a fraction in [0, 1) or a whole count >= 1, got {value!r}")
        return int(value)
    return value


def share_count(share: float | int, total: int, where: str) -> int:
    """How many of ``total`` items a :data:`Share` means (a fraction is rounded to the nearest item)."""
    value = _share(share, where)
    return int(round(value * total)) if isinstance(value, float) else int(value)


def from_mapping(cls: type, values: Any, *, base: Section | None = None, where: str | None = None):
    """Build section ``cls`` from a mapping; unknown keys and wrong types are one-line errors."""
    where = cls.section if where is None else where
    if not isinstance(values, Mapping):
        raise ConfigError(f"[{where}] must be a table, got {_kind(values)}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(f"unknown field {join(where, key)} (known: {', '.join(known)})")
    current = base if base is not None else None
    kwargs = {}
    for key, value in values.items():
        hint = _hints(cls)[key]
        nested = hint if isinstance(hint, type) and dataclasses.is_dataclass(hint) else None
        if nested is not None and isinstance(value, Mapping) and current is not None:
            kwargs[key] = from_mapping(nested, value, base=getattr(current, key), where=join(where, key))
        else:
            kwargs[key] = coerce(value, hint, join(where, key))
    try:
        return dataclasses.replace(current, **kwargs) if current is not None else cls(**kwargs)
    except ConfigError as exc:
        message = str(exc)
        if where and where != cls.section and cls.section and message.startswith(f"{cls.section}."):
            message = where + message[len(cls.section):]  # name nested sections by their full path
        raise ConfigError(message) from None


def merge(base: dict, override: dict) -> dict:
    """Deep-merge two nested mappings; ``override`` wins; tables named ``params`` are replaced whole."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "params":
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_toml(path: str | Path) -> dict:
    """A TOML file as a dict; a missing, unreadable or malformed file is one line naming it."""
    p = Path(path)
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None


def dotted(overrides: Mapping[str, Any]) -> dict:
    """``{"train.lr": 0.1, "experiment.seed": 2}`` -> nested ``{"train": {"lr": 0.1}, ...}`` (None skipped).

    This is how CLI flags become settings: each flag names its ``section.field``.
    """
    out: dict = {}
    for key, value in overrides.items():
        if value is None:
            continue
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def help_of(cls: type, name: str) -> str:
    """The help text a section field declares (for CLI option help)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.metadata.get("help", "")
    raise KeyError(name)


@dataclasses.dataclass(frozen=True)
class FieldDoc:
    """What a user is told about one field, and the type one value of it takes on a command line."""

    help: str
    default: Any  #: the section's default; None where it has none or builds it with a factory
    kind: type | None  #: int, float, str or bool; None for a list or a table
    choices: tuple = ()  #: the closed set a ``Literal`` allows; empty: any value of ``kind``


def describe(cls: type, path: str) -> FieldDoc:
    """The field a dotted ``path`` names under section ``cls`` (``"train.lr"`` under the experiment
    config), described for a command line; a KeyError names a path that is not a field."""
    *parents, name = path.split(".")
    for part in parents:
        cls = _hints(cls).get(part)
        if not (isinstance(cls, type) and issubclass(cls, Section)):
            raise KeyError(path)
    field = next((f for f in dataclasses.fields(cls) if f.name == name), None)
    if field is None:
        raise KeyError(path)
    hint = _hints(cls)[name]
    default = None if field.default is dataclasses.MISSING else field.default
    return FieldDoc(help_of(cls, name), default, _one_value(hint), _choices(hint))


def _one_value(hint: Any) -> type | None:
    """The scalar type of one value of ``hint`` (a union's first scalar, a Literal's values' type), if any."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        return _one_value(typing.get_args(hint)[0])
    if origin in (typing.Union, types.UnionType):
        return next(filter(None, map(_one_value, typing.get_args(hint))), None)
    if origin is Literal:
        kinds = {type(v) for v in typing.get_args(hint)}
        return kinds.pop() if len(kinds) == 1 else None
    return hint if hint in (int, float, str, bool) else None


def _choices(hint: Any) -> tuple:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return typing.get_args(hint)
    if origin in (Annotated, typing.Union, types.UnionType):
        return next((c for c in map(_choices, typing.get_args(hint)) if c), ())
    return ()
