"""`PolicyConfig`: the dataclass base of every policy config, with one JSON serialisation.

LeRobot's `PreTrainedConfig` pattern: a subclass is a dataclass that names its policy in the
class attribute `type` and validates its fields in `__post_init__`. `to_dict` gives the JSON
object saved as `config.json` (`{'type': ..., field: value, ...}`: tuples as lists, nested
dataclasses as objects); `from_dict` reads it back through the field types, refusing another
policy's type and unknown fields by name.
"""
from collections.abc import Mapping
import dataclasses
import types
import typing
from typing import Any, ClassVar, TypeVar

__all__ = ['PolicyConfig']

_Config = TypeVar('_Config', bound='PolicyConfig')


@dataclasses.dataclass
class PolicyConfig:
    """Base of the policy configs; subclasses set `type` to their policy's name."""

    #: The policy name written as `type` in config.json (`'bc_mlp'`, `'l4s_bc'`, `'mbs'`).
    type: ClassVar[str] = ''

    def to_dict(self) -> dict:
        """`{'type': ..., <field>: <JSON value>, ...}`, every field in declaration order."""
        return {'type': self.type, **_fields_to_json(self)}

    @classmethod
    def from_dict(cls: 'type[_Config]', data: Mapping) -> _Config:
        """The config saved by `to_dict`; ValueError for another type or an unknown field."""
        if not isinstance(data, Mapping):
            raise TypeError(f'{cls.__name__}.from_dict takes a mapping, got '
                            f'{type(data).__name__}')
        data = dict(data)
        kind = data.pop('type', cls.type)
        if kind != cls.type:
            raise ValueError(f'config type is {kind!r}, expected {cls.type!r} '
                             f'({cls.__name__})')
        return _dataclass_from_json(cls, data, cls.__name__)


def _fields_to_json(instance) -> dict:
    return {f.name: _to_json(getattr(instance, f.name)) for f in dataclasses.fields(instance)}


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return value.to_dict() if isinstance(value, PolicyConfig) else _fields_to_json(value)
    if isinstance(value, (tuple, list)):
        return [_to_json(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _to_json(item) for key, item in value.items()}
    return value


def _dataclass_from_json(cls: type, data: Mapping, where: str):
    """`cls(**data)` with every value converted to its field's type; unknown keys refused."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f'unknown {where} fields {unknown}; known: {sorted(fields)}')
    hints = typing.get_type_hints(cls)
    return cls(**{name: _from_json(value, hints[name], f'{where}.{name}')
                  for name, value in data.items()})


def _from_json(value: Any, hint: Any, where: str) -> Any:
    """`value` (parsed JSON) as the type `hint` describes: tuples, nested dataclasses, unions."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [arg for arg in args if arg is not type(None)]
        return _from_json(value, options[0], where) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, Mapping):
            raise ValueError(f'{where} must be an object of {hint.__name__} fields, got '
                             f'{value!r}')
        if issubclass(hint, PolicyConfig):
            return hint.from_dict(value)
        return _dataclass_from_json(hint, value, where)
    if origin is tuple and isinstance(value, (list, tuple)):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_json(item, args[0], where) for item in value)
        if args and len(args) != len(value):
            raise ValueError(f'{where} must hold {len(args)} values, got {list(value)}')
        return tuple(_from_json(item, arg, where) for item, arg in
                     zip(value, args or [Any] * len(value)))
    if origin is list and isinstance(value, (list, tuple)):
        return [_from_json(item, args[0] if args else Any, where) for item in value]
    return value
