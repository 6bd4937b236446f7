"""Typed options: values from YAML, JSON or Python checked and converted by a dataclass's field types.

PyYAML reads `2e-5` as a string (YAML 1.1 floats need a dot) and a config may hold `lora_r: '8'`; left
as they are, such values fail deep inside torch after a model has been loaded. Here every value is
converted to its field's type when the config is built (`2e-5` -> 2e-05, `'8'` -> 8), and a value that
cannot be (`num_train_epochs: three`) or a key the dataclass does not have is an error naming the key
(and the file, through `from_mapping`). A `Literal[...]` field takes only its listed values: the type is the
check, and the command line shows the same list in --help.

`Options` is the base of every option dataclass (a verb's config and the option groups it inherits, in TRL's
manner): building one converts every field, then runs each class's own `check` once, base classes first, so a
group shared by several verbs is declared and checked in one place.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Mapping


class ConfigError(ValueError):
    """A config value of the wrong type, or an unknown key; the message names the key (and file)."""


class ChoiceError(ValueError):
    """A value outside a Literal's choices; reads after the key's name ("dtype must be one of ...")."""


def _named(name: str, err: ValueError) -> str:
    return f"{name} {err}" if isinstance(err, ChoiceError) else f"{name}: {err}"


def convert(value: Any, annotation: Any) -> Any:
    """`value` as the type `annotation` describes (bool, int, float, str, X | None, list[X], dict[K, V])."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin is typing.Literal:
        return _choice(value, args)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        problems = []
        for option in (a for a in args if a is not type(None)):
            try:
                return convert(value, option)
            except (TypeError, ValueError) as err:
                problems.append(str(err))
        raise ValueError(" or ".join(problems))
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise ValueError(f"expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ValueError(f"expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())  # "2e-5", "1e1", "inf"
            except ValueError:
                pass
        raise ValueError(f"expected a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"expected a string, got {value!r}")
    if annotation is list or origin is list:
        items = list(value) if isinstance(value, (list, tuple)) else [value]  # a lone value is a list of one
        if not args:
            return items
        converted = []
        for i, item in enumerate(items):
            try:
                converted.append(convert(item, args[0]))
            except ValueError as err:
                raise ValueError(f"item {i}: {err}") from None
        return converted
    if annotation is dict or origin is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"expected a mapping, got {value!r}")
        if not args:
            return dict(value)
        return {convert(k, args[0]): convert(v, args[1]) for k, v in value.items()}
    return value


def _choice(value: Any, choices: tuple) -> Any:
    """`value` when it is one of `choices` (a Literal's values), converted to their type ("1" -> 1 for ints)."""
    for choice in choices:
        try:
            if convert(value, type(choice)) == choice:
                return choice
        except ValueError:
            continue
    raise ChoiceError(f"must be one of {', '.join(map(str, choices))}, not {value!r}")


def choices(annotation: Any) -> tuple:
    """The values a `Literal[...]` annotation allows (what library functions check their arguments against)."""
    return typing.get_args(annotation)


def check_choice(name: str, value: Any, annotation: Any) -> None:
    """ConfigError unless `value` is one of the Literal `annotation`'s values: for arguments of library functions."""
    try:
        _choice(value, choices(annotation))
    except ValueError as err:
        raise ConfigError(_named(name, err)) from None


def _require_list_if_ambiguous(f: dataclasses.Field, value: Any) -> None:
    """A field marked `list_only` takes no lone value: `seeds: 3` may mean seed 3 or three seeds, so say which."""
    hint = f.metadata.get("list_only")
    if hint and not isinstance(value, (list, tuple)):
        raise ConfigError(f"{f.name}: expected a list, got {value!r} ({hint})")


def coerce_fields(instance) -> None:
    """Convert every field of a dataclass instance to its annotated type, in place (call in __post_init__)."""
    hints = typing.get_type_hints(type(instance))
    for f in dataclasses.fields(instance):
        _require_list_if_ambiguous(f, getattr(instance, f.name))
        try:
            value = convert(getattr(instance, f.name), hints[f.name])
        except ValueError as err:
            raise ConfigError(_named(f.name, err)) from None
        object.__setattr__(instance, f.name, value)


def check_options(cls, options: Mapping, where: str, exclude: tuple[str, ...] = ()) -> dict:
    """A partial set of `cls`'s options (e.g. the `train:` section of an experiment), converted by type."""
    if not isinstance(options, Mapping):
        raise ConfigError(f"{where}: expected a mapping of options, got {type(options).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    known = sorted(name for name in fields if name not in exclude)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {unknown}; known: {known}")
    converted = {}
    for key, value in options.items():
        try:
            _require_list_if_ambiguous(fields[key], value)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
        try:
            converted[key] = convert(value, hints[key])
        except ValueError as err:
            raise ConfigError(f"{where}: {_named(key, err)}") from None
    return converted


def from_mapping(cls, raw: Any, where: str):
    """Build dataclass `cls` from a mapping read from file `where`; every error names the file."""
    options = check_options(cls, raw, where)
    try:
        return cls(**options)
    except TypeError as err:  # a required option is missing
        raise ConfigError(f"{where}: {err}") from None
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from err


def require(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless `condition`: the range checks of __post_init__ methods."""
    if not condition:
        raise ConfigError(message)


def require_path_name(name: Any, what: str) -> None:
    """A name that becomes one part of a path (a run, a study mode): never a separator, `.`/`..` or hidden."""
    require(isinstance(name, str) and bool(name) and not name.startswith(".") and "/" not in name
            and "\\" not in name and "\0" not in name,
            f"{what} {name!r} becomes a directory name: it must be a plain name (no '/', '\\', leading '.' or NUL)")


def require_suffix(option: str, path: str, suffixes: tuple[str, ...], what: str) -> None:
    """Refuse an output path whose extension the writer would not honour (e.g. a .jsonl that becomes a directory)."""
    require(Path(path).suffix in suffixes, f"--{option} {path}: must be {what}")


def require_limit(name: str, value: int | None) -> None:
    """An example limit: unset (all) or at least 1."""
    require(value is None or value >= 1, f"{name} must be at least 1 (or unset), not {value}")


class Options:
    """Base of option dataclasses: fields converted by type on construction, then each class's `check` run once.

    A class declares the checks of its own fields in a method named `check`; a verb's config inherits its
    option groups (and their checks) and adds its own. Base classes are checked first, so a verb's check can
    rely on its groups' values being valid.
    """

    def __post_init__(self) -> None:
        coerce_fields(self)
        for cls in reversed(type(self).__mro__):
            check = cls.__dict__.get("check")
            if check is not None:
                check(self)


@dataclasses.dataclass(kw_only=True)
class ProgressOption(Options):
    progress: bool = dataclasses.field(default=True, metadata={"help": "Show progress bars."})


def is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
