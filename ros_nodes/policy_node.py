"""`policy_node`: embedding (+ proprioception) in -> action out, a lifecycle node.

Runs any object with the LeRobot-style contract `reset()` / `select_action(obs) -> action`
(`embodied_vision.policies`), chosen by `policy_type`:

- `checkpoint`: `load_policy(policy_path)`, e.g. a `bc_mlp` trained on frozen embeddings
  (it reads `observation.embedding` and, when its `state_dim` > 0, `observation.state`), or
  a Lang4Sim2Real `l4s_bc` policy, which embeds the camera frame itself with its
  FiLM-conditioned encoder: it reads `observation.image` (the rgb8/bgr8 Image on
  `image_topic`), `observation.instruction` (the latest text on `instruction_topic`, with the
  visual `domain` parameter: "Simulation:" / "Real:" prefix) and `observation.state`;
- `scripted_expert`: the sim suite's scripted expert. It needs privileged simulator state,
  which it gets **over a topic**: `sim_node` (with `publish_expert_action: true`) publishes the
  expert's action for every observation on `expert_action`, stamped like the observation, and
  this node passes it in as `observation.expert_action`. Sim and policy can therefore run in
  separate processes (launch files) or one (the pipeline runner) unchanged.

Inputs, paired by exact header stamp (all derive from one sim/camera frame):
`embedding_topic` (sensor_msgs/Image 32FC1, 1 x D, from `encoder_node`), `image_topic`
(sensor_msgs/Image rgb8/bgr8/rgba8/bgra8/mono8, for policies that read the frame), `ee_pose_topic`
(geometry_msgs/PoseStamped) + `gripper_topic` (sensor_msgs/JointState, `gripper_width`) ->
state `[x, y, z, qw, qx, qy, qz, width]`, and `expert_action_topic` (sensor_msgs/Joy). With
`require_embedding` the policy acts only once the frame's embedding arrived, even when it
does not read it (so the scripted expert closes the loop through the encoder too).
Output: sensor_msgs/Joy on `action_topic`, `axes` = the action, header = the observation's
(see `sim_node` for why Joy). A new `instruction` (a new episode) calls `policy.reset()`.
Bad input (wrong embedding size or encoding, a non-colour or malformed frame, an image policy
acting before any instruction, NaN, wrong action length) is rejected and
counted; incomplete stamps older than `sync_queue_size` newer ones are dropped and counted.
"""
import sys
import threading
import time

from geometry_msgs.msg import PoseStamped
import numpy as np
from rclpy.lifecycle import TransitionCallbackReturn
from sensor_msgs.msg import Image, JointState, Joy
from std_msgs.msg import String

from embodied_vision.ros_nodes.accounting import colour_frame
from embodied_vision.ros_nodes.conversions import image_to_numpy
from embodied_vision.ros_nodes.exact_sync import StampJoiner
from embodied_vision.ros_nodes.lifecycle_base import ManagedNode, run_node
from embodied_vision.ros_nodes.parameters import ParamSpec
from embodied_vision.ros_nodes.qos import qos_specs

__all__ = ['PolicyNode', 'main']

_EMBEDDING = 'observation.embedding'
_STATE = 'observation.state'
_EXPERT = 'observation.expert_action'
_IMAGE = 'observation.image'
_INSTRUCTION = 'observation.instruction'


class PolicyNode(ManagedNode):
    """Turns synchronised observations into actions; see the module docstring."""

    PARAMETERS = (
        ParamSpec('policy_type', 'scripted_expert', 'where the policy comes from',
                  choices=('scripted_expert', 'checkpoint'), read_only=True),
        ParamSpec('policy_path', '', 'saved policy directory (policy_type: checkpoint)',
                  read_only=True),
        ParamSpec('device', 'cpu', "torch device of the policy ('cpu', 'cuda[:N]')",
                  read_only=True),
        ParamSpec('action_dim', 4, 'action size expected from the policy', low=1, high=1024,
                  read_only=True),
        ParamSpec('require_embedding', True, 'act only once the embedding of the frame '
                  'arrived, even if the policy does not read it', read_only=True),
        ParamSpec('sync_queue_size', 30, 'incomplete stamps kept while pairing inputs',
                  low=1, high=10000),
        ParamSpec('domain', 'real', 'visual domain named in the instruction of language-'
                  'conditioned policies', choices=('sim', 'real'), read_only=True),
        ParamSpec('embedding_topic', 'embedding', 'sensor_msgs/Image 32FC1 embedding',
                  read_only=True),
        ParamSpec('image_topic', 'front/image_raw', 'sensor_msgs/Image rgb8/bgr8 camera frame '
                  '(policies that read observation.image)', read_only=True),
        ParamSpec('ee_pose_topic', 'ee_pose', 'geometry_msgs/PoseStamped end effector',
                  read_only=True),
        ParamSpec('gripper_topic', 'gripper_state', 'sensor_msgs/JointState gripper_width',
                  read_only=True),
        ParamSpec('expert_action_topic', 'expert_action', 'sensor_msgs/Joy privileged '
                  'expert action (scripted_expert)', read_only=True),
        ParamSpec('instruction_topic', 'instruction', 'std_msgs/String; a new one resets '
                  'the policy', read_only=True),
        ParamSpec('action_topic', 'action', 'sensor_msgs/Joy action output', read_only=True),
    ) + qos_specs('input', 'reliable', 10, 'observation subscriptions') \
        + qos_specs('output', 'reliable', 10, 'action publisher')
    STAGES = ('sync_wait', 'policy', 'publish', 'total')

    def __init__(self, node_name: str = 'policy_node', **kwargs):
        self.policy = None
        self.required: tuple[str, ...] = ()
        self._embed_dim: int | None = None
        self._publisher = None
        self._inputs = []
        self._joiner = StampJoiner()
        self._needed: frozenset[str] = frozenset()
        self._instruction: str | None = None
        self._lock = threading.Lock()
        self.actions_published = 0
        super().__init__(node_name, **kwargs)

    # ----------------------------------------------------------------------- lifecycle
    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            self.policy = self._load_policy()
        except Exception as err:  # a missing/corrupt checkpoint: report, stay unconfigured
            self.get_logger().error(f'configure failed: {type(err).__name__}: {err}')
            self.policy = None
            return TransitionCallbackReturn.FAILURE
        features = tuple(getattr(self.policy, 'input_features', (_EMBEDDING,)))
        if self.param('require_embedding') and _EMBEDDING not in features:
            features = (_EMBEDDING,) + features
        self.required = features
        self._needed = frozenset(self._needed_parts())
        config = getattr(self.policy, 'config', None)
        self._embed_dim = getattr(config, 'embed_dim', None)
        self._publisher = self.create_lifecycle_publisher(Joy, self.param('action_topic'),
                                                          self.qos('output'))
        self.get_logger().info(f'policy {getattr(self.policy, "name", "?")} reads '
                               f'{", ".join(self.required)}')
        return TransitionCallbackReturn.SUCCESS

    def _load_policy(self):
        from embodied_vision.policies import load_policy, make_policy
        if self.param('policy_type') == 'scripted_expert':
            return make_policy('scripted_expert', action_dim=self.param('action_dim'))
        path = self.param('policy_path')
        if not path:
            raise ValueError('policy_type is checkpoint but policy_path is empty')
        policy = load_policy(path, device=self.param('device'))
        if policy.config.action_dim != self.param('action_dim'):
            raise ValueError(f'{path} outputs {policy.config.action_dim} actions, the node '
                             f'expects action_dim={self.param("action_dim")}')
        return policy

    def on_activate(self, state) -> TransitionCallbackReturn:
        qos = self.qos('input')
        sub = self.create_subscription
        self._joiner.clear()
        self.policy.reset()
        self._inputs = [
            sub(String, self.param('instruction_topic'), self._on_instruction,
                self.qos('input', transient_local=True))]
        if _EMBEDDING in self.required:
            self._inputs.append(
                sub(Image, self.param('embedding_topic'), self._on_embedding, qos))
        if _IMAGE in self.required:
            self._inputs.append(sub(Image, self.param('image_topic'), self._on_image, qos))
        if _STATE in self.required:
            self._inputs += [
                sub(PoseStamped, self.param('ee_pose_topic'), self._on_pose, qos),
                sub(JointState, self.param('gripper_topic'), self._on_gripper, qos)]
        if _EXPERT in self.required:
            self._inputs.append(
                sub(Joy, self.param('expert_action_topic'), self._on_expert, qos))
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._inputs = self.drop_subscriptions(self._inputs)
        return super().on_deactivate(state)

    def release(self) -> None:
        self._inputs = self.drop_subscriptions(self._inputs)
        if self._publisher is not None:
            self.destroy_lifecycle_publisher(self._publisher)
            self._publisher = None
        self.policy = None

    # ----------------------------------------------------------------------- inputs
    def _on_instruction(self, msg: String) -> None:
        self._joiner.clear()
        with self._lock:
            self._instruction = msg.data
        if self.policy is not None:
            self.policy.reset()

    def _on_embedding(self, msg: Image) -> None:
        if msg.encoding != '32FC1' or msg.height != 1:
            self.accounting.reject('embedding_format', f'embedding must be a 32FC1 image of '
                                   f'height 1, got {msg.encoding} {msg.height}x{msg.width}')
            return
        if self._embed_dim is not None and msg.width != self._embed_dim:
            self.accounting.reject('embedding_size', f'embedding has {msg.width} values, the '
                                   f'policy reads {self._embed_dim}')
            return
        try:
            value = image_to_numpy(msg)[0].copy()
        except ValueError as err:
            self.accounting.reject('embedding_malformed', str(err))
            return
        if not np.all(np.isfinite(value)):
            self.accounting.reject('embedding_not_finite', 'embedding contains NaN or inf')
            return
        self._add(msg.header, 'embedding', value)

    def _on_image(self, msg: Image) -> None:
        frame = colour_frame(msg, self.accounting, 'image')
        if frame is not None:
            self._add(msg.header, 'image', frame)  # a view that keeps msg alive, no copy

    def _on_pose(self, msg: PoseStamped) -> None:
        p, o = msg.pose.position, msg.pose.orientation
        self._add(msg.header, 'pose', np.array([p.x, p.y, p.z, o.w, o.x, o.y, o.z]))

    def _on_gripper(self, msg: JointState) -> None:
        if 'gripper_width' not in msg.name or len(msg.position) != len(msg.name):
            self.accounting.reject('gripper_state', f'JointState needs a gripper_width '
                                   f'position, got names {list(msg.name)} with '
                                   f'{len(msg.position)} positions')
            return
        self._add(msg.header, 'gripper', float(msg.position[list(msg.name).index(
            'gripper_width')]))

    def _on_expert(self, msg: Joy) -> None:
        axes = np.asarray(msg.axes, np.float32)
        if axes.size != self.param('action_dim') or not np.all(np.isfinite(axes)):
            self.accounting.reject('expert_action', f'expert action must hold '
                                   f'{self.param("action_dim")} finite values, got '
                                   f'{axes.tolist()}')
            return
        self._add(msg.header, 'expert', axes)

    # ----------------------------------------------------------------------- pairing
    def _needed_parts(self) -> set[str]:
        parts = set()
        if _EMBEDDING in self.required:
            parts.add('embedding')
        if _IMAGE in self.required:
            parts.add('image')
        if _STATE in self.required:
            parts |= {'pose', 'gripper'}
        if _EXPERT in self.required:
            parts.add('expert')
        return parts

    def _add(self, header, part: str, value) -> None:
        self.accounting.count('received')
        entry, dropped = self._joiner.add(header, part, value, self._needed,
                                          self.param('sync_queue_size'))
        if dropped:
            self.accounting.count('dropped', dropped)
        if entry is not None:
            self._act(entry)

    def _act(self, entry: dict) -> None:
        t0 = time.perf_counter()
        policy, publisher = self.policy, self._publisher
        if policy is None or publisher is None:  # released while this callback was queued
            return
        obs = {}
        if 'embedding' in entry:
            obs[_EMBEDDING] = entry['embedding']
        if 'pose' in entry:
            obs[_STATE] = np.append(entry['pose'], entry['gripper']).astype(np.float32)
        if 'expert' in entry:
            obs[_EXPERT] = entry['expert']
        if 'image' in entry:
            obs[_IMAGE] = entry['image']
        if _INSTRUCTION in self.required:
            if self._instruction is None:
                self.accounting.reject(
                    'no_instruction', f'{policy.name} needs the episode instruction; '
                    f'nothing received on {self.param("instruction_topic")}')
                return
            obs[_INSTRUCTION], obs['domain'] = self._instruction, self.param('domain')
        try:
            action = np.asarray(policy.select_action(obs), np.float32).reshape(-1)
        except (KeyError, ValueError, TypeError) as err:
            self.accounting.reject('policy_input', f'{type(err).__name__}: {err}')
            return
        t1 = time.perf_counter()
        if action.size != self.param('action_dim') or not np.all(np.isfinite(action)):
            self.accounting.reject('policy_output', f'policy returned {action.tolist()}, '
                                   f'expected {self.param("action_dim")} finite values')
            return
        publisher.publish(Joy(header=entry['header'], axes=action.tolist()))
        t2 = time.perf_counter()
        self.accounting.count('published')
        self.timer.add('sync_wait', t0 - entry['first'])
        self.timer.add('policy', t1 - t0)
        self.timer.add('publish', t2 - t1)
        self.timer.add('total', t2 - entry['first'])

    def diagnostic_values(self) -> dict[str, str]:
        return {'policy': str(getattr(self.policy, 'name', 'none')),
                'inputs': ','.join(self.required), 'pending_stamps': str(len(self._joiner))}


def main(args=None) -> int:
    """Console script `policy_node`."""
    return run_node(PolicyNode, args)


if __name__ == '__main__':
    sys.exit(main())
