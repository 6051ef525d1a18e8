"""Sim + goal-image planner: `ros2 launch embodied_vision planner.launch.py policy_path:=DIR`.

Two lifecycle nodes in separate processes with one parameter file (default
`launch/config/planner.yaml`): `sim_node` renders the tabletop scene from the `wrist` (tool)
camera in lockstep and applies actions, `planner_node` runs a saved Manipulate-by-Seeing
policy (`MbSPolicy.save_pretrained` output) on the wrist frames + `ee_pose` and sends
`action`. Until a goal is set the planner sends nothing (the lockstep sim re-publishes its
observation every `action_timeout`); set one by publishing a sensor_msgs/Image on
`goal_image` (transient local) or with `ros2 service call capture_goal std_srvs/srv/Trigger`
(the current wrist frame). The predicted cosine to the goal is on `distance`.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription

PACKAGE = 'embodied_vision'


def _node(executable: str, overrides: dict) -> LifecycleNode:
    parameters = [LaunchConfiguration('params_file'), {
        'autostart': ParameterValue(LaunchConfiguration('autostart'), value_type=bool),
        **overrides}]
    return LifecycleNode(
        package=PACKAGE, executable=executable, name=executable,
        namespace=LaunchConfiguration('namespace'), output='screen', parameters=parameters,
        arguments=['--ros-args', '--log-level', LaunchConfiguration('log_level')])


def generate_launch_description():
    params_file = os.path.join(get_package_share_directory(PACKAGE), 'launch', 'config',
                               'planner.yaml')
    arguments = [
        DeclareLaunchArgument('params_file', default_value=params_file,
                              description='parameter file for sim_node and planner_node'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the two nodes and their topics'),
        DeclareLaunchArgument('policy_path', default_value='',
                              description='saved mbs policy directory (save_pretrained '
                                          'output); required'),
        DeclareLaunchArgument('device', default_value='cpu',
                              description="torch device of the planner: 'cpu', 'cuda' or "
                                          "'cuda:N'"),
        DeclareLaunchArgument('stop_threshold', default_value='-1.0',
                              description='stop moving once the predicted cosine to the goal '
                                          'reaches this; < 0 = never'),
        DeclareLaunchArgument('autostart', default_value='true',
                              description='configure and activate the nodes without a '
                                          'lifecycle manager'),
        DeclareLaunchArgument('log_level', default_value='info',
                              description='debug, info, warn, error or fatal'),
    ]
    nodes = [
        _node('planner_node', {
            'policy_path': LaunchConfiguration('policy_path'),
            'device': LaunchConfiguration('device'),
            'stop_threshold': ParameterValue(LaunchConfiguration('stop_threshold'),
                                             value_type=float)}),
        _node('sim_node', {}),
    ]
    return LaunchDescription(arguments + nodes)
