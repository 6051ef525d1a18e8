"""`encoder_node`: sensor_msgs/Image in -> embedding out, a lifecycle node.

Output message: **sensor_msgs/Image, encoding `32FC1`, height 1, width `embed_dim`**, with the
input image's header (stamp and frame_id) copied unchanged. Why this type:

- it is a standard message that carries a header, so the embedding is stamped with the frame
  it came from and downstream nodes can pair it exactly with other streams of that frame;
- it needs no custom interface package, so the node runs on the PyPI rclpy wheels and on any
  distro without building messages;
- bags, rosbags, Foxglove and `ros2 topic echo` all read it; `image_to_numpy` turns it back
  into a `(1, D)` float32 array with one `np.frombuffer`.
`std_msgs/Float32MultiArray` was rejected because it has no header (no stamp to pair on).

Lifecycle:
- `on_configure`: build the encoder (`encoder_for_inference(encoder_name, checkpoint_path)`:
  without a checkpoint, seeded random weights, warned),
  compile it for `backend` (`deploy.compile`, parity-checked against eager) and warm it up.
  Any failure (missing or corrupt checkpoint, unknown encoder, backend unavailable, parity
  error) is logged and returns FAILURE: the node stays unconfigured and keeps running.
- `on_activate`: subscribe to `input_topic` and start the inference worker.
- `on_deactivate`: unsubscribe and stop the worker; `on_cleanup`: drop the model.

Input path (`raw_input`, default on): the subscription delivers the serialized Image and
`image_fields_from_cdr` decodes it with numpy into a zero-copy view, skipping rclpy's
message conversion (the `uint8[]` copy into Python); `raw_input:=false` takes typed messages.
The CPU resize uses `preprocess_threads` (1) torch threads. onnxruntime's intra-op threads
busy-wait between runs by default (`inference_spinning`); letting them sleep looked better on
a loaded 2-core box but dropped most frames on a quiet one (benchmarks/ros_pipeline.py:
34.9% drops with spinning vs 87.8% without), so spinning stays on.

Frames go into a one-frame mailbox (`LatestSlot`); one worker thread takes the newest frame,
so when inference is slower than the camera stale frames are dropped (counted in
diagnostics as `dropped`), never queued. Stages timed per frame: `queue` (arrival -> taken
by the worker), `convert` (Image -> numpy), `preprocess` (resize + centre crop as
`embodied_vision.data.images.to_batch`), `inference`, `publish`, and `total` (arrival ->
published). Bad input (an encoding other than rgb8,
bgr8, rgba8, bgra8, mono8; step/size mismatch; truncated data) is logged with a throttle,
counted as `rejected`, and produces no output.
"""
import sys
import time
import warnings

import numpy as np
from rclpy.lifecycle import TransitionCallbackReturn
from sensor_msgs.msg import Image

from embodied_vision.ros_nodes.accounting import colour_frame
from embodied_vision.ros_nodes.cdr import ImageFields, header_from_fields, image_fields_from_cdr
from embodied_vision.ros_nodes.conversions import numpy_to_image
from embodied_vision.ros_nodes.encoder_runtime import (
    check_runtime_parameter,
    compile_node_encoder,
    encoder_runtime_params,
    resolve_runtime,
)
from embodied_vision.ros_nodes.lifecycle_base import ManagedNode, run_node
from embodied_vision.ros_nodes.parameters import ParamSpec
from embodied_vision.ros_nodes.qos import qos_specs
from embodied_vision.ros_nodes.workers import NewestItemWorker

__all__ = ['EncoderNode', 'main']



class EncoderNode(ManagedNode):
    """Embeds camera frames with a compiled encoder; see the module docstring."""

    PARAMETERS = encoder_runtime_params(
        'r3m_resnet18', 'registered encoder, arch or arch.tag (`embodied-vision list`)',
        'weights file or directory (official or embodied_vision format); empty = random '
        'init') + (
        ParamSpec('network_image_width', 0, 'encoder input width after resize + centre '
                  'crop; 0 = the encoder default', low=0, high=4096, read_only=True),
        ParamSpec('network_image_height', 0, 'encoder input height after resize + centre '
                  'crop; 0 = the encoder default', low=0, high=4096, read_only=True),
        ParamSpec('inference_spinning', True, 'onnxruntime intra-op threads busy-wait between '
                  'runs (its default, lowest latency); false lets them sleep, leaving the '
                  'cores to other processes', read_only=True),
        ParamSpec('preprocess_threads', 1, 'torch threads for the CPU resize when inference '
                  'does not run on torch (onnxruntime, tensorrt); 0 = torch default',
                  low=0, high=1024, read_only=True),
        ParamSpec('raw_input', True, 'subscribe to serialized images and decode the CDR '
                  'with numpy (zero-copy), skipping rclpy message conversion',
                  read_only=True),
        ParamSpec('input_topic', 'image', 'sensor_msgs/Image input', read_only=True),
        ParamSpec('output_topic', 'embedding', 'embedding output (sensor_msgs/Image 32FC1, '
                  '1 x embed_dim)', read_only=True),
    ) + qos_specs('input', 'sensor_data', 1, 'image subscription') \
        + qos_specs('output', 'reliable', 10, 'embedding publisher')
    STAGES = ('queue', 'convert', 'preprocess', 'inference', 'publish', 'total')

    def __init__(self, node_name: str = 'encoder_node', **kwargs):
        self.model = None
        self.input_size: tuple[int, int] | None = None
        self._publisher = None
        self._subscription = None
        self._device = None
        self.configure_error = ''  # why the last configure failed, also in diagnostics
        super().__init__(node_name, **kwargs)
        self._worker = NewestItemWorker(self.process, 'encoder_worker', self.accounting.reject)

    def validate_parameter(self, name: str, value) -> str:
        return check_runtime_parameter(name, value, modality='image')

    # ----------------------------------------------------------------------- lifecycle
    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            self._build_model()
        except Exception as err:  # any load/compile failure: report it, stay unconfigured
            self.configure_error = f'{type(err).__name__}: {err}'
            self.get_logger().error(f'configure failed: {self.configure_error}')
            self.model = None
            return TransitionCallbackReturn.FAILURE
        self.configure_error = ''
        self._publisher = self.create_lifecycle_publisher(
            Image, self.param('output_topic'), self.qos('output'))
        return TransitionCallbackReturn.SUCCESS

    def _build_model(self) -> None:
        import torch

        from embodied_vision.encoders import encoder_for_inference
        device, backend, options = resolve_runtime(
            self, spinning=self.param('inference_spinning'))
        encoder = encoder_for_inference(self.param('encoder_name'),
                                        checkpoint=self.param('checkpoint_path') or None)
        self._contract = contract = encoder.input_contract
        width, height = self.param('network_image_width'), self.param('network_image_height')
        default = tuple(encoder.input_contract.default_size)
        self.input_size = (height or default[0], width or default[1])
        self._device = torch.device(device)
        self.model = compile_node_encoder(
            self, encoder, device, backend, self.input_size,
            torch.uint8 if contract.takes_pixels else torch.float32, options)
        if self.model.backend in ('onnxruntime', 'tensorrt') and \
                self.param('preprocess_threads'):
            torch.set_num_threads(self.param('preprocess_threads'))
        warm = np.zeros((*self.input_size, 3), np.uint8)
        for _ in range(2):
            self.model(self.preprocess(warm))
        self.get_logger().info(
            f'{encoder.name} ({encoder.embed_dim}-d) on {self.model.backend}/{device}, input '
            f'{self.input_size}, built in {self.model.build_seconds:.1f} s, parity '
            f'{self.model.parity}')

    def on_activate(self, state) -> TransitionCallbackReturn:
        self._worker.start()
        raw = self.param('raw_input')
        self._subscription = self.create_subscription(
            Image, self.param('input_topic'), self._on_raw_image if raw else self._on_image,
            self.qos('input'), raw=raw)
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._stop()
        return super().on_deactivate(state)

    def _stop(self) -> None:
        if self._subscription is not None:
            self.destroy_subscription(self._subscription)
            self._subscription = None
        self._worker.stop()

    def release(self) -> None:
        self._stop()
        if self._publisher is not None:
            self.destroy_lifecycle_publisher(self._publisher)
            self._publisher = None
        if self.model is not None:
            self.drop_model(str(self.model.device).startswith('cuda'))

    # ----------------------------------------------------------------------- data path
    def _on_image(self, msg: Image) -> None:
        """Validate and convert at once (a zero-copy view), so bad input is rejected here and
        never displaces a good frame from the slot; the worker does the rest."""
        arrived = time.perf_counter()
        self.accounting.count('received')
        frame = self.convert(msg)
        if frame is None:
            return
        if self._worker.submit((msg.header, frame, arrived, time.perf_counter() - arrived)):
            self.accounting.count('dropped')

    def _on_raw_image(self, data: bytes) -> None:
        """`raw_input`: the serialized Image, decoded with numpy (`image_fields_from_cdr`);
        the frame is a view of `data`."""
        arrived = time.perf_counter()
        self.accounting.count('received')
        try:
            fields, payload = image_fields_from_cdr(data)
        except ValueError as err:
            self.accounting.reject('malformed', str(err))
            return
        frame = self.convert(ImageFields(fields, payload))
        if frame is None:
            return
        header = header_from_fields(fields)
        if self._worker.submit((header, frame, arrived, time.perf_counter() - arrived)):
            self.accounting.count('dropped')

    def convert(self, msg: Image) -> np.ndarray | None:
        """Image -> RGB uint8 (H, W, 3); None (rejected and counted) for bad input."""
        return colour_frame(msg, self.accounting)

    def preprocess(self, frame: np.ndarray):
        """RGB uint8 (H, W, 3) -> the model's `(1, 3, h, w)` input on its device: uint8
        pixels, or for a model normalised by its caller (CroCo) the normalised floats
        (`InputContract.from_pixels`).

        The same resize + centre crop as `embodied_vision.data.images.to_batch` (bit-identical
        on CPU), but the frame is made channels-last contiguous first, which makes the float
        conversion a straight copy (0.4 ms instead of 10 ms at 640x480), and on CUDA the
        resize runs on the GPU.
        """
        import torch

        from embodied_vision.data.images import resize_center_crop
        if frame.flags.writeable:
            x = torch.from_numpy(frame)
        else:  # a view of a raw message's bytes: only read, so torch's warning is moot
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', UserWarning)
                x = torch.from_numpy(frame)
        x = x.to(self._device, non_blocking=True).permute(2, 0, 1)[None]
        return self._contract.from_pixels(resize_center_crop(
            x.contiguous(memory_format=torch.channels_last), self.input_size))

    def process(self, header, frame: np.ndarray, arrived: float,
                convert_seconds: float = 0.0) -> np.ndarray | None:
        """Embed one converted frame and publish it stamped with `header`; returns the
        (1, D) embedding, or None when the output is not finite (rejected)."""
        model, publisher = self.model, self._publisher
        if model is None or publisher is None:  # released while this frame was in flight
            return None
        t1 = time.perf_counter()
        batch = self.preprocess(frame)
        t2 = time.perf_counter()
        embedding = model(batch).float().cpu().numpy()
        t3 = time.perf_counter()
        if not np.all(np.isfinite(embedding)):
            self.accounting.reject('non_finite_output', 'the encoder returned NaN or inf')
            return None
        publisher.publish(numpy_to_image(embedding, '32FC1', header=header))
        t4 = time.perf_counter()
        self.accounting.count('published')
        for stage, seconds in (('queue', t1 - arrived - convert_seconds),
                               ('convert', convert_seconds), ('preprocess', t2 - t1),
                               ('inference', t3 - t2), ('publish', t4 - t3),
                               ('total', t4 - arrived)):
            self.timer.add(stage, seconds)
        return embedding

    def diagnostic_values(self) -> dict[str, str]:
        if self.model is None:
            return {'configure_error': self.configure_error} if self.configure_error else {}
        parity = self.model.parity
        return {'encoder': self.model.name, 'backend': self.model.backend,
                'device': str(self.model.device), 'precision': self.model.precision,
                'embed_dim': str(self.model.embed_dim),
                'input_size': 'x'.join(map(str, self.input_size)),
                'parity_max_abs_error': f'{parity.max_abs_error:.3g}' if parity else 'n/a'}


def main(args=None) -> int:
    """Console script `encoder_node`."""
    return run_node(EncoderNode, args)


if __name__ == '__main__':
    sys.exit(main())
