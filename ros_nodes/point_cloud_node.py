"""`point_cloud_node`: a point cloud (or depth + CameraInfo) in -> I2P-MAE embedding out.

Input (`input`): `cloud` = a sensor_msgs/PointCloud2 on `cloud_topic`, any field layout and
byte order, organised or not; only `x`, `y`, `z` are read (packed `rgb` and other fields are
ignored: the model has no colour); points with NaN or inf are dropped. `depth` = a depth
Image on `depth_topic` (`32FC1` m, `16UC1`/`mono16` mm; NaN, inf, <= 0 carry no point)
back-projected (`geometry.depth_to_points`) with the newest CameraInfo on `camera_info_topic`
(of the image's size) into the camera's optical frame. `crop_min`..`crop_max` keeps a box in
the input frame (the default +-inf keeps everything; one finite pair crops that axis alone).

Frame: I2P-MAE takes object clouds in the ShapeNet / ModelNet frame, **y up**.
`cloud_up_axis` names the input axis pointing up and picks a proper rotation into it:
- `-y` (default): a camera optical frame (x right, y down, z forward) looking roughly
  horizontally -> `(x, -y, -z)`: up is +y, the camera looks along -z (OpenGL's camera axes);
- `z`: a REP 103 body frame (x forward, y left, z up), seen from the robot -> `(-y, z, -x)`;
- `y`: the input already is y-up.
`cloud_to_model` (9 floats, row-major R, model = R @ input) overrides it; all zeros (the
default) = from `cloud_up_axis`.

Preprocessing, as upstream's fine-tuning/test: after the NaN drop and the crop, clouds with
fewer than the encoder's `num_groups[0]` points are refused; above `presample_factor` x N
points (N = the encoder's `num_points`) a random subset (seeded with `sample_seed` for every
cloud, so one cloud always gives one embedding) cuts it to that many, then farthest point
sampling (`layers.point_ops.farthest_point_sample`) keeps exactly N; below N the points are
repeated cyclically up to N (compiled graphs take N). Then the rotation, centring on the mean
and scaling to the unit sphere (farthest point at 1).

Model: `encoder_name` (any `i2p_mae*`) with `checkpoint_path` (official `pre-train.pth` or an
embodied_vision export; empty = RANDOM weights: a warning at configure, `weights: random` in
the diagnostics), compiled by `deploy.compile` for `backend`, default `eager` (onnxruntime
and tensorrt run the graph exported after the data-dependent FPS; opt-in). `classifier_path`
(a `save_point_classifier` artefact taking the same N) adds the class.

Outputs, stamped with the input's header:
- `embedding_topic`: sensor_msgs/Image `32FC1`, 1 x embed_dim (the encoder_node format);
- `class_topic` (with a classifier): **sensor_msgs/JointState**, `name` = class names and
  `position` = their softmax scores, best first, the `class_top_k` best (0 = all): `name[0]`
  is the prediction, `position[0]` its score. Why: vision_msgs (`Classification`: header +
  [class_id, score] hypotheses) has no PyPI wheel for the rclpy wheels this package runs on,
  and common_interfaces has no classification message; JointState is its standard stamped
  message of labelled float64 values, field for field the same content, read by bags,
  Foxglove, PlotJuggler and `ros2 topic echo` (keep it off `/joint_states`);
- `model_cloud_topic` (`publish_model_cloud`): the N-point model input, PointCloud2 x, y, z in
  `model_frame_id` (model coordinates: centred, unit sphere, y up; make it rviz's fixed
  frame; empty = the input's frame_id).

Lifecycle as voxel_node. Callbacks only check the message's structure; one worker thread
(`NewestItemWorker`) converts and embeds the newest input, so a large cloud never blocks the
executor and stale ones are dropped (counted), never queued. Rejections (per reason in the
diagnostics): `empty`, `malformed` (point_step, row_step, fields, data size), `no_xyz`,
`all_nan`, `too_few_points`, `depth_encoding`, `depth_malformed`, `depth_invalid`,
`camera_info`, `camera_info_missing`, `camera_info_size`, `non_finite_output`. Stages:
`queue`, `convert` (message -> xyz), `preprocess` (NaN drop, crop, subset), `sample` (FPS,
rotation, normalisation), `inference`, `classify`, `publish`, `total` (arrival -> published).
"""
from dataclasses import replace
import sys
import time

import numpy as np
from rclpy.lifecycle import TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, Image, JointState, PointCloud2
from std_msgs.msg import Header

from embodied_vision.ros_nodes.conversions import (
    camera_info_to_intrinsics,
    depth_to_metres,
    image_to_numpy,
    numpy_to_image,
)
from embodied_vision.ros_nodes.encoder_runtime import (
    check_runtime_parameter,
    compile_node_encoder,
    encoder_runtime_params,
    resolve_runtime,
)
from embodied_vision.ros_nodes.lifecycle_base import ManagedNode, run_node
from embodied_vision.ros_nodes.parameters import ParamSpec
from embodied_vision.ros_nodes.pointcloud import (
    numpy_to_pointcloud2,
    pointcloud2_to_numpy,
    pointfields_to_dtype,
)
from embodied_vision.ros_nodes.qos import qos_specs
from embodied_vision.ros_nodes.workers import NewestItemWorker

__all__ = ['DEPTH_ENCODINGS', 'UP_AXES', 'PointCloudNode', 'check_cloud', 'main',
           'model_rotation']

DEPTH_ENCODINGS = ('32FC1', '16UC1', 'mono16')
#: input up axis -> rotation R (model = R @ input) into the y-up model frame
UP_AXES = {
    'y': ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    '-y': ((1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, -1.0)),
    'z': ((0.0, -1.0, 0.0), (0.0, 0.0, 1.0), (-1.0, 0.0, 0.0)),
}
_INF = float('inf')


def model_rotation(up_axis: str, matrix) -> np.ndarray:
    """The 3x3 input-to-model rotation: `matrix` (row-major 9 floats) unless all zero, else
    the one of `up_axis`; raises ValueError when `matrix` is not a proper rotation."""
    values = np.asarray(matrix, np.float64).reshape(-1)
    if values.size != 9 or not np.all(np.isfinite(values)):
        raise ValueError(f'cloud_to_model must be 9 finite floats (a row-major 3x3 rotation),'
                         f' got {list(matrix)}')
    if not values.any():
        if up_axis not in UP_AXES:
            raise ValueError(f'cloud_up_axis={up_axis!r} is not one of {", ".join(UP_AXES)}')
        return np.array(UP_AXES[up_axis])
    rotation = values.reshape(3, 3)
    if np.abs(rotation @ rotation.T - np.eye(3)).max() > 1e-4 or np.linalg.det(rotation) < 0:
        raise ValueError(f'cloud_to_model={values.tolist()} is not a rotation (orthonormal, '
                         'determinant +1); all zeros = use cloud_up_axis')
    return rotation


def check_cloud(msg) -> tuple[str, str] | None:
    """The structural checks of a PointCloud2 (no pass over its points): None when it can be
    read, else `(reason, message)`."""
    height, width = int(msg.height), int(msg.width)
    if height * width == 0:
        return 'empty', f'PointCloud2 has no points (height={height}, width={width})'
    step, row_step = int(msg.point_step), int(msg.row_step)
    if step <= 0:
        return 'malformed', f'PointCloud2 point_step must be positive, got {step}'
    try:
        names = pointfields_to_dtype(msg.fields, step, bool(msg.is_bigendian)).names
    except ValueError as err:
        return 'malformed', str(err)
    missing = [axis for axis in ('x', 'y', 'z') if axis not in names]
    if missing:
        return 'no_xyz', (f'PointCloud2 has no field(s) {missing}; fields: {list(names)}; '
                          'expected x, y, z')
    if row_step < width * step:
        return 'malformed', (f'PointCloud2 row_step {row_step} is smaller than width * '
                             f'point_step = {width} * {step} = {width * step}')
    if len(msg.data) != height * row_step:
        return 'malformed', (f'PointCloud2 data has {len(msg.data)} bytes, expected height * '
                             f'row_step = {height} * {row_step} = {height * row_step}')
    return None


def _eager_default(specs: tuple[ParamSpec, ...]) -> tuple[ParamSpec, ...]:
    """The shared runtime parameters with `backend` defaulting to eager (module docstring)."""
    return tuple(replace(s, default='eager', description=s.description + '; default eager '
                         '(onnxruntime / tensorrt run the graph exported after FPS)')
                 if s.name == 'backend' else s for s in specs)


class PointCloudNode(ManagedNode):
    """Embeds (and classifies) point clouds with I2P-MAE; see the module docstring."""

    PARAMETERS = _eager_default(encoder_runtime_params(
        'i2p_mae_small', 'registered point-cloud encoder (i2p_mae*), arch or arch.tag',
        'weights: official I2P-MAE / Point-M2AE pre-train.pth or an embodied_vision export; '
        'empty = RANDOM weights')) + (
        ParamSpec('input', 'cloud', 'cloud: PointCloud2 on cloud_topic; depth: depth Image + '
                  'CameraInfo', choices=('cloud', 'depth'), read_only=True),
        ParamSpec('cloud_up_axis', '-y', 'input axis pointing up: -y camera optical frame, '
                  'z REP 103 body frame, y the model frame', choices=tuple(UP_AXES),
                  read_only=True),
        ParamSpec('cloud_to_model', [0.0] * 9, 'row-major 3x3 rotation input -> y-up model '
                  'frame; all zeros = from cloud_up_axis', read_only=True),
        ParamSpec('crop_min', [-_INF] * 3, 'min corner (x, y, z) of the kept box in the input '
                  'frame, metres; -inf = no bound', read_only=True),
        ParamSpec('crop_max', [_INF] * 3, 'max corner (x, y, z) of the kept box in the input '
                  'frame, metres; inf = no bound', read_only=True),
        ParamSpec('presample_factor', 8, 'clouds above this x num_points points are first cut '
                  'to that many by a seeded random subset (then FPS)', low=1, high=1000,
                  read_only=True),
        ParamSpec('sample_seed', 0, 'seed of the random subset, the same for every cloud',
                  low=0, high=2**31 - 1, read_only=True),
        ParamSpec('classifier_path', '', 'save_point_classifier artefact; empty = no class '
                  'output', read_only=True),
        ParamSpec('class_top_k', 1, 'classes published, best first (0 = all)', low=0,
                  high=100000),
        ParamSpec('publish_model_cloud', False, 'also publish the N-point model input',
                  read_only=True),
        ParamSpec('model_frame_id', 'point_cloud_model', 'frame_id of the model cloud (model '
                  "coordinates); empty = the input's frame_id"),
        ParamSpec('cloud_topic', 'points', 'sensor_msgs/PointCloud2 input (input: cloud)',
                  read_only=True),
        ParamSpec('depth_topic', 'depth/image_raw', 'sensor_msgs/Image depth input (32FC1 m, '
                  '16UC1 mm; input: depth)', read_only=True),
        ParamSpec('camera_info_topic', 'camera_info', 'sensor_msgs/CameraInfo of the depth '
                  'image (input: depth)', read_only=True),
        ParamSpec('embedding_topic', 'point_embedding', 'embedding output (sensor_msgs/Image '
                  '32FC1, 1 x embed_dim)', read_only=True),
        ParamSpec('class_topic', 'point_class', 'class output (sensor_msgs/JointState: names '
                  'and softmax scores, best first)', read_only=True),
        ParamSpec('model_cloud_topic', 'point_model_cloud', 'model input cloud output '
                  '(sensor_msgs/PointCloud2)', read_only=True),
    ) + qos_specs('input', 'sensor_data', 1, 'cloud, depth and camera-info subscriptions') \
        + qos_specs('output', 'reliable', 10, 'embedding, class and cloud publishers')
    STAGES = ('queue', 'convert', 'preprocess', 'sample', 'inference', 'classify', 'publish',
              'total')

    def __init__(self, node_name: str = 'point_cloud_node', **kwargs):
        self.model = None
        self.classifier = None  # PointClassifier, with classifier_path
        self.num_points = 0
        self.min_points = 0
        self.rotation: np.ndarray | None = None
        self.configure_error = ''
        self._weights = ''
        self._crop: tuple[np.ndarray, np.ndarray] | None = None
        self._device = None
        self._outputs: dict = {}
        self._inputs: list = []
        self._camera_info: tuple[np.ndarray, int, int] | None = None
        self._sizes: dict[str, int] = {}  # points of the newest cloud at each step
        super().__init__(node_name, **kwargs)
        self._worker = NewestItemWorker(self.process, 'point_cloud_worker',
                                        self.accounting.reject)

    def validate_parameter(self, name: str, value) -> str:
        reason = check_runtime_parameter(name, value)
        if reason:
            return reason
        if name in ('crop_min', 'crop_max'):
            values = list(value) if isinstance(value, (list, tuple)) else [value]
            if len(values) != 3 or not all(isinstance(v, float) and not np.isnan(v)
                                           for v in values):
                return f'{name}={value!r} must be three floats (x, y, z), metres, or +-inf'
        if name == 'cloud_to_model':
            try:
                model_rotation('y', value if isinstance(value, (list, tuple)) else [value])
            except ValueError as err:
                return str(err)
        return ''

    # ----------------------------------------------------------------------- lifecycle
    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            self._build_model()
        except Exception as err:  # any load/compile failure: report it, stay unconfigured
            self.configure_error = f'{type(err).__name__}: {err}'
            self.get_logger().error(f'configure failed: {self.configure_error}')
            self.model = self.classifier = None
            return TransitionCallbackReturn.FAILURE
        self.configure_error = ''
        qos, create = self.qos('output'), self.create_lifecycle_publisher
        self._outputs = {'embedding': create(Image, self.param('embedding_topic'), qos)}
        if self.classifier is not None:
            self._outputs['class'] = create(JointState, self.param('class_topic'), qos)
        if self.param('publish_model_cloud'):
            self._outputs['cloud'] = create(PointCloud2, self.param('model_cloud_topic'), qos)
        return TransitionCallbackReturn.SUCCESS

    def _build_model(self) -> None:
        import torch

        from embodied_vision import create_encoder
        low = np.asarray(self.param('crop_min'), np.float64)
        high = np.asarray(self.param('crop_max'), np.float64)
        if np.any(high <= low):
            raise ValueError(f'crop_max {high.tolist()} must exceed crop_min {low.tolist()} '
                             'on every axis')
        self._crop = None if np.all(np.isinf(low) & np.isinf(high)) else (low, high)
        self.rotation = model_rotation(self.param('cloud_up_axis'),
                                       self.param('cloud_to_model'))
        device, backend, options = resolve_runtime(self)
        checkpoint = self.param('checkpoint_path')
        encoder = create_encoder(self.param('encoder_name'), checkpoint=checkpoint or None)
        if encoder.input_contract.modality != 'points' or not hasattr(encoder, 'num_groups'):
            raise ValueError(f'{encoder.name} takes {encoder.input_contract.modality} input; '
                             'point_cloud_node needs an I2P-MAE point encoder (i2p_mae*)')
        self.num_points = int(encoder.input_contract.default_size[0])
        self.min_points = int(encoder.num_groups[0])
        self._weights = checkpoint or 'random'
        if not checkpoint:
            self.get_logger().warning(
                f'checkpoint_path is empty: {encoder.name} has RANDOM weights, its embeddings '
                'mean nothing; pass the I2P-MAE pre-train.pth or an embodied_vision export')
        self._device = torch.device(device)
        self.model = compile_node_encoder(self, encoder, device, backend, (self.num_points,),
                                          torch.float32, options)
        warm = self.model.encoder.example_inputs(1, (self.num_points,))[0]
        for _ in range(2):
            self.model(warm)
        if self.param('classifier_path'):
            self.classifier = self._load_classifier(warm)
        self.get_logger().info(
            f'{encoder.name} ({encoder.embed_dim}-d, {self.num_points} points) on '
            f'{self.model.backend}/{device}, weights {self._weights}, built in '
            f'{self.model.build_seconds:.1f} s, parity {self.model.parity}')

    def _load_classifier(self, warm):
        import torch

        from embodied_vision.downstream.point_classification import load_point_classifier
        path = self.param('classifier_path')
        model = load_point_classifier(path).to(self._device).eval()
        if model.num_points != self.num_points:
            raise ValueError(f'the classifier {path} takes {model.num_points} points but '
                             f'{self.param("encoder_name")} takes {self.num_points}; use an '
                             'encoder of the same size')
        with torch.inference_mode():
            model(warm.to(self._device))
        self.get_logger().info(f'classes: {len(model.class_names)} {model.class_names} '
                               f'from {path}')
        return model

    def on_activate(self, state) -> TransitionCallbackReturn:
        self._camera_info = None
        self._worker.start()
        qos, sub = self.qos('input'), self.create_subscription
        if self.param('input') == 'cloud':
            self._inputs = [sub(PointCloud2, self.param('cloud_topic'), self._on_cloud, qos)]
        else:
            self._inputs = [
                sub(Image, self.param('depth_topic'), self._on_depth, qos),
                sub(CameraInfo, self.param('camera_info_topic'), self._on_camera_info, qos)]
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._stop()
        return super().on_deactivate(state)

    def _stop(self) -> None:
        self._inputs = self.drop_subscriptions(self._inputs)
        self._worker.stop()

    def release(self) -> None:
        self._stop()
        self._outputs = self.drop_publishers(self._outputs)
        self.classifier = None
        if self.model is not None:
            self.drop_model(str(self.model.device).startswith('cuda'))

    # ----------------------------------------------------------------------- inputs
    def _on_cloud(self, msg: PointCloud2) -> None:
        arrived = time.perf_counter()
        self.accounting.count('received')
        problem = check_cloud(msg)
        if problem is not None:
            self.accounting.reject(*problem)
            return
        self._submit(('cloud', msg, msg.header, arrived))

    def _on_depth(self, msg: Image) -> None:
        arrived = time.perf_counter()
        self.accounting.count('received')
        if msg.encoding not in DEPTH_ENCODINGS:
            self.accounting.reject('depth_encoding', f'depth encoding {msg.encoding!r} is not '
                                   f'allowed; allowed: {", ".join(DEPTH_ENCODINGS)}')
            return
        try:
            raw = image_to_numpy(msg)
        except ValueError as err:
            self.accounting.reject('depth_malformed', str(err))
            return
        info = self._camera_info
        if info is None:
            self.accounting.reject('camera_info_missing', 'no CameraInfo on '
                                   f'{self.param("camera_info_topic")} yet: depth dropped')
            return
        k, width, height = info
        if (width, height) != (raw.shape[1], raw.shape[0]):
            self.accounting.reject('camera_info_size', f'CameraInfo is for {width}x{height}, '
                                   f'the depth image is {raw.shape[1]}x{raw.shape[0]}')
            return
        self._submit(('depth', (raw, msg.encoding, k), msg.header, arrived))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.accounting.count('received')
        try:
            k = camera_info_to_intrinsics(msg)['K']
        except ValueError as err:
            self.accounting.reject('camera_info', str(err))
            return
        if not (np.all(np.isfinite(k)) and k[0, 0] > 0 and k[1, 1] > 0):
            self.accounting.reject('camera_info', f'CameraInfo K must be finite with fx, fy '
                                   f'> 0, got {k.reshape(-1).tolist()}')
            return
        self._camera_info = (k, int(msg.width), int(msg.height))

    def _submit(self, item: tuple) -> None:
        if self._worker.submit(item):
            self.accounting.count('dropped')  # an unprocessed input was replaced

    # ----------------------------------------------------------------------- model
    def to_points(self, kind: str, payload) -> np.ndarray | None:
        """A checked cloud message or `(depth, encoding, K)` -> (M, 3) float32 xyz in the
        input frame (not yet filtered); None when rejected."""
        from embodied_vision.geometry.pointcloud import depth_to_points
        if kind == 'cloud':
            try:
                return pointcloud2_to_numpy(payload, ('x', 'y', 'z'), skip_nans=False)
            except ValueError as err:
                self.accounting.reject('malformed', str(err))
                return None
        raw, encoding, k = payload
        points, _ = depth_to_points(depth_to_metres(raw, encoding), k)
        if not len(points):
            self.accounting.reject('depth_invalid', f'depth frame {raw.shape[1]}x'
                                   f'{raw.shape[0]} has no valid pixel (NaN, inf, <= 0)')
            return None
        return points

    def select(self, points: np.ndarray) -> np.ndarray | None:
        """Drop non-finite points, crop, refuse too few, cut to `presample_factor` x N by the
        seeded random subset; None when rejected."""
        total = len(points)
        points = points[np.isfinite(points).all(axis=1)]
        finite = len(points)
        if not finite:
            self.accounting.reject('all_nan', f'none of the {total} points is finite')
            return None
        if self._crop is not None:
            low, high = self._crop
            points = points[((points >= low) & (points <= high)).all(axis=1)]
        self._sizes = {'points_in': total, 'points_finite': finite, 'points_kept': len(points)}
        if len(points) < self.min_points:
            where = ' inside the crop box' if self._crop is not None else ''
            self.accounting.reject('too_few_points', f'{len(points)} finite points{where} (of '
                                   f'{total}); the encoder needs at least {self.min_points}')
            return None
        limit = self.param('presample_factor') * self.num_points
        if len(points) > limit:
            rng = np.random.default_rng(self.param('sample_seed'))
            points = points[np.sort(rng.choice(len(points), limit, replace=False))]
        return points

    def model_input(self, points: np.ndarray):
        """(M, 3) selected points -> (1, N, 3) float32 tensor: FPS to N (or cyclic repeat up
        to N), rotation into the model frame, centred on the mean, farthest point at 1."""
        import torch

        from embodied_vision.layers.point_ops import farthest_point_sample
        x = torch.from_numpy(np.ascontiguousarray(points, np.float32))[None]
        if x.shape[1] > self.num_points:
            x = x[:, farthest_point_sample(x, self.num_points)[0]]
        elif x.shape[1] < self.num_points:
            x = x[:, torch.arange(self.num_points) % x.shape[1]]
        x = x @ torch.as_tensor(self.rotation, dtype=torch.float32).T
        x = x - x.mean(dim=1, keepdim=True)
        return x / x.norm(dim=-1).amax().clamp_min(1e-8)

    def process(self, kind: str, payload, header, arrived: float) -> np.ndarray | None:
        """Embed one input and publish the outputs stamped like `header`; returns the (1, D)
        embedding, or None when the input or the output is rejected."""
        import torch
        t0 = time.perf_counter()
        points = self.to_points(kind, payload)
        t1 = time.perf_counter()
        points = None if points is None else self.select(points)
        if points is None:
            return None
        t2 = time.perf_counter()
        x = self.model_input(points)
        t3 = time.perf_counter()
        embedding = self.model(x).float().cpu().numpy()
        t4 = time.perf_counter()
        if not np.all(np.isfinite(embedding)):
            self.accounting.reject('non_finite_output', 'the encoder returned NaN or inf')
            return None
        scores = None
        if self.classifier is not None:
            with torch.inference_mode():
                logits = self.classifier(x.to(self._device))
            scores = torch.softmax(logits.double(), dim=1)[0].cpu().numpy()
        t5 = time.perf_counter()
        self._publish(header, embedding, scores, x)
        t6 = time.perf_counter()
        self.accounting.count('published')
        for stage, seconds in (('queue', t0 - arrived), ('convert', t1 - t0),
                               ('preprocess', t2 - t1), ('sample', t3 - t2),
                               ('inference', t4 - t3), ('classify', t5 - t4),
                               ('publish', t6 - t5), ('total', t6 - arrived)):
            if stage != 'classify' or scores is not None:
                self.timer.add(stage, seconds)
        return embedding

    def _publish(self, header, embedding: np.ndarray, scores, x) -> None:
        self._outputs['embedding'].publish(numpy_to_image(embedding, '32FC1', header=header))
        if scores is not None:
            order = np.argsort(-scores, kind='stable')[:self.param('class_top_k') or None]
            names = self.classifier.class_names
            self._outputs['class'].publish(JointState(
                header=header, name=[names[i] for i in order],
                position=[float(scores[i]) for i in order]))
        if 'cloud' in self._outputs:
            frame = self.param('model_frame_id') or header.frame_id
            self._outputs['cloud'].publish(numpy_to_pointcloud2(
                x[0].numpy(), header=Header(stamp=header.stamp, frame_id=frame)))

    def diagnostic_values(self) -> dict[str, str]:
        values = {f'rejected_{k}': str(n) for k, n in self.accounting.rejections().items()}
        values.update({k: str(n) for k, n in self._sizes.items()})
        if self.configure_error:
            values['configure_error'] = self.configure_error
        if self.param('input') == 'depth':
            values['camera_info'] = 'received' if self._camera_info is not None else 'waiting'
        if self.classifier is not None:
            values['classes'] = ','.join(self.classifier.class_names)
        if self.model is not None:
            parity = self.model.parity
            values.update({'encoder': self.model.name, 'backend': self.model.backend,
                           'device': str(self.model.device), 'weights': self._weights,
                           'embed_dim': str(self.model.embed_dim),
                           'num_points': str(self.num_points),
                           'cloud_to_model': ','.join(f'{v:g}' for v in self.rotation.ravel()),
                           'parity_max_abs_error':
                               f'{parity.max_abs_error:.3g}' if parity else 'n/a'})
        return values


def main(args=None) -> int:
    """Console script `point_cloud_node`."""
    return run_node(PointCloudNode, args)


if __name__ == '__main__':
    sys.exit(main())
