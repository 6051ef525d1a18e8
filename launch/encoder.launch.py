"""Encoder only: `ros2 launch embodied_vision encoder.launch.py image_topic:=/camera/image_raw`.

Starts `encoder_node` (a lifecycle node) with `launch/config/encoder.yaml`, the encoder knobs
below on top of it, and the node's input remapped to `image_topic`. With `autostart:=true`
the node configures and activates itself; with `false` drive it with `ros2 lifecycle set
/encoder_node configure|activate` or a lifecycle manager.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription

PACKAGE = 'embodied_vision'


def _arguments(params_file: str) -> list:
    return [
        DeclareLaunchArgument('params_file', default_value=params_file,
                              description='ROS 2 parameter file for encoder_node'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the node and its topics'),
        DeclareLaunchArgument('image_topic', default_value='/camera/color/image_raw',
                              description='sensor_msgs/Image input (rgb8, bgr8, rgba8, '
                                          'bgra8, mono8)'),
        DeclareLaunchArgument('embedding_topic', default_value='embedding',
                              description='embedding output (sensor_msgs/Image 32FC1, '
                                          '1 x embed_dim)'),
        DeclareLaunchArgument('encoder_name', default_value='r3m_resnet18',
                              description='registered encoder (embodied-vision list)'),
        DeclareLaunchArgument('checkpoint_path', default_value='',
                              description='weights file or directory; empty = random init'),
        DeclareLaunchArgument('backend', default_value='auto',
                              description='auto, eager, onnxruntime, inductor or tensorrt'),
        DeclareLaunchArgument('device', default_value='',
                              description="'cpu', 'cuda' or 'cuda:N'; empty = cuda if any"),
        DeclareLaunchArgument('autostart', default_value='true',
                              description='configure and activate without a lifecycle '
                                          'manager'),
        DeclareLaunchArgument('log_level', default_value='info',
                              description='debug, info, warn, error or fatal'),
    ]


def generate_launch_description():
    params_file = os.path.join(get_package_share_directory(PACKAGE), 'launch', 'config',
                               'encoder.yaml')
    encoder = LifecycleNode(
        package=PACKAGE, executable='encoder_node', name='encoder_node',
        namespace=LaunchConfiguration('namespace'), output='screen',
        parameters=[LaunchConfiguration('params_file'), {
            'encoder_name': LaunchConfiguration('encoder_name'),
            'checkpoint_path': LaunchConfiguration('checkpoint_path'),
            'backend': LaunchConfiguration('backend'),
            'device': LaunchConfiguration('device'),
            'autostart': ParameterValue(LaunchConfiguration('autostart'), value_type=bool),
        }],
        remappings=[('image', LaunchConfiguration('image_topic')),
                    ('embedding', LaunchConfiguration('embedding_topic'))],
        arguments=['--ros-args', '--log-level', LaunchConfiguration('log_level')])
    return LaunchDescription(_arguments(params_file) + [encoder])
