"""`pair_node`: two camera views in -> depth of view 1 and the relative camera pose out.

Runs a CroCo pair-geometry model (`embodied_vision.downstream`, loaded with
`load_pair_geometry_model(model_path)`) on pairs of sensor_msgs/Image: a stereo pair
(`left`/`right`) or any two overlapping views (`view1_topic`, `view2_topic`).

Synchronisation: the two streams are paired by header stamp with an approximate-time policy
(`ApproximateTimeSync` in `approximate_sync.py`; message_filters is not in the PyPI wheels):
pairs at most `slop` seconds apart, mutual nearest stamps, `queue_size` messages
kept per view, `inter_message_lower_bound` to decide without waiting for the next frame.
Messages that can never be paired are dropped and counted (`dropped`, and per reason in
diagnostics as `sync_<reason>`). One worker thread runs the model on the newest pair
(`LatestSlot`): when inference is slower than the cameras, older pairs are dropped.

Preprocessing: each view (rgb8, bgr8, rgba8, bgra8, mono8) is resized whole (antialiased
bilinear, no crop, so the depth stays registered with the camera image) to the model's
`input_size`. Build the model at the cameras' aspect ratio (`img_size=(H, W)`) to avoid
distortion.

Outputs, all stamped with view 1's header (stamp and frame_id):
- `depth_topic` (`publish_depth`): sensor_msgs/Image `32FC1`, metres of view 1, the
  encoding depth_image_proc and REP 118 use. With `output_resolution: camera` (default) it
  is upsampled (bilinear) to view 1's size, so view 1's CameraInfo describes it;
  `network` keeps the model's `input_size`;
- `disparity_topic` (`publish_disparity`): stereo_msgs/DisparityImage, `disparity =
  f * baseline / depth` (the stereo_image_proc message). `f` is `focal_length` (pixels of
  view 1) or fx of the CameraInfo on `camera_info_topic`, scaled to the output resolution;
  `baseline` (metres) is a parameter. Until a CameraInfo arrives only disparity is skipped
  (counted as `no_camera_info`, warned with a throttle);
- `pose_topic`: geometry_msgs/PoseStamped, the pose of camera 2 in camera 1 (OpenCV optical
  axes) in view 1's frame: orientation = the model's R as a quaternion, position = its unit
  translation direction times `translation_scale` (only the direction is observable).
  PoseStamped rather than TransformStamped: it needs no child frame name and is what
  rviz and pose consumers read; broadcast it to tf with any relay if needed.

Lifecycle: `on_configure` loads the model (a missing or corrupt model, or disparity without
a positive baseline, fails the transition and the node keeps running unconfigured) and warms
it up; `on_activate` subscribes and starts the worker; `on_deactivate` / `on_cleanup` stop and
free it. Bad input (another encoding, step/size mismatch, truncated data, a bad CameraInfo,
non-finite model output) is logged with a throttle, counted as `rejected`, and produces no
output. Stages timed: `convert` (both views), `sync_wait` (first view's arrival -> pair
complete), `queue`, `preprocess`, `inference`, `postprocess`, `publish`, `total`.
"""
import sys
import time
import warnings

from geometry_msgs.msg import PoseStamped
import numpy as np
from rclpy.lifecycle import TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, Image
from stereo_msgs.msg import DisparityImage

from embodied_vision.ros_nodes.accounting import colour_frame
from embodied_vision.ros_nodes.approximate_sync import ApproximateTimeSync, stamp_ns
from embodied_vision.ros_nodes.cdr import ImageFields, header_from_fields, image_fields_from_cdr
from embodied_vision.ros_nodes.conversions import (
    camera_info_to_intrinsics,
    depth_to_disparity_image,
    numpy_to_image,
    pose_stamped_from_rt,
)
from embodied_vision.ros_nodes.encoder_runtime import DEVICE_PATTERN
from embodied_vision.ros_nodes.lifecycle_base import ManagedNode, run_node
from embodied_vision.ros_nodes.parameters import ParamSpec
from embodied_vision.ros_nodes.qos import qos_specs
from embodied_vision.ros_nodes.workers import NewestItemWorker

__all__ = ['PairNode', 'main']

VIEWS = ('view1', 'view2')


class PairNode(ManagedNode):
    """Depth and relative pose from synchronised image pairs; see the module docstring."""

    PARAMETERS = (
        ParamSpec('model_path', '', 'pair-geometry model directory (save_pair_geometry_model '
                  'output)', read_only=True),
        ParamSpec('backend', 'eager', 'runtime (deploy.compile does not take two-output '
                  'models yet)', choices=('eager',), read_only=True),
        ParamSpec('device', '', "'cpu', 'cuda' or 'cuda:N'; empty = cuda when available",
                  read_only=True),
        ParamSpec('view1_topic', 'left/image_raw', 'sensor_msgs/Image of view 1 (the '
                  'reference view: depth and pose are in its frame)', read_only=True),
        ParamSpec('view2_topic', 'right/image_raw', 'sensor_msgs/Image of view 2',
                  read_only=True),
        ParamSpec('camera_info_topic', 'left/camera_info', 'sensor_msgs/CameraInfo of view 1 '
                  '(fx for the disparity when focal_length is 0)', read_only=True),
        ParamSpec('depth_topic', 'depth', 'depth of view 1 (sensor_msgs/Image 32FC1, metres)',
                  read_only=True),
        ParamSpec('disparity_topic', 'disparity', 'stereo_msgs/DisparityImage output',
                  read_only=True),
        ParamSpec('pose_topic', 'relative_pose', 'geometry_msgs/PoseStamped: camera 2 in '
                  'camera 1', read_only=True),
        ParamSpec('publish_depth', True, 'publish the depth image', read_only=True),
        ParamSpec('publish_disparity', False, 'publish a DisparityImage (needs baseline > 0 '
                  'and focal_length or a CameraInfo)', read_only=True),
        ParamSpec('output_resolution', 'camera', "depth/disparity size: 'camera' (view 1's, "
                  "bilinear upsampling) or 'network' (the model input size)",
                  choices=('camera', 'network'), read_only=True),
        ParamSpec('slop', 0.02, 'largest stamp difference of a pair, seconds', low=0.0,
                  high=10.0),
        ParamSpec('queue_size', 10, 'messages kept per view while waiting for a partner',
                  low=1, high=1000, read_only=True),
        ParamSpec('inter_message_lower_bound', 0.0, 'smallest stamp step within one view, '
                  'seconds; > 0 pairs without waiting for the next frame', low=0.0,
                  high=10.0, read_only=True),
        ParamSpec('baseline', 0.0, 'distance between the cameras, metres (disparity)',
                  low=0.0, high=1000.0),
        ParamSpec('focal_length', 0.0, 'fx in pixels of view 1 for the disparity; 0 = from '
                  'the CameraInfo', low=0.0, high=1e6),
        ParamSpec('translation_scale', 1.0, 'length of the published translation, metres '
                  '(the model gives a unit direction)', low=0.0, high=1e6),
        ParamSpec('raw_input', True, 'subscribe to serialized images and decode the CDR '
                  'with numpy (zero-copy), skipping rclpy message conversion',
                  read_only=True),
    ) + qos_specs('input', 'sensor_data', 5, 'image and camera-info subscriptions') \
        + qos_specs('output', 'reliable', 10, 'depth, disparity and pose publishers')
    STAGES = ('convert', 'sync_wait', 'queue', 'preprocess', 'inference', 'postprocess',
              'publish', 'total')

    def __init__(self, node_name: str = 'pair_node', **kwargs):
        self.model = None
        self.input_size: tuple[int, int] | None = None
        self._device = None
        self._outputs: dict[str, object] = {}
        self._inputs: list = []
        self._sync: ApproximateTimeSync | None = None
        self._camera_info: tuple[float, int] | None = None
        super().__init__(node_name, **kwargs)
        self._worker = NewestItemWorker(self.process, 'pair_worker', self.accounting.reject)
        self.after_parameters_set(self._after_set_parameters)

    def validate_parameter(self, name: str, value) -> str:
        if name == 'device' and not DEVICE_PATTERN.match(str(value)):
            return f"device={value!r} is not allowed; use '', 'cpu', 'cuda' or 'cuda:N'"
        return ''

    def _after_set_parameters(self, params) -> None:
        for p in params:
            if p.name == 'slop' and self._sync is not None:
                self._sync.slop = p.value

    # ----------------------------------------------------------------------- lifecycle
    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            self._check_disparity()
            self._load_model()
        except Exception as err:  # any load failure: report it, stay unconfigured
            self.get_logger().error(f'configure failed: {type(err).__name__}: {err}')
            self.model = None
            return TransitionCallbackReturn.FAILURE
        qos, create = self.qos('output'), self.create_lifecycle_publisher
        if self.param('publish_depth'):
            self._outputs['depth'] = create(Image, self.param('depth_topic'), qos)
        if self.param('publish_disparity'):
            self._outputs['disparity'] = create(DisparityImage,
                                                   self.param('disparity_topic'), qos)
        self._outputs['pose'] = create(PoseStamped, self.param('pose_topic'), qos)
        return TransitionCallbackReturn.SUCCESS

    def _check_disparity(self) -> None:
        if self.param('publish_disparity') and self.param('baseline') <= 0:
            raise ValueError('publish_disparity needs baseline > 0 (metres between the '
                             f'cameras), got baseline={self.param("baseline")}')

    def _load_model(self) -> None:
        import torch

        from embodied_vision.downstream import load_pair_geometry_model
        path = self.param('model_path')
        if not path:
            raise ValueError('model_path is empty: set it to a save_pair_geometry_model '
                             'directory')
        device = self.param('device') or ('cuda' if torch.cuda.is_available() else 'cpu')
        self._device = torch.device(device)
        self.model = load_pair_geometry_model(path, map_location=self._device)
        self.input_size = tuple(self.model.input_size)
        warm = torch.zeros(1, 3, *self.input_size, device=self._device)
        for _ in range(2):
            self.model.predict(warm, warm)
        self.get_logger().info(
            f'pair geometry model from {path}: backbone {self.model.backbone.name}, input '
            f'{self.input_size}, patch {self.model.patch_size}, on {device}')

    def on_activate(self, state) -> TransitionCallbackReturn:
        self._sync = ApproximateTimeSync(self.param('queue_size'), self.param('slop'),
                                         self.param('inter_message_lower_bound'))
        self._camera_info = None
        self._worker.start()
        raw, qos = self.param('raw_input'), self.qos('input')
        callbacks = (self._on_raw_view1, self._on_raw_view2) if raw else \
            (self._on_view1, self._on_view2)
        self._inputs = [self.create_subscription(Image, self.param(f'{view}_topic'), callback,
                                                 qos, raw=raw)
                        for view, callback in zip(VIEWS, callbacks)]
        if self.param('publish_disparity') and self.param('focal_length') <= 0:
            self._inputs.append(self.create_subscription(
                CameraInfo, self.param('camera_info_topic'), self._on_camera_info, qos))
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
        if self.model is not None:
            self.drop_model(self._device is not None and self._device.type == 'cuda')

    # ----------------------------------------------------------------------- inputs
    def _on_view1(self, msg: Image) -> None:
        self._on_image(0, msg)

    def _on_view2(self, msg: Image) -> None:
        self._on_image(1, msg)

    def _on_raw_view1(self, data: bytes) -> None:
        self._on_raw(0, data)

    def _on_raw_view2(self, data: bytes) -> None:
        self._on_raw(1, data)

    def _on_image(self, view: int, msg: Image) -> None:
        arrived = time.perf_counter()
        self.accounting.count('received')
        frame = self.convert(msg, view)
        if frame is not None:
            self._add(view, msg.header, frame, arrived)

    def _on_raw(self, view: int, data: bytes) -> None:
        """`raw_input`: the serialized Image decoded with numpy; the frame views `data`."""
        arrived = time.perf_counter()
        self.accounting.count('received')
        try:
            fields, payload = image_fields_from_cdr(data)
        except ValueError as err:
            self.accounting.reject(f'{VIEWS[view]}_malformed', str(err))
            return
        frame = self.convert(ImageFields(fields, payload), view)
        if frame is None:
            return
        self._add(view, header_from_fields(fields), frame, arrived)

    def convert(self, msg: Image, view: int) -> np.ndarray | None:
        """Image -> RGB uint8 (H, W, 3); None (rejected and counted) for bad input."""
        return colour_frame(msg, self.accounting, VIEWS[view])

    def _add(self, view: int, header, frame: np.ndarray, arrived: float) -> None:
        item = (header, frame, arrived, time.perf_counter() - arrived)
        sync = self._sync
        if sync is None:
            return
        pairs, dropped = sync.add(view, stamp_ns(header.stamp), item)
        if dropped:
            self.accounting.count('dropped', dropped)
        for pair in pairs:
            self.accounting.count('pairs')
            if self._worker.submit((pair, time.perf_counter())):
                self.accounting.count('dropped', 2)  # an unprocessed pair was replaced

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            intrinsics = camera_info_to_intrinsics(msg)
        except ValueError as err:
            self.accounting.reject('camera_info', str(err))
            return
        fx = float(intrinsics['K'][0, 0])
        if not (np.isfinite(fx) and fx > 0):
            self.accounting.reject('camera_info', f'CameraInfo fx must be > 0, got {fx}')
            return
        self._camera_info = (fx, intrinsics['width'])

    # ----------------------------------------------------------------------- model
    def preprocess(self, frame: np.ndarray):
        """RGB uint8 (H, W, 3) -> (1, 3, h, w) float32 0..255 at the model's input size
        (the whole frame, antialiased bilinear; unchanged when already that size)."""
        import torch
        import torch.nn.functional as F  # noqa: N812

        if frame.flags.writeable:
            x = torch.from_numpy(frame)
        else:  # a view of a raw message's bytes: only read, so torch's warning is moot
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', UserWarning)
                x = torch.from_numpy(frame)
        x = x.to(self._device, non_blocking=True).permute(2, 0, 1)[None].float()
        if tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode='bilinear', antialias=True,
                              align_corners=False)
        return x

    def focal_length(self, out_width: int, image_width: int) -> float | None:
        """fx in pixels of an output `out_width` wide; None while no CameraInfo arrived."""
        if self.param('focal_length') > 0:
            return self.param('focal_length') * out_width / image_width
        info = self._camera_info
        if info is None:
            return None
        fx, info_width = info
        return fx * out_width / (info_width or image_width)

    def process(self, pair: tuple, paired_at: float) -> dict | None:
        """Run the model on one synchronised pair and publish; returns the published
        messages by output name, or None when the output is rejected."""
        import torch.nn.functional as F  # noqa: N812

        (header, frame1, arrived1, convert1), (_, frame2, arrived2, convert2) = pair
        t0 = time.perf_counter()
        img1, img2 = self.preprocess(frame1), self.preprocess(frame2)
        t1 = time.perf_counter()
        out = self.model.predict(img1, img2)
        t2 = time.perf_counter()
        depth = out['depth'][:1]
        if self.param('output_resolution') == 'camera' and \
                tuple(depth.shape[-2:]) != frame1.shape[:2]:
            depth = F.interpolate(depth[:, None], size=frame1.shape[:2], mode='bilinear',
                                  align_corners=False)[:, 0]
        depth = depth[0].cpu().numpy()
        rotation = out['rotation'][0].double().cpu().numpy()
        translation = out['translation'][0].double().cpu().numpy()
        if not (np.all(np.isfinite(depth)) and np.all(np.isfinite(rotation))
                and np.all(np.isfinite(translation))):
            self.accounting.reject('non_finite_output', 'the model returned NaN or inf')
            return None
        messages = {'pose': pose_stamped_from_rt(
            rotation, translation * self.param('translation_scale'), header=header)}
        if 'depth' in self._outputs:
            messages['depth'] = numpy_to_image(depth, '32FC1', header=header)
        if 'disparity' in self._outputs:
            focal = self.focal_length(depth.shape[1], frame1.shape[1])
            if focal is None:
                self._warn_no_camera_info()
            else:
                messages['disparity'] = depth_to_disparity_image(
                    depth, focal, self.param('baseline'), header=header)
        t3 = time.perf_counter()
        for name, msg in messages.items():
            self._outputs[name].publish(msg)
        t4 = time.perf_counter()
        self.accounting.count('published')
        first = min(arrived1, arrived2)
        for stage, seconds in (('convert', convert1 + convert2), ('sync_wait', paired_at - first),
                               ('queue', t0 - paired_at), ('preprocess', t1 - t0),
                               ('inference', t2 - t1), ('postprocess', t3 - t2),
                               ('publish', t4 - t3), ('total', t4 - first)):
            self.timer.add(stage, seconds)
        return messages

    def _warn_no_camera_info(self) -> None:
        """Count a disparity skipped for want of a CameraInfo; warn once per throttle period."""
        self.accounting.warn_throttled(
            'no_camera_info', f'no CameraInfo on {self.param("camera_info_topic")} yet and '
            'focal_length is 0: disparity skipped, depth and pose published')

    def diagnostic_values(self) -> dict[str, str]:
        values = {'no_camera_info': str(self.accounting.counts().get('no_camera_info', 0)),
                  'pairs': str(self.accounting.counts().get('pairs', 0))}
        sync = self._sync
        if sync is not None:
            values['pending'] = '/'.join(map(str, sync.pending()))
            values.update({f'sync_{reason}': str(n) for reason, n in sync.dropped.items()})
        if self.param('publish_disparity'):
            values['focal_source'] = 'parameter' if self.param('focal_length') > 0 else \
                'camera_info' if self._camera_info is not None else 'waiting for camera_info'
        if self.model is not None:
            values.update({'backend': 'eager', 'device': str(self._device),
                           'input_size': 'x'.join(map(str, self.input_size)),
                           'backbone': self.model.backbone.name})
        return values


def main(args=None) -> int:
    """Console script `pair_node`."""
    return run_node(PairNode, args)


if __name__ == '__main__':
    sys.exit(main())
