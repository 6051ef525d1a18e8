"""Posed RGB-D -> NeRF-MAE grid embedding: `ros2 launch embodied_vision voxel.launch.py`.

Starts `sim_node` and `voxel_node` (lifecycle nodes) with `launch/config/voxel.yaml`: the
sim's front camera is fused over the workspace box and embedded; the occupied voxels go out
as a PointCloud2. On a robot, `with_sim:=false` starts `voxel_node` alone, with its inputs
remapped, e.g. `image_topic:=/camera/color/image_raw
depth_topic:=/camera/aligned_depth_to_color/image_raw
camera_info_topic:=/camera/color/camera_info pose_topic:=/camera_pose` (a PoseStamped of
the camera's optical frame in the world frame, e.g. from a tf relay, see the README).
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
                              description='ROS 2 parameter file for sim_node and voxel_node'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the nodes and their topics'),
        DeclareLaunchArgument('with_sim', default_value='true',
                              description='also start sim_node (false: a robot camera feeds '
                                          'voxel_node)'),
        DeclareLaunchArgument('image_topic', default_value='front/image_raw',
                              description='sensor_msgs/Image colour input (rgb8, bgr8, ...)'),
        DeclareLaunchArgument('depth_topic', default_value='front/depth/image_raw',
                              description='sensor_msgs/Image depth registered with the colour '
                                          'image (32FC1 m or 16UC1 mm)'),
        DeclareLaunchArgument('camera_info_topic', default_value='front/camera_info',
                              description='sensor_msgs/CameraInfo of the colour image'),
        DeclareLaunchArgument('pose_topic', default_value='front/pose',
                              description='camera optical-frame pose in the world frame '
                                          '(PoseStamped, or TransformStamped with pose_type)'),
        DeclareLaunchArgument('encoder_name', default_value='nerf_mae_swin_mini',
                              description='registered voxel encoder (embodied-vision list)'),
        DeclareLaunchArgument('checkpoint_path', default_value='',
                              description='weights file or directory; empty = random init'),
        DeclareLaunchArgument('semantics_path', default_value='',
                              description='voxel-labelling model (nerf_mae_semantics export): '
                                          'a label field in the cloud; empty = none'),
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
                               'voxel.yaml')
    autostart = ParameterValue(LaunchConfiguration('autostart'), value_type=bool)
    logging = ['--ros-args', '--log-level', LaunchConfiguration('log_level')]
    voxel = LifecycleNode(
        package=PACKAGE, executable='voxel_node', name='voxel_node',
        namespace=LaunchConfiguration('namespace'), output='screen',
        parameters=[LaunchConfiguration('params_file'), {
            'encoder_name': LaunchConfiguration('encoder_name'),
            'checkpoint_path': LaunchConfiguration('checkpoint_path'),
            'semantics_path': LaunchConfiguration('semantics_path'),
            'backend': LaunchConfiguration('backend'),
            'device': LaunchConfiguration('device'),
            'autostart': autostart,
        }],
        remappings=[('front/image_raw', LaunchConfiguration('image_topic')),
                    ('front/depth/image_raw', LaunchConfiguration('depth_topic')),
                    ('front/camera_info', LaunchConfiguration('camera_info_topic')),
                    ('front/pose', LaunchConfiguration('pose_topic'))],
        arguments=logging)
    sim = LifecycleNode(
        package=PACKAGE, executable='sim_node', name='sim_node',
        namespace=LaunchConfiguration('namespace'), output='screen',
        condition=IfCondition(LaunchConfiguration('with_sim')),
        parameters=[LaunchConfiguration('params_file'), {'autostart': autostart}],
        arguments=logging)
    return LaunchDescription(_arguments(params_file) + [voxel, sim])
