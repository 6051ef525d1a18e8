"""QoS profiles from the Isaac ROS-style string parameters `<prefix>_qos` / `<prefix>_qos_depth`.

Names: `sensor_data`, `reliable`, `best_effort`, `system_default`; depth 0 = keep all.
`qos_specs` gives a node's pair of parameters, `make_qos` the profile they select.
"""
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
    qos_profile_system_default,
)

from embodied_vision.ros_nodes.parameters import ParamSpec

__all__ = ['QOS_CHOICES', 'make_qos', 'qos_specs']

QOS_CHOICES = ('sensor_data', 'reliable', 'best_effort', 'system_default')


def make_qos(name: str, depth: int = 1, transient_local: bool = False) -> QoSProfile:
    """A QoS profile from its string name and a history depth (0 = keep all)."""
    key = str(name).strip().lower()
    if key not in QOS_CHOICES:
        raise ValueError(f'unknown QoS {name!r}; allowed: {", ".join(QOS_CHOICES)}')
    if depth < 0:
        raise ValueError(f'QoS depth must be >= 0 (0 = keep all), got {depth}')
    if key == 'sensor_data':
        reliability = qos_profile_sensor_data.reliability
    elif key == 'system_default':
        reliability = qos_profile_system_default.reliability
    elif key == 'best_effort':
        reliability = ReliabilityPolicy.BEST_EFFORT
    else:
        reliability = ReliabilityPolicy.RELIABLE
    history = HistoryPolicy.KEEP_ALL if depth == 0 else HistoryPolicy.KEEP_LAST
    return QoSProfile(history=history, depth=max(depth, 1), reliability=reliability,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if transient_local
                      else DurabilityPolicy.VOLATILE)


def qos_specs(prefix: str, default: str, depth: int, what: str) -> tuple[ParamSpec, ...]:
    """The `<prefix>_qos` / `<prefix>_qos_depth` parameter pair (Isaac ROS style)."""
    return (ParamSpec(f'{prefix}_qos', default, f'QoS of the {what}', choices=QOS_CHOICES,
                      read_only=True),
            ParamSpec(f'{prefix}_qos_depth', depth,
                      f'history depth of the {what} (0 = keep all)', low=0, high=10000,
                      read_only=True))
