"""Frozen-dataclass configs that round-trip through JSON, strictly.

A config is the only argument of a model's constructor and is saved as `config.json`
beside the weights. Loading is strict: an unknown key, a missing required key or a
wrong `kind` is an error, so a config never silently means something else.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from kinema.errors import KinemaError

C = TypeVar("C", bound="Config")


class ConfigError(KinemaError):
    """A config file or dict that does not describe a valid config."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Base for every config. Subclasses are `@dataclass(frozen=True)` and set `kind`.

    `kind` names the component family in the JSON (e.g. "dit"), `version` lets a later
    kinema read older files. Fields may be ints, floats, strs, bools, None, tuples or
    nested Configs.
    """

    kind: ClassVar[str] = "config"
    version: ClassVar[int] = 1

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "version": self.version}
        for f in dataclasses.fields(self):
            out[f.name] = _to_jsonable(getattr(self, f.name))
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        data = dict(data)
        kind = data.pop("kind", cls.kind)
        if kind != cls.kind:
            raise ConfigError(f"config is of kind {kind!r}, expected {cls.kind!r}")
        version = data.pop("version", cls.version)
        if not isinstance(version, int) or version > cls.version:
            raise ConfigError(
                f"{cls.kind} config version {version!r} is newer than this kinema reads ({cls.version})"
            )
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(f"{cls.kind} config: unknown key(s) {', '.join(unknown)}")
        hints = typing.get_type_hints(cls)
        kwargs = {name: _from_jsonable(hints[name], value, f"{cls.kind}.{name}") for name, value in data.items()}
        try:
            return cls(**kwargs)
        except TypeError as e:
            raise ConfigError(f"{cls.kind} config: {e}") from None

    @classmethod
    def from_json(cls: type[C], text: str) -> C:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{cls.kind} config is not valid JSON: {e}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        return cls.from_json(read_config_text(path))

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)


def read_config_text(path: str | Path) -> str:
    """A config file's text; a missing or unreadable file is a one-line ConfigError."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config {path}: {e}") from None


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_jsonable(v) for k, v in value.items()}
    return value


def _from_jsonable(tp: Any, value: Any, where: str) -> Any:
    """Convert JSON `value` into type `tp`, checking it as it goes."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _from_jsonable(arg, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_jsonable(args[0], v, where) for v in value)
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_from_jsonable(a, v, where) for a, v in zip(args, value))
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if isinstance(tp, type) and issubclass(tp, Config):
        return tp.from_dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if tp is Any:
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported config field type {tp!r}")
