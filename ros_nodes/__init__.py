"""rclpy nodes and message conversion, installed as `embodied_vision.ros_nodes`.

The only part of the package that imports rclpy.
"""
