"""A node's parameter table: `ParamSpec` rows declared with descriptors and checked on set.

Each `ParamSpec` is declared with a `ParameterDescriptor` (type, description, range,
`read_only` for engine-affecting ones: they can be set at start-up from a params file or
`--ros-args -p`, never afterwards); `declare_parameters` registers the on-set check first, so
start-up overrides are checked too, and a rejected value gets a reason that names the allowed
values. The table is plain data, so launch-file tests read the declared names without a ROS
graph.
"""
from collections.abc import Callable
from dataclasses import dataclass

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import InvalidParameterValueException, ParameterException

__all__ = ['NodeParameterError', 'ParamSpec', 'declare_parameters']


class NodeParameterError(InvalidParameterValueException):
    """A start-up value refused at declaration: one line naming the parameter, the value
    and what is allowed (rclpy's own message folds the reason into a longer sentence)."""

    def __init__(self, name: str, reason: str):
        Exception.__init__(self, f'invalid parameter {name}: {reason}')
        self.name, self.reason = name, reason


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter.

    Args:
        name: parameter name.
        default: typed default (bool, int, float, str or a non-empty list of str/float).
        description: shown by `ros2 param describe`.
        choices: allowed values (strings), checked by the on-set callback.
        low, high: inclusive numeric range (descriptor range + on-set check).
        read_only: settable only at start-up (engine-affecting parameters).
        constraints: free-text `additional_constraints`.
    """

    name: str
    default: object
    description: str
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    read_only: bool = False
    constraints: str = ''

    def descriptor(self) -> ParameterDescriptor:
        text = self.constraints
        if self.choices:
            text = (text + '; ' if text else '') + 'one of: ' + ', '.join(map(str, self.choices))
        desc = ParameterDescriptor(name=self.name, description=self.description,
                                   additional_constraints=text, read_only=self.read_only)
        if self.low is not None and self.high is not None:
            if isinstance(self.default, bool):
                pass
            elif isinstance(self.default, int):
                desc.integer_range = [IntegerRange(from_value=int(self.low),
                                                   to_value=int(self.high), step=0)]
            elif isinstance(self.default, float):
                desc.floating_point_range = [FloatingPointRange(
                    from_value=float(self.low), to_value=float(self.high), step=0.0)]
        return desc

    def check(self, value) -> str:
        """'' when `value` is allowed, else the reason (naming the allowed values)."""
        if self.choices:
            values = value if isinstance(value, (list, tuple)) else [value]
            bad = [v for v in values if v not in self.choices]
            if bad:
                return (f'{self.name}={value!r} is not allowed; allowed values: '
                        f'{", ".join(map(str, self.choices))}')
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if (self.low is not None and value < self.low) or \
                    (self.high is not None and value > self.high):
                return f'{self.name}={value!r} is outside the range [{self.low}, {self.high}]'
        return ''


def declare_parameters(node, specs: dict[str, ParamSpec],
                       validate: Callable[[str, object], str],
                       accepted: list | None = None) -> None:
    """Declare every spec on `node` behind an on-set check: the spec's own (`check`), then
    `validate(name, value) -> ''` or the reason, for checks beyond the table; the callbacks
    in `accepted` get the parameters the check let through."""

    rejected: list[str] = []

    def on_set(params) -> SetParametersResult:
        for p in params:
            spec = specs.get(p.name)
            reason = spec.check(p.value) if spec else ''
            reason = reason or validate(p.name, p.value)
            if reason:
                node.get_logger().warning(f'rejected parameter: {reason}')
                rejected.append(reason)
                return SetParametersResult(successful=False, reason=reason)
        for callback in accepted or ():
            callback(params)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    for spec in specs.values():
        rejected.clear()
        try:
            node.declare_parameter(spec.name, spec.default, spec.descriptor())
        except ParameterException as err:  # a start-up override refused
            # by our check (its reason), or by rclpy's descriptor range before it
            override = getattr(node, '_parameter_overrides', {}).get(spec.name)
            reason = rejected[-1] if rejected else \
                (override is not None and spec.check(override.value)) or str(err)
            raise NodeParameterError(spec.name, reason) from None
