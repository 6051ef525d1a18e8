"""Two-view geometry: `ros2 launch embodied_vision pair.launch.py model_path:=DIR`.

Starts `pair_node` (a lifecycle node) with `launch/config/pair.yaml`, the knobs below on top
of it, and its inputs and outputs remapped to the topics given. View 1 (`left_topic`) is the
reference: the depth, the disparity and the pose of camera 2 are stamped with its header.
Defaults follow stereo_image_proc's names; for the sim's stereo pair use
`left_topic:=/stereo_left/image_raw right_topic:=/stereo_right/image_raw
camera_info_topic:=/stereo_left/camera_info baseline:=0.06`.
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
                              description='ROS 2 parameter file for pair_node'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the node and its topics'),
        DeclareLaunchArgument('left_topic', default_value='/left/image_rect_color',
                              description='sensor_msgs/Image of view 1 (rgb8, bgr8, rgba8, '
                                          'bgra8, mono8)'),
        DeclareLaunchArgument('right_topic', default_value='/right/image_rect_color',
                              description='sensor_msgs/Image of view 2'),
        DeclareLaunchArgument('camera_info_topic', default_value='/left/camera_info',
                              description='CameraInfo of view 1 (fx for the disparity)'),
        DeclareLaunchArgument('depth_topic', default_value='depth',
                              description='depth of view 1 (sensor_msgs/Image 32FC1, m)'),
        DeclareLaunchArgument('disparity_topic', default_value='disparity',
                              description='stereo_msgs/DisparityImage output'),
        DeclareLaunchArgument('pose_topic', default_value='relative_pose',
                              description='geometry_msgs/PoseStamped of camera 2 in '
                                          'camera 1'),
        DeclareLaunchArgument('model_path', default_value='',
                              description='save_pair_geometry_model directory'),
        DeclareLaunchArgument('device', default_value='',
                              description="'cpu', 'cuda' or 'cuda:N'; empty = cuda if any"),
        DeclareLaunchArgument('publish_disparity', default_value='false',
                              description='also publish a DisparityImage (needs baseline)'),
        DeclareLaunchArgument('baseline', default_value='0.0',
                              description='distance between the cameras, metres'),
        DeclareLaunchArgument('autostart', default_value='true',
                              description='configure and activate without a lifecycle '
                                          'manager'),
        DeclareLaunchArgument('log_level', default_value='info',
                              description='debug, info, warn, error or fatal'),
    ]


def generate_launch_description():
    params_file = os.path.join(get_package_share_directory(PACKAGE), 'launch', 'config',
                               'pair.yaml')
    pair = LifecycleNode(
        package=PACKAGE, executable='pair_node', name='pair_node',
        namespace=LaunchConfiguration('namespace'), output='screen',
        parameters=[LaunchConfiguration('params_file'), {
            'model_path': LaunchConfiguration('model_path'),
            'device': LaunchConfiguration('device'),
            'publish_disparity': ParameterValue(LaunchConfiguration('publish_disparity'),
                                                value_type=bool),
            'baseline': ParameterValue(LaunchConfiguration('baseline'), value_type=float),
            'autostart': ParameterValue(LaunchConfiguration('autostart'), value_type=bool),
        }],
        remappings=[('left/image_raw', LaunchConfiguration('left_topic')),
                    ('right/image_raw', LaunchConfiguration('right_topic')),
                    ('left/camera_info', LaunchConfiguration('camera_info_topic')),
                    ('depth', LaunchConfiguration('depth_topic')),
                    ('disparity', LaunchConfiguration('disparity_topic')),
                    ('relative_pose', LaunchConfiguration('pose_topic'))],
        arguments=['--ros-args', '--log-level', LaunchConfiguration('log_level')])
    return LaunchDescription(_arguments(params_file) + [pair])
