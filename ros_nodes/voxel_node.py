"""`voxel_node`: posed RGB-D views in -> NeRF-MAE grid embedding + occupied-voxel cloud out.

Inputs, one camera with registered colour and depth (an RGB-D driver's aligned depth, the
sim's cameras): `image_topic` (sensor_msgs/Image rgb8, bgr8, rgba8, bgra8, mono8),
`depth_topic` (`32FC1` metres or `16UC1`/`mono16` millimetres, REP 118, the image's size),
`camera_info_topic` (the newest CameraInfo is used; its size must be the image's) and
`pose_topic`: the pose of the camera's optical frame (OpenCV axes) in `frame_id`, a
geometry_msgs/PoseStamped or, with `pose_type: TransformStamped`, a TransformStamped
(`frame_id` -> the camera). tf2 has no PyPI wheel, so the pose comes on a topic; on a robot a
small relay turns /tf into it (README).

RGB and depth are paired by exact stamp (`StampJoiner`); the pose is looked up at the image
stamp (`pose_sync.PoseBuffer`: the view waits for a pose stamped at or after it, then takes
the nearest, at most `max_pose_age` away). The newest `window` posed views are fused over
the box `bbox_min`..`bbox_max` (default the sim's `WORKSPACE_BBOX`) by
`geometry.fuse_radiance_grid`, the longest side with `max_resolution` samples (default the
encoder's resolution; the encoder zero-pads the rest). One worker thread
(`NewestItemWorker`) re-fuses the whole window and runs the encoder on the newest one, so
stale windows are dropped (counted), never queued; fusing costs window x voxels.

Outputs, both stamped with the newest view's stamp and `frame_id` (the grid's frame):
`embedding_topic`, the pooled embedding as sensor_msgs/Image `32FC1` 1 x embed_dim (the
encoder_node format), and `cloud_topic`, a PointCloud2 of the voxels with alpha >
`occupied_alpha`: float32 x, y, z (voxel centres) + packed rgb, for rviz, and with
`semantics_path` (a voxel-labelling model, `embodied-vision train
experiment=nerf_mae_semantics`, run in torch on `device`) a uint32 `label` field per voxel,
the class index into the model's class names (listed in the diagnostics, `classes`).

Lifecycle as encoder_node: `on_configure` builds the voxel-grid encoder, checks the box,
compiles it at the grid's size (parity-checked) and warms it up, or returns FAILURE.

Bad input is logged (throttled), counted (`rejected`, and `rejected_<reason>` in the
diagnostics) and dropped: `rgb_encoding` / `rgb_malformed`, `depth_encoding` /
`depth_malformed`, `depth_invalid` (no finite positive pixel; NaN, inf, zero and negative
pixels are otherwise ignored), `size_mismatch` (RGB vs depth), `camera_info` (uncalibrated or
malformed), `camera_info_missing`, `camera_info_size`, `pose_invalid` (NaN/inf, not a unit
quaternion), `pose_frame` (not `frame_id`), `stale_pose`, `missing_pose`,
`non_finite_output`. Stages timed: `sync_wait` (first part's arrival -> view posed),
`convert` (RGB + depth decode), `queue`, `fuse` (grid + tensor), `inference`, `publish`,
`labels` (the voxel-labelling model, when set), `total` (first arrival -> published).
"""
from collections import deque
import sys
import threading
import time

from geometry_msgs.msg import PoseStamped, TransformStamped
import numpy as np
from rclpy.lifecycle import TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from embodied_vision.ros_nodes.accounting import colour_frame
from embodied_vision.ros_nodes.approximate_sync import stamp_ns
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
from embodied_vision.ros_nodes.exact_sync import StampJoiner
from embodied_vision.ros_nodes.lifecycle_base import ManagedNode, run_node
from embodied_vision.ros_nodes.parameters import ParamSpec
from embodied_vision.ros_nodes.pointcloud import numpy_to_pointcloud2
from embodied_vision.ros_nodes.pose_sync import PoseBuffer, rigid_from_pose
from embodied_vision.ros_nodes.qos import qos_specs
from embodied_vision.ros_nodes.workers import NewestItemWorker

__all__ = ['DEPTH_ENCODINGS', 'VoxelNode', 'main']

DEPTH_ENCODINGS = ('32FC1', '16UC1', 'mono16')
POSE_TYPES = {'PoseStamped': PoseStamped, 'TransformStamped': TransformStamped}
# the sim's WORKSPACE_BBOX (embodied_vision.sim.perception), copied: nodes do not import sim
WORKSPACE_MIN = [-0.3, -0.35, -0.01]
WORKSPACE_MAX = [0.3, 0.35, 0.3]


class VoxelNode(ManagedNode):
    """Fuses posed RGB-D views into a grid and embeds it; see the module docstring."""

    PARAMETERS = encoder_runtime_params(
        'nerf_mae_swin_s', 'registered voxel-grid encoder, arch or arch.tag '
        '(`embodied-vision list`)', 'weights file or directory (official NeRF-MAE or '
        'embodied_vision format); empty = random init') + (
        ParamSpec('bbox_min', WORKSPACE_MIN, 'min corner (x, y, z) of the fused box in '
                  'frame_id, metres', read_only=True),
        ParamSpec('bbox_max', WORKSPACE_MAX, 'max corner (x, y, z) of the fused box in '
                  'frame_id, metres', read_only=True),
        ParamSpec('max_resolution', 0, 'samples along the longest box side; 0 = the '
                  "encoder's resolution (the most it takes)", low=0, high=4096, read_only=True),
        ParamSpec('surface_thickness', 0.0, 'half-width of the fused surface band, metres; '
                  '0 = one voxel', low=0.0, high=100.0, read_only=True),
        ParamSpec('window', 4, 'newest posed views fused per grid', low=1, high=1000,
                  read_only=True),
        ParamSpec('occupied_alpha', 0.5, 'voxels with alpha above this are published in the '
                  'cloud', low=0.0, high=1.0),
        ParamSpec('frame_id', 'world', 'world frame: of the poses, the box and both outputs',
                  read_only=True),
        ParamSpec('pose_type', 'PoseStamped', 'message type on pose_topic',
                  choices=tuple(POSE_TYPES), read_only=True),
        ParamSpec('max_pose_age', 0.05, 'largest distance in seconds between an image stamp '
                  'and the stamp of the pose used for it', low=0.0, high=3600.0),
        ParamSpec('pose_queue_size', 3, 'views kept waiting for a pose stamped at or after '
                  'them (beyond: the oldest is decided with the poses received)', low=1,
                  high=1000, read_only=True),
        ParamSpec('sync_queue_size', 10, 'incomplete stamps kept while pairing RGB and depth',
                  low=1, high=10000),
        ParamSpec('image_topic', 'image_raw', 'sensor_msgs/Image colour input', read_only=True),
        ParamSpec('depth_topic', 'depth/image_raw', 'sensor_msgs/Image depth (32FC1 m, '
                  '16UC1 mm), registered with the colour image', read_only=True),
        ParamSpec('camera_info_topic', 'camera_info', 'sensor_msgs/CameraInfo of the image',
                  read_only=True),
        ParamSpec('pose_topic', 'pose', 'camera optical-frame pose in frame_id', read_only=True),
        ParamSpec('embedding_topic', 'voxel_embedding', 'embedding output (sensor_msgs/Image '
                  '32FC1, 1 x embed_dim)', read_only=True),
        ParamSpec('cloud_topic', 'voxel_cloud', 'occupied voxels (sensor_msgs/PointCloud2 '
                  'x, y, z, rgb[, label])', read_only=True),
        ParamSpec('semantics_path', '', 'voxel-labelling model directory (nerf_mae_semantics '
                  'export); empty = the cloud has no label field', read_only=True),
    ) + qos_specs('input', 'sensor_data', 5, 'image, depth, camera-info and pose subscriptions') \
        + qos_specs('output', 'reliable', 10, 'embedding and cloud publishers')
    STAGES = ('sync_wait', 'convert', 'queue', 'fuse', 'inference', 'labels', 'publish',
              'total')

    def __init__(self, node_name: str = 'voxel_node', **kwargs):
        self.model = None
        self.semantics = None  # VoxelSemanticsModel, with semantics_path
        self.resolution: tuple[int, int, int] | None = None  # the fused grid's (X, Y, Z)
        self.configure_error = ''
        self._bbox: tuple[np.ndarray, np.ndarray] | None = None
        self._max_resolution = 0
        self._outputs: dict = {}
        self._inputs: list = []
        self._joiner = StampJoiner()
        self._poses: PoseBuffer | None = None
        self._window: deque = deque()
        self._window_lock = threading.Lock()
        self._camera_info: tuple[np.ndarray, int, int] | None = None
        self._invalid_depth = 0.0  # fraction of ignored pixels in the newest depth frame
        self._pose_gap: float | None = None
        super().__init__(node_name, **kwargs)
        self._worker = NewestItemWorker(self.process, 'voxel_worker', self.accounting.reject)
        self.after_parameters_set(self._after_set_parameters)

    def validate_parameter(self, name: str, value) -> str:
        reason = check_runtime_parameter(name, value)
        if reason:
            return reason
        if name in ('bbox_min', 'bbox_max'):
            values = list(value) if isinstance(value, (list, tuple)) else [value]
            if len(values) != 3 or not all(isinstance(v, float) and np.isfinite(v)
                                           for v in values):
                return f'{name}={value!r} must be three finite floats (x, y, z), metres'
        return ''

    def _after_set_parameters(self, params) -> None:
        for p in params:
            if p.name == 'max_pose_age' and self._poses is not None:
                self._poses.max_age = p.value

    # ----------------------------------------------------------------------- lifecycle
    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            self._build_model()
        except Exception as err:  # any load/compile failure: report it, stay unconfigured
            self.configure_error = f'{type(err).__name__}: {err}'
            self.get_logger().error(f'configure failed: {self.configure_error}')
            self.model = self.semantics = None
            return TransitionCallbackReturn.FAILURE
        self.configure_error = ''
        qos, create = self.qos('output'), self.create_lifecycle_publisher
        self._outputs = {
            'embedding': create(Image, self.param('embedding_topic'), qos),
            'cloud': create(PointCloud2, self.param('cloud_topic'), qos)}
        return TransitionCallbackReturn.SUCCESS

    def _build_model(self) -> None:
        import torch

        from embodied_vision import create_encoder
        from embodied_vision.geometry import grid_resolution
        low = np.asarray(self.param('bbox_min'), np.float64)
        high = np.asarray(self.param('bbox_max'), np.float64)
        if np.any(high <= low):
            raise ValueError(f'bbox_max {high.tolist()} must exceed bbox_min {low.tolist()} '
                             'on every axis')
        device, backend, options = resolve_runtime(self)
        encoder = create_encoder(self.param('encoder_name'),
                                 checkpoint=self.param('checkpoint_path') or None)
        contract = encoder.input_contract
        if contract.modality != 'voxels':
            raise ValueError(f'{encoder.name} takes {contract.modality} input; voxel_node '
                             'needs a voxel-grid encoder (nerf_mae_*)')
        limit = int(contract.max_size or max(contract.default_size))
        wanted = self.param('max_resolution') or limit
        if wanted > limit:
            raise ValueError(f'max_resolution={wanted} exceeds the {limit}^3 grids '
                             f'{encoder.name} takes')
        self._bbox, self._max_resolution = (low, high), int(wanted)
        self.resolution = tuple(int(r) for r in grid_resolution(low, high, wanted))
        self.model = compile_node_encoder(self, encoder, device, backend, self.resolution,
                                          torch.float32, options)
        warm = torch.zeros(1, 4, *self.resolution)
        for _ in range(2):
            self.model(warm)
        if self.param('semantics_path'):
            self.semantics = self._load_semantics(device, warm)
        self.get_logger().info(
            f'{encoder.name} ({encoder.embed_dim}-d) on {self.model.backend}/{device}, grid '
            f'{"x".join(map(str, self.resolution))} over {low.tolist()}..{high.tolist()}, '
            f'built in {self.model.build_seconds:.1f} s, parity {self.model.parity}')

    def _load_semantics(self, device: str, warm):
        from embodied_vision.downstream import load_voxel_semantics_model
        model = load_voxel_semantics_model(self.param('semantics_path'), device)
        if max(self.resolution) > model.backbone.resolution:
            raise ValueError(f'the grid {list(self.resolution)} exceeds the '
                             f'{model.backbone.resolution}^3 grids of the voxel-labelling '
                             f'model {self.param("semantics_path")}; lower max_resolution')
        model.predict(warm.to(device))
        self.get_logger().info(f'voxel labels: {len(model.class_names)} classes '
                               f'{model.class_names} from {self.param("semantics_path")}')
        return model

    def on_activate(self, state) -> TransitionCallbackReturn:
        self._joiner.clear()
        self._poses = PoseBuffer(self.param('max_pose_age'), self.param('pose_queue_size'))
        with self._window_lock:
            self._window = deque(maxlen=self.param('window'))
        self._camera_info = None
        self._worker.start()
        qos, sub = self.qos('input'), self.create_subscription
        self._inputs = [
            sub(Image, self.param('image_topic'), self._on_image, qos),
            sub(Image, self.param('depth_topic'), self._on_depth, qos),
            sub(CameraInfo, self.param('camera_info_topic'), self._on_camera_info, qos),
            sub(POSE_TYPES[self.param('pose_type')], self.param('pose_topic'), self._on_pose,
                qos)]
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
        self.semantics = None
        if self.model is not None:
            self.drop_model(str(self.model.device).startswith('cuda'))

    # ----------------------------------------------------------------------- inputs
    def _on_image(self, msg: Image) -> None:
        arrived = time.perf_counter()
        self.accounting.count('received')
        frame = colour_frame(msg, self.accounting, 'rgb')
        if frame is not None:
            self._add(msg.header, 'rgb', frame, arrived)

    def _on_depth(self, msg: Image) -> None:
        arrived = time.perf_counter()
        self.accounting.count('received')
        depth = self.convert_depth(msg)
        if depth is not None:
            self._add(msg.header, 'depth', depth, arrived)

    def convert_depth(self, msg: Image) -> np.ndarray | None:
        """Depth Image -> float32 metres (H, W), NaN where invalid (NaN, inf, <= 0); None
        (rejected and counted) for a bad encoding, a malformed image or no valid pixel."""
        if msg.encoding not in DEPTH_ENCODINGS:
            self.accounting.reject('depth_encoding', f'depth encoding {msg.encoding!r} is not '
                                   f'allowed; allowed: {", ".join(DEPTH_ENCODINGS)}')
            return None
        try:
            raw = image_to_numpy(msg)
        except ValueError as err:
            self.accounting.reject('depth_malformed', str(err))
            return None
        depth = depth_to_metres(raw, msg.encoding)
        if depth is raw or not depth.flags.writeable:  # a view of the message: copy
            depth = np.array(depth, np.float32)
        invalid = ~np.isfinite(depth)
        invalid[~invalid] = depth[~invalid] <= 0
        if invalid.all():
            self.accounting.reject('depth_invalid', f'depth frame {msg.width}x{msg.height} '
                                   'has no valid pixel (all NaN, inf, zero or negative)')
            return None
        depth[invalid] = np.nan
        self._invalid_depth = float(invalid.mean())
        return depth

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.accounting.count('received')
        try:
            intrinsics = camera_info_to_intrinsics(msg)
        except ValueError as err:
            self.accounting.reject('camera_info', str(err))
            return
        k = intrinsics['K']
        if not (np.all(np.isfinite(k)) and k[0, 0] > 0 and k[1, 1] > 0):
            self.accounting.reject('camera_info', f'CameraInfo K must be finite with fx, fy '
                                   f'> 0, got {k.reshape(-1).tolist()}')
            return
        self._camera_info = (k, intrinsics['width'], intrinsics['height'])

    def _on_pose(self, msg) -> None:
        self.accounting.count('received')
        frame = msg.header.frame_id.lstrip('/')
        if frame and frame != self.param('frame_id'):
            self.accounting.reject('pose_frame', f'pose is in frame {frame!r}, expected '
                                   f'{self.param("frame_id")!r} (parameter frame_id)')
            return
        try:
            pose = rigid_from_pose(msg)
        except ValueError as err:
            self.accounting.reject('pose_invalid', str(err))
            return
        poses = self._poses
        if poses is not None:
            self._posed(poses.add_pose(stamp_ns(msg.header.stamp), pose))

    # ----------------------------------------------------------------------- pairing
    def _add(self, header, part: str, value, arrived: float) -> None:
        convert = time.perf_counter() - arrived
        entry, dropped = self._joiner.add(header, part, value, ('rgb', 'depth'),
                                          self.param('sync_queue_size'), arrived, convert)
        if dropped:
            self.accounting.count('dropped', dropped)
        if entry is None:
            return
        view = self._check_view(entry)
        poses = self._poses
        if view is not None and poses is not None:
            self._posed(poses.add_view(stamp_ns(entry['header'].stamp), view))

    def _check_view(self, entry: dict) -> dict | None:
        """A joined RGB + depth entry -> view dict; None (rejected) when the sizes differ."""
        rgb, depth = entry['rgb'], entry['depth']
        if rgb.shape[:2] != depth.shape:
            self.accounting.reject('size_mismatch', f'RGB is {rgb.shape[1]}x{rgb.shape[0]} '
                                   f'but depth is {depth.shape[1]}x{depth.shape[0]}')
            return None
        return {'rgb': rgb, 'depth': depth, 'header': entry['header'],
                'first': entry['first'], 'convert': entry['convert']}

    def _intrinsics(self, depth: np.ndarray) -> np.ndarray | None:
        """K of the newest CameraInfo, checked when the view is posed (the CameraInfo of a
        frame may arrive after its images); None (rejected) when missing or of another size."""
        info = self._camera_info
        if info is None:
            self.accounting.reject('camera_info_missing', 'no CameraInfo on '
                                   f'{self.param("camera_info_topic")} yet: view dropped')
            return None
        k, width, height = info
        if (width, height) != (depth.shape[1], depth.shape[0]):
            self.accounting.reject('camera_info_size', f'CameraInfo is for {width}x{height}, '
                                   f'the image is {depth.shape[1]}x{depth.shape[0]}')
            return None
        return k

    def _posed(self, decided: list[tuple]) -> None:
        """Views whose pose lookup is decided: rejected, or added to the window (whose
        snapshot goes to the worker)."""
        for view, pose, reason, gap in decided:
            stamp = view['header'].stamp
            when = f'{stamp.sec}.{stamp.nanosec:09d}'
            if reason == 'missing_pose':
                self.accounting.reject(reason, f'no pose on {self.param("pose_topic")} for '
                                       f'the image stamped {when}')
                continue
            if reason:
                self.accounting.reject(reason, f'the nearest pose is {gap:.3f} s from the '
                                       f'image stamped {when}; max_pose_age is '
                                       f'{self.param("max_pose_age")} s')
                continue
            k = self._intrinsics(view['depth'])
            if k is None:
                continue
            self._pose_gap = gap
            self.accounting.count('views')
            posed = {'rgb': view['rgb'], 'depth': view['depth'], 'K': k, 'T_world_cam': pose}
            with self._window_lock:
                self._window.append((stamp_ns(stamp), view['header'], posed))
                window = list(self._window)
            header = max(window, key=lambda w: w[0])[1]
            item = ([w[2] for w in window], header, view['first'], view['convert'],
                    time.perf_counter())
            if self._worker.submit(item):
                self.accounting.count('dropped')  # an unprocessed window was replaced

    # ----------------------------------------------------------------------- model
    def fuse(self, views: list[dict]):
        """Posed views -> `RadianceGrid` over the box at the configured resolution."""
        from embodied_vision.geometry import fuse_radiance_grid
        low, high = self._bbox
        return fuse_radiance_grid(views, low, high, self._max_resolution,
                                  self.param('surface_thickness') or None)

    def process(self, views: list[dict], header, first: float, convert: float,
                posed_at: float) -> np.ndarray | None:
        """Fuse `views`, embed the grid and publish both outputs stamped like `header`;
        returns the (1, D) embedding, or None when it is not finite (rejected)."""
        t0 = time.perf_counter()
        grid = self.fuse(views)
        batch = grid.to_tensor()[None]
        t1 = time.perf_counter()
        embedding = self.model(batch).float().cpu().numpy()
        t2 = time.perf_counter()
        if not np.all(np.isfinite(embedding)):
            self.accounting.reject('non_finite_output', 'the encoder returned NaN or inf')
            return None
        labels = None
        if self.semantics is not None:
            device = next(self.semantics.parameters()).device
            labels = self.semantics.predict(batch.to(device))[0].cpu().numpy()
        t_labels = time.perf_counter()
        out = Header(stamp=header.stamp, frame_id=self.param('frame_id'))
        self._outputs['embedding'].publish(numpy_to_image(embedding, '32FC1', header=out))
        self._outputs['cloud'].publish(self.cloud_message(grid, out, labels))
        t3 = time.perf_counter()
        self.accounting.count('published')
        for stage, seconds in (('sync_wait', posed_at - first - convert), ('convert', convert),
                               ('queue', t0 - posed_at), ('fuse', t1 - t0),
                               ('inference', t2 - t1), ('labels', t_labels - t2),
                               ('publish', t3 - t_labels),
                               ('total', t3 - first)):
            self.timer.add(stage, seconds)
        return embedding

    def cloud_message(self, grid, header, labels: np.ndarray | None = None) -> PointCloud2:
        """Occupied voxels (alpha > `occupied_alpha`) as x, y, z (centres) + packed rgb, and
        the `label` of each from `labels` (the grid's `(X, Y, Z)` classes) when given."""
        i, j, k = np.nonzero(grid.alpha > self.param('occupied_alpha'))
        xs, ys, zs = grid.axes()
        points = np.stack([xs[i], ys[j], zs[k]], axis=1)
        colours = np.clip(np.rint(grid.rgbsigma[i, j, k, :3] * 255.0), 0, 255)
        return numpy_to_pointcloud2(points, colours.astype(np.uint8), header=header,
                                    labels=None if labels is None else labels[i, j, k])

    def diagnostic_values(self) -> dict[str, str]:
        with self._window_lock:
            filled = len(self._window)
        values = {'window': f'{filled}/{self.param("window")}',
                  'pending_stamps': str(len(self._joiner)),
                  'invalid_depth_fraction': f'{self._invalid_depth:.4f}',
                  'pose_gap_s': 'n/a' if self._pose_gap is None else f'{self._pose_gap:.6f}',
                  'camera_info': 'received' if self._camera_info is not None else 'waiting'}
        poses = self._poses
        if poses is not None:
            values['poses_kept'], values['views_waiting_for_pose'] = map(str, poses.pending())
        values.update({f'rejected_{k}': str(n)
                       for k, n in self.accounting.rejections().items()})
        if self.configure_error:
            values['configure_error'] = self.configure_error
        if self.semantics is not None:
            values['classes'] = ','.join(self.semantics.class_names)
        if self.model is not None:
            values.update({'backend': self.model.backend, 'device': str(self.model.device),
                           'encoder': self.model.name, 'embed_dim': str(self.model.embed_dim),
                           'grid': 'x'.join(map(str, self.resolution))})
        return values


def main(args=None) -> int:
    """Console script `voxel_node`."""
    return run_node(VoxelNode, args)


if __name__ == '__main__':
    sys.exit(main())
