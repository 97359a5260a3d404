"""Settings dataclasses to and from command lines and JSON, for any frozen dataclass whose
fields carry type annotations (``config.Config``, ``config.MineConfig``): argparse flags
that default to 'not given', the flags a user gave, a dict read back from a run's
config.json, and a check that every field holds its annotated type. ``config.py`` says
what the settings are; this module only how they travel."""
from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from dataclasses import fields


class ConfigError(ValueError):
    """A setting is invalid; the message names it and says what to do."""


class Settings:
    """What every settings dataclass offers: frozen copies, and JSON."""

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def bad(name: str, why: str):
    raise ConfigError(f"config: --{name.replace('_', '-')} {why}")


def type_ok(value, tp) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:
        inner = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        if not isinstance(value, tuple):
            return False
        if inner is None:
            return len(value) == len(args) and all(type_ok(v, a) for v, a in zip(value, args))
        return all(type_ok(v, inner) for v in value)
    if origin in (typing.Union, types.UnionType):
        return any(type_ok(value, a) for a in args)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, tp)


def check_types(cfg) -> None:
    """Every field has its annotated type: a value edited into config.py (batch_size=16.5,
    checkpoint_interval=2.5) is named here, not failed on deep in numpy or accepted."""
    hints = typing.get_type_hints(type(cfg))
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if not type_ok(value, hints[f.name]):
            expected = str(hints[f.name]).replace("typing.", "").replace("<class '", "").replace("'>", "")
            bad(f.name, f"is {value!r} ({type(value).__name__}): expected {expected}; fix it in config.py "
                         f"or on the command line")


def field_parser(tp):
    """(argparse type, nargs) for a dataclass field annotation."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is tuple:
        inner = args[0]
        return inner, ("+" if len(args) == 2 and args[1] is Ellipsis else len(args))
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)][0]
        return inner, None
    return tp, None


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls, helps: dict, aliases: dict | None = None,
                            title: str = "settings") -> None:
    """A flag ``--field-name`` for every field of the settings dataclass ``cls``,
    defaulting to 'not given' (None) so that presets and saved configs can fill it."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(title)
    for f in fields(cls):
        tp, nargs = field_parser(hints[f.name])
        names = ["--" + f.name.replace("_", "-")] + (aliases or {}).get(f.name, [])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
        text = (helps[f.name] + (f" (default: {shown})" if default is not None else "")).replace("%", "%%")
        if tp is bool:
            group.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction,
                               default=None, help=text)
        else:
            group.add_argument(*names, dest=f.name, type=tp, nargs=nargs, default=None,
                               metavar=f.name.upper(), help=text)


def given_settings(args: argparse.Namespace, cls) -> dict:
    """The settings of ``cls`` given on the command line (lists as tuples)."""
    given = {f.name: getattr(args, f.name) for f in fields(cls) if getattr(args, f.name, None) is not None}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}


def settings_from_dict(cls, values: dict):
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"config: unknown setting(s) {', '.join(unknown)} for {cls.__name__}; "
                          f"valid ones are listed by --help")
    hints = typing.get_type_hints(cls)
    clean = {}
    for k, v in values.items():
        tp, nargs = field_parser(hints[k])
        try:
            if nargs is not None:
                clean[k] = tuple(tp(x) for x in v)
            elif v is None:
                clean[k] = None
            elif tp is bool:
                if not isinstance(v, bool):
                    raise TypeError
                clean[k] = v
            else:
                clean[k] = tp(v)
        except (TypeError, ValueError):
            raise ConfigError(f"config: setting {k} has value {v!r} of the wrong type: expected {hints[k]}") from None
    return cls(**clean)
