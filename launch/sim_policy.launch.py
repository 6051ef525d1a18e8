"""Sim + encoder + policy: `ros2 launch embodied_vision sim_policy.launch.py`.

Three lifecycle nodes in separate processes with one parameter file (default
`launch/config/demo.yaml`, the same file `embodied-vision pipeline` runs in one process):
`sim_node` renders the tabletop scene and applies actions, `encoder_node` embeds its
`front` camera, `policy_node` turns embedding + proprioception into actions.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription

PACKAGE = 'embodied_vision'


def _node(executable: str, overrides: dict, remappings=()) -> LifecycleNode:
    parameters = [LaunchConfiguration('params_file'), {
        'autostart': ParameterValue(LaunchConfiguration('autostart'), value_type=bool),
        **overrides}]
    return LifecycleNode(
        package=PACKAGE, executable=executable, name=executable,
        namespace=LaunchConfiguration('namespace'), output='screen', parameters=parameters,
        remappings=list(remappings),
        arguments=['--ros-args', '--log-level', LaunchConfiguration('log_level')])


def generate_launch_description():
    params_file = os.path.join(get_package_share_directory(PACKAGE), 'launch', 'config',
                               'demo.yaml')
    arguments = [
        DeclareLaunchArgument('params_file', default_value=params_file,
                              description='parameter file for sim_node, encoder_node and '
                                          'policy_node'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the three nodes and their topics'),
        DeclareLaunchArgument('policy_type', default_value='scripted_expert',
                              description='scripted_expert (privileged, from sim_node) or '
                                          'checkpoint'),
        DeclareLaunchArgument('policy_path', default_value='',
                              description='saved policy directory for policy_type '
                                          'checkpoint'),
        DeclareLaunchArgument('autostart', default_value='true',
                              description='configure and activate the nodes without a '
                                          'lifecycle manager'),
        DeclareLaunchArgument('log_level', default_value='info',
                              description='debug, info, warn, error or fatal'),
    ]
    nodes = [
        _node('encoder_node', {}),
        _node('policy_node', {'policy_type': LaunchConfiguration('policy_type'),
                              'policy_path': LaunchConfiguration('policy_path')}),
        _node('sim_node', {}),
    ]
    return LaunchDescription(arguments + nodes)
