"""Point cloud -> I2P-MAE embedding: `ros2 launch embodied_vision point_cloud.launch.py`.

Starts `sim_node` and `point_cloud_node` (lifecycle nodes) with
`launch/config/point_cloud.yaml`: the sim's front camera publishes its depth as a PointCloud2
(`front/points`, optical frame), cropped to the workspace and embedded; with
`classifier_path` the predicted class goes out too. On a robot, `with_sim:=false` starts
`point_cloud_node` alone, e.g. `cloud_topic:=/camera/depth/color/points` (any PointCloud2
with x, y, z), or `input:=depth depth_topic:=/camera/depth/image_rect_raw
camera_info_topic:=/camera/depth/camera_info`; set `crop_min` / `crop_max` in a params file
to the object's box in the camera frame (the YAML's box is the sim's workspace).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription

PACKAGE = 'embodied_vision'


def _arguments(params_file: str) -> list:
    return [
        DeclareLaunchArgument('params_file', default_value=params_file,
                              description='ROS 2 parameter file for sim_node and '
                                          'point_cloud_node'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the nodes and their topics'),
        DeclareLaunchArgument('with_sim', default_value='true',
                              description='also start sim_node (false: a robot sensor feeds '
                                          'point_cloud_node)'),
        DeclareLaunchArgument('input', default_value='cloud',
                              description='cloud: PointCloud2 on cloud_topic; depth: depth '
                                          'image + CameraInfo'),
        DeclareLaunchArgument('cloud_topic', default_value='front/points',
                              description='sensor_msgs/PointCloud2 input (x, y, z fields)'),
        DeclareLaunchArgument('depth_topic', default_value='front/depth/image_raw',
                              description='sensor_msgs/Image depth input (32FC1 m or 16UC1 '
                                          'mm), with input:=depth'),
        DeclareLaunchArgument('camera_info_topic', default_value='front/camera_info',
                              description='sensor_msgs/CameraInfo of the depth image, with '
                                          'input:=depth'),
        DeclareLaunchArgument('cloud_up_axis', default_value='-y',
                              description='input axis pointing up: -y camera optical frame, '
                                          'z REP 103 body frame, y already y-up'),
        DeclareLaunchArgument('encoder_name', default_value='i2p_mae_small',
                              description='registered point encoder (i2p_mae*, '
                                          'embodied-vision list)'),
        DeclareLaunchArgument('checkpoint_path', default_value='',
                              description='I2P-MAE pre-train.pth or an embodied_vision export; '
                                          'empty = random weights'),
        DeclareLaunchArgument('classifier_path', default_value='',
                              description='save_point_classifier artefact: also publish the '
                                          'class; empty = none'),
        DeclareLaunchArgument('backend', default_value='eager',
                              description='eager, onnxruntime, inductor, tensorrt or auto'),
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
                               'point_cloud.yaml')
    autostart = ParameterValue(LaunchConfiguration('autostart'), value_type=bool)
    logging = ['--ros-args', '--log-level', LaunchConfiguration('log_level')]
    cloud = LifecycleNode(
        package=PACKAGE, executable='point_cloud_node', name='point_cloud_node',
        namespace=LaunchConfiguration('namespace'), output='screen',
        parameters=[LaunchConfiguration('params_file'), {
            'input': LaunchConfiguration('input'),
            'cloud_up_axis': LaunchConfiguration('cloud_up_axis'),
            'encoder_name': LaunchConfiguration('encoder_name'),
            'checkpoint_path': LaunchConfiguration('checkpoint_path'),
            'classifier_path': LaunchConfiguration('classifier_path'),
            'backend': LaunchConfiguration('backend'),
            'device': LaunchConfiguration('device'),
            'autostart': autostart,
        }],
        remappings=[('front/points', LaunchConfiguration('cloud_topic')),
                    ('front/depth/image_raw', LaunchConfiguration('depth_topic')),
                    ('front/camera_info', LaunchConfiguration('camera_info_topic'))],
        arguments=logging)
    sim = LifecycleNode(
        package=PACKAGE, executable='sim_node', name='sim_node',
        namespace=LaunchConfiguration('namespace'), output='screen',
        condition=IfCondition(LaunchConfiguration('with_sim')),
        parameters=[LaunchConfiguration('params_file'), {'autostart': autostart}],
        arguments=logging)
    return LaunchDescription(_arguments(params_file) + [cloud, sim])
