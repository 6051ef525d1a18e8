"""The nodes on ROS 2 Humble's rclpy, which lacks APIs our Jazzy wheels have: each newer API
removed from the class here, the fallback runs (Humble wheels are not on PyPI)."""
import pytest

rclpy = pytest.importorskip('rclpy')
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from embodied_vision.ros_nodes.encoder_node import EncoderNode  # noqa: E402
from embodied_vision.ros_nodes.pair_node import PairNode  # noqa: E402
from embodied_vision.ros_nodes.planner_node import PlannerNode  # noqa: E402
from embodied_vision.ros_nodes.voxel_node import VoxelNode  # noqa: E402


@pytest.fixture
def humble(monkeypatch):
    """rclpy as Humble has it: no post-set parameter callbacks (they came after Humble)."""
    monkeypatch.delattr(Node, 'add_post_set_parameters_callback')


@pytest.mark.parametrize('cls', [EncoderNode, PairNode, PlannerNode, VoxelNode],
                         ids=lambda c: c.__name__)
def test_nodes_construct_without_post_set_callbacks(humble, ros_context, cls):
    node = cls(f'humble_{cls.__name__.lower()}', context=ros_context)
    try:
        assert not hasattr(node, 'add_post_set_parameters_callback')
    finally:
        node.destroy_node()


def test_accepted_values_still_reach_the_after_set_callbacks(humble, ros_context):
    node = EncoderNode('humble_encoder', context=ros_context)
    try:
        result = node.set_parameters([Parameter('diagnostics_period', value=0.5)])[0]
        assert result.successful
        assert node.diagnostics._wall_timer.timer_period_ns == 500_000_000
        refused = node.set_parameters([Parameter('diagnostics_period', value=-1.0)])[0]
        assert not refused.successful
        assert node.diagnostics._wall_timer.timer_period_ns == 500_000_000
    finally:
        node.destroy_node()
