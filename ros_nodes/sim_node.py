"""`sim_node`: a tabletop env of the sim suite run as the robot, a lifecycle node.

Publishes, per control step, all with the same header stamp (node clock, at render time):

| topic | type | content |
|---|---|---|
| `<camera>/image_raw` | sensor_msgs/Image `rgb8` | colour, frame `<camera>_optical_frame` |
| `<camera>/depth/image_raw` | sensor_msgs/Image `32FC1` | metric planar depth (m) |
| `<camera>/camera_info` | sensor_msgs/CameraInfo | `K` of `camera_params`, plumb_bob, D = 0 |
| `<camera>/pose` | geometry_msgs/PoseStamped | camera (optical frame, OpenCV) in `world` |
| `<camera>/points` | sensor_msgs/PointCloud2 | depth as x, y, z (+ rgb) (`publish_points`) |
| `ee_pose` | geometry_msgs/PoseStamped | end-effector pose in `world` |
| `gripper_state` | sensor_msgs/JointState | `gripper_width` (m) |
| `success` / `stage` / `stage_text` | std_msgs Bool / Int32 / String | task progress |
| `instruction` | std_msgs/String | episode instruction (transient local, at each reset) |
| `expert_action` | sensor_msgs/Joy | privileged scripted-expert action (`publish_expert_action`) |

Commands: **sensor_msgs/Joy on `action`**, `axes = [dx, dy, dz, grip]` in [-1, 1] (the env's
action space: end-effector target moves `axes[:3] * 2 cm` per step; grip -1 open, +1 closed),
header stamp = the stamp of the observation the action was computed from. Joy is the standard
message for a stamped vector of normalised command axes: one message carries motion and
gripper together (TwistStamped has no gripper field, a second topic would need pairing), it
has any length (other action spaces fit), and a gamepad's `joy_node` can drive the sim for
teleoperation. Wrong length or NaN/inf commands are rejected and counted.

Stepping (`step_mode`):
- `timer`: free-running at `control_rate` like a real robot: each step applies the newest
  command received since the last step, or holds (no motion, same grip) when none came.
- `lockstep`: deterministic evaluation: after publishing observation `t` the sim waits for
  the action stamped `t`; without one within `action_timeout` it publishes observation `t`
  again (counted as `action_timeouts`), so a lost message never desynchronises the loop.

Services: `reset` (std_srvs/Trigger) starts a new episode and answers with its instruction.
All MuJoCo calls run on one dedicated thread (EGL contexts are bound to a thread).
"""
import sys
import threading
import time

from geometry_msgs.msg import PoseStamped
import numpy as np
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.lifecycle import TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, Image, JointState, Joy, PointCloud2
from std_msgs.msg import Bool, Header, Int32, String
from std_srvs.srv import Trigger

from embodied_vision.ros_nodes.conversions import (
    intrinsics_to_camera_info,
    numpy_to_image,
    pose_stamped_from_rt,
)
from embodied_vision.ros_nodes.lifecycle_base import ManagedNode, run_node
from embodied_vision.ros_nodes.parameters import ParamSpec
from embodied_vision.ros_nodes.pointcloud import numpy_to_pointcloud2
from embodied_vision.ros_nodes.qos import qos_specs

__all__ = ['SimNode', 'main']


class SimNode(ManagedNode):
    """Runs `embodied_vision/<task>-v0`; see the module docstring for topics and modes."""

    SPIN_THREADS = 4  # the reset service waits for the sim thread while commands keep coming

    PARAMETERS = (
        ParamSpec('task', 'PickPlace', 'tabletop task (embodied_vision.sim.TASKS)',
                  read_only=True),
        ParamSpec('cameras', ['front'], 'cameras to render (embodied_vision.sim.CAMERA_NAMES)',
                  read_only=True),
        ParamSpec('image_width', 64, 'rendered image width', low=16, high=4096,
                  read_only=True),
        ParamSpec('image_height', 64, 'rendered image height', low=16, high=4096,
                  read_only=True),
        ParamSpec('depth', True, 'also publish metric depth per camera', read_only=True),
        ParamSpec('publish_points', False, 'also publish <camera>/points: the depth '
                  'back-projected in the optical frame (pixels at the far clip dropped)',
                  read_only=True),
        ParamSpec('points_color', True, 'the points carry the packed rgb of the colour image',
                  read_only=True),
        ParamSpec('points_stride', 1, 'every points_stride-th pixel row and column becomes a '
                  'point', low=1, high=64, read_only=True),
        ParamSpec('domain', 'sim', "visual domain ('sim' or 'real')", read_only=True),
        ParamSpec('seed', 0, 'episode k is reset with seed + k', low=0, high=2**31 - 1),
        ParamSpec('control_rate', 20.0, 'control steps per second (lockstep: at most)',
                  low=0.1, high=1000.0),
        ParamSpec('step_mode', 'timer', 'timer: free-running, hold without commands; '
                  'lockstep: wait for the action of each observation',
                  choices=('timer', 'lockstep')),
        ParamSpec('action_timeout', 1.0, 'lockstep: seconds before an observation is '
                  'published again', low=0.01, high=600.0),
        ParamSpec('max_episodes', 0, 'stop stepping after this many episodes (0 = never)',
                  low=0, high=1000000),
        ParamSpec('max_episode_steps', 0, "episode step limit (0 = the task's default)",
                  low=0, high=1000000, read_only=True),
        ParamSpec('auto_reset', True, 'start the next episode when one ends'),
        ParamSpec('publish_expert_action', False, 'publish the privileged scripted-expert '
                  'action of every observation on expert_action', read_only=True),
        ParamSpec('world_frame', 'world', 'frame_id of ee_pose and the camera poses',
                  read_only=True),
    ) + qos_specs('output', 'reliable', 10, 'observation publishers') \
        + qos_specs('input', 'reliable', 10, 'action subscription')
    STAGES = ('step', 'render_publish', 'cycle')

    def __init__(self, node_name: str = 'sim_node', **kwargs):
        self.env = None
        self.results: list[dict] = []
        self.finished = threading.Event()  # max_episodes done, or the sim thread failed
        self.failure = ''
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop_flag = threading.Event()
        self._active = threading.Event()
        self._reset_request = threading.Event()
        self._reset_done = threading.Event()
        self._error: Exception | None = None
        self._cond = threading.Condition()
        self._action: Joy | None = None
        self._pubs: dict = {}
        self._subscription = None
        self._service = None
        self._grip = -1.0
        self._episode = {'index': -1, 'steps': 0, 'return': 0.0, 'instruction': ''}
        self._timeouts = 0
        self._last_info: dict = {}
        super().__init__(node_name, **kwargs)

    def validate_parameter(self, name: str, value) -> str:
        if name in ('task', 'cameras', 'domain'):
            from embodied_vision.sim import CAMERA_NAMES, DOMAINS, TASKS
            allowed = {'task': TASKS, 'cameras': CAMERA_NAMES, 'domain': DOMAINS}[name]
            values = value if name == 'cameras' else [value]
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                return f'{name}={value!r} is not allowed; allowed values: ' \
                       f'{", ".join(sorted(allowed))}'
        return ''

    # ----------------------------------------------------------------------- lifecycle
    def on_configure(self, state) -> TransitionCallbackReturn:
        self._error = None
        self.failure = ''
        self._ready.clear()
        self._stop_flag.clear()
        self.finished.clear()
        self._thread = threading.Thread(target=self._run, name='sim_thread', daemon=True)
        self._thread.start()
        self._ready.wait(timeout=300.0)
        if self.env is None:
            self.get_logger().error(f'configure failed: could not build the env: '
                                    f'{type(self._error).__name__}: {self._error}')
            self._stop_thread()
            return TransitionCallbackReturn.FAILURE
        self._create_publishers()
        self._service = self.create_service(Trigger, 'reset', self._on_reset)
        return TransitionCallbackReturn.SUCCESS

    def _create_publishers(self) -> None:
        qos = self.qos('output')
        pub = self.create_lifecycle_publisher
        for cam in self.param('cameras'):
            self._pubs[f'{cam}/rgb'] = pub(Image, f'{cam}/image_raw', qos)
            self._pubs[f'{cam}/info'] = pub(CameraInfo, f'{cam}/camera_info', qos)
            self._pubs[f'{cam}/pose'] = pub(PoseStamped, f'{cam}/pose', qos)
            if self.param('depth'):
                self._pubs[f'{cam}/depth'] = pub(Image, f'{cam}/depth/image_raw', qos)
            if self.param('publish_points'):
                self._pubs[f'{cam}/points'] = pub(PointCloud2, f'{cam}/points', qos)
        self._pubs['ee_pose'] = pub(PoseStamped, 'ee_pose', qos)
        self._pubs['gripper'] = pub(JointState, 'gripper_state', qos)
        self._pubs['success'] = pub(Bool, 'success', qos)
        self._pubs['stage'] = pub(Int32, 'stage', qos)
        self._pubs['stage_text'] = pub(String, 'stage_text', qos)
        self._pubs['instruction'] = pub(String, 'instruction',
                                        self.qos('output', transient_local=True))
        if self.param('publish_expert_action'):
            self._pubs['expert'] = pub(Joy, 'expert_action', qos)

    def on_activate(self, state) -> TransitionCallbackReturn:
        result = super().on_activate(state)
        self._subscription = self.create_subscription(
            Joy, 'action', self._on_action, self.qos('input'),
            callback_group=ReentrantCallbackGroup())
        self._active.set()
        return result

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._active.clear()
        if self._subscription is not None:
            self.destroy_subscription(self._subscription)
            self._subscription = None
        return super().on_deactivate(state)

    def release(self) -> None:
        self._active.clear()
        self._stop_thread()
        if self._subscription is not None:
            self.destroy_subscription(self._subscription)
            self._subscription = None
        if self._service is not None:
            self.destroy_service(self._service)
            self._service = None
        for publisher in self._pubs.values():
            self.destroy_lifecycle_publisher(publisher)
        self._pubs = {}

    def _stop_thread(self) -> None:
        self._stop_flag.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30.0)
        self._thread = None

    # ----------------------------------------------------------------------- inputs
    def _on_action(self, msg: Joy) -> None:
        self.accounting.count('received')
        axes = np.asarray(msg.axes, np.float64)
        if axes.shape != (4,):
            self.accounting.reject('action_shape', f'action needs 4 axes [dx, dy, dz, grip], '
                                   f'got {axes.size}')
            return
        if not np.all(np.isfinite(axes)):
            self.accounting.reject('action_not_finite',
                                   f'action contains NaN or inf: {axes.tolist()}')
            return
        with self._cond:
            self._action = msg
            self._cond.notify_all()

    def _on_reset(self, request, response):
        self._reset_done.clear()
        self._reset_request.set()
        with self._cond:
            self._cond.notify_all()
        if not self._active.is_set():
            response.success, response.message = False, 'sim_node is not active'
            return response
        response.success = self._reset_done.wait(timeout=30.0)
        response.message = self._episode['instruction'] if response.success else \
            'reset timed out'
        return response

    # ----------------------------------------------------------------------- sim thread
    def _run(self) -> None:
        try:
            self.env = self._make_env()
        except Exception as err:  # reported by on_configure
            self._error = err
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop()
        except Exception as err:
            self.failure = f'{type(err).__name__}: {err}'
            self.get_logger().error(f'sim thread stopped: {self.failure}')
            self.finished.set()
        finally:
            self.env.close()
            self.env = None

    def _make_env(self):
        import gymnasium as gym

        from embodied_vision.sim import env_id
        limit = self.param('max_episode_steps') or None
        return gym.make(env_id(self.param('task')), cameras=tuple(self.param('cameras')),
                        image_size=(self.param('image_height'), self.param('image_width')),
                        depth=self.param('depth') or self.param('publish_points'),
                        domain=self.param('domain'),
                        max_episode_steps=limit, disable_env_checker=True)

    def _loop(self) -> None:
        obs = stamp = expert = None
        next_tick = time.monotonic()
        while not self._stop_flag.is_set():
            idle = obs is None and self._episode['index'] >= 0 and not (
                self.param('auto_reset') and not self.finished.is_set())
            if not self._active.is_set() or (idle and not self._reset_request.is_set()):
                time.sleep(0.02)
                continue
            if obs is None or self._reset_request.is_set():
                obs, info = self._new_episode()
                stamp, expert = self._publish(obs, info)
                next_tick = time.monotonic() + 1.0 / self.param('control_rate')
                continue
            action = self._wait_for_action(stamp, next_tick)
            if self._reset_request.is_set() or self._stop_flag.is_set():
                continue
            if action is None:  # lockstep timeout: publish the same observation again
                self._timeouts += 1
                self._publish(obs, self._last_info, stamp, expert)
                continue
            start = time.monotonic()
            delay = next_tick - start
            if delay > 0:
                time.sleep(delay)
            next_tick = max(next_tick, start) + 1.0 / self.param('control_rate')
            t0 = time.perf_counter()
            obs, reward, terminated, truncated, info = self.env.step(action)
            t1 = time.perf_counter()
            self._episode['steps'] += 1
            self._episode['return'] += float(reward)
            stamp, expert = self._publish(obs, info)
            self.timer.add('step', t1 - t0)
            self.timer.add('render_publish', time.perf_counter() - t1)
            self.timer.add('cycle', time.perf_counter() - t0)
            if terminated or truncated:
                self._end_episode(info)
                obs = None  # next: a new episode, or idle until `reset` (see `idle`)

    def _wait_for_action(self, stamp, next_tick) -> np.ndarray | None:
        lockstep = self.param('step_mode') == 'lockstep'
        deadline = time.monotonic() + self.param('action_timeout') if lockstep else next_tick
        with self._cond:
            while not self._stop_flag.is_set() and not self._reset_request.is_set():
                msg = self._action
                if msg is not None and (not lockstep or _same_stamp(msg.header, stamp)):
                    self._action = None
                    axes = np.asarray(msg.axes, np.float32)
                    self._grip = float(np.clip(axes[3], -1.0, 1.0))
                    return axes
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
        if lockstep:
            return None
        return np.array([0.0, 0.0, 0.0, self._grip], np.float32)  # timer: hold

    def _new_episode(self):
        index = self._episode['index'] + 1
        obs, info = self.env.reset(seed=self.param('seed') + index)
        self._grip = -1.0
        with self._cond:
            self._action = None
        self._episode = {'index': index, 'steps': 0, 'return': 0.0,
                         'instruction': str(obs['instruction'])}
        self._reset_request.clear()
        self._reset_done.set()
        self._pubs['instruction'].publish(String(data=self._episode['instruction']))
        self.get_logger().info(f'episode {index}: {self._episode["instruction"]}')
        return obs, info

    def _end_episode(self, info: dict) -> None:
        result = {'episode': self._episode['index'], 'success': bool(info['success']),
                  'steps': self._episode['steps'], 'return': self._episode['return'],
                  'stage': int(info['stage']), 'instruction': self._episode['instruction']}
        self.results.append(result)
        self.get_logger().info(f'episode {result["episode"]} ended: success='
                               f'{result["success"]} after {result["steps"]} steps')
        limit = self.param('max_episodes')
        if limit and len(self.results) >= limit:
            self.finished.set()

    def _publish(self, obs: dict, info: dict, stamp=None, expert=None):
        """Publish one observation; returns its stamp and the expert action message."""
        self._last_info = info
        header = Header(frame_id=self.param('world_frame'))
        header.stamp = stamp if stamp is not None else self.get_clock().now().to_msg()
        for cam in self.param('cameras'):
            cam_header = Header(stamp=header.stamp, frame_id=f'{cam}_optical_frame')
            # CameraInfo and pose first: consumers that pair them with the images get them
            params = self.env.unwrapped.camera_params(cam)
            self._pubs[f'{cam}/info'].publish(intrinsics_to_camera_info(
                params['K'], params['width'], params['height'], cam_header))
            pose = params['T_world_cam']  # camera-to-world, OpenCV axes (moves with wrist)
            self._pubs[f'{cam}/pose'].publish(pose_stamped_from_rt(
                pose[:3, :3], pose[:3, 3], header=Header(stamp=header.stamp,
                                                         frame_id=header.frame_id)))
            self._pubs[f'{cam}/rgb'].publish(numpy_to_image(obs[f'{cam}/rgb'], 'rgb8',
                                                            cam_header))
            if self.param('depth'):
                self._pubs[f'{cam}/depth'].publish(
                    numpy_to_image(obs[f'{cam}/depth'], '32FC1', cam_header))
            if self.param('publish_points'):
                self._pubs[f'{cam}/points'].publish(self._points(obs, cam, params, cam_header))
        proprio = np.asarray(obs['proprio'], np.float64)
        pose = PoseStamped(header=header)
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = proprio[:3]
        o = pose.pose.orientation
        o.w, o.x, o.y, o.z = proprio[3:7]
        self._pubs['ee_pose'].publish(pose)
        self._pubs['gripper'].publish(JointState(header=header, name=['gripper_width'],
                                                 position=[float(proprio[7])]))
        self._pubs['success'].publish(Bool(data=bool(info['success'])))
        self._pubs['stage'].publish(Int32(data=int(info['stage'])))
        self._pubs['stage_text'].publish(String(data=str(info['stage_text'])))
        if 'expert' in self._pubs:
            if expert is None:
                axes = np.asarray(self.env.unwrapped.expert_action(), np.float32)
                expert = Joy(header=header, axes=axes.tolist())
            self._pubs['expert'].publish(expert)
        self.accounting.count('published')
        return header.stamp, expert

    def _points(self, obs: dict, cam: str, params: dict, header) -> PointCloud2:
        """The depth of `cam` back-projected with its K in its optical frame; pixels at the
        far clip (no surface) are dropped."""
        from embodied_vision.geometry.pointcloud import depth_to_points
        far = float(self.env.observation_space[f'{cam}/depth'].high.flat[0])
        rgb = obs[f'{cam}/rgb'] if self.param('points_color') else None
        points, colors = depth_to_points(obs[f'{cam}/depth'], params['K'], rgb,
                                         stride=self.param('points_stride'),
                                         max_depth=np.nextafter(np.float32(far), 0))
        return numpy_to_pointcloud2(points, colors, header=header)

    def diagnostic_values(self) -> dict[str, str]:
        done = list(self.results)
        successes = sum(r['success'] for r in done)
        return {'task': self.param('task'), 'step_mode': self.param('step_mode'),
                'episode': str(self._episode['index']),
                'episode_steps': str(self._episode['steps']),
                'episodes_done': str(len(done)), 'successes': str(successes),
                'success_rate': f'{successes / len(done):.3f}' if done else 'n/a',
                'action_timeouts': str(self._timeouts)}


def _same_stamp(header, stamp) -> bool:
    return header.stamp.sec == stamp.sec and header.stamp.nanosec == stamp.nanosec


def main(args=None) -> int:
    """Console script `sim_node` (rendering is headless EGL without a display, see sim)."""
    return run_node(SimNode, args)


if __name__ == '__main__':
    sys.exit(main())
