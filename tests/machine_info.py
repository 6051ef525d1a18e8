"""What CI and `make test-portability` print first: the CPU, its ISA, the kernels PyTorch
picked and the versions of the numeric libraries, so a failure names the machine it ran on."""
from importlib import metadata
import os
from pathlib import Path
import platform

__all__ = ['cpu_capability', 'machine_lines']

_LIBRARIES = ('torch', 'torchvision', 'numpy', 'onnxruntime', 'onnx', 'timm', 'mujoco',
              'open3d', 'ros-jazzy-rclpy')
_FLAGS = ('avx2', 'avx512f', 'avx512_bf16', 'avx512_vnni', 'avx_vnni', 'amx_tile', 'fma')


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    path = Path('/proc/cpuinfo')
    if path.exists():
        for line in path.read_text().splitlines():
            key, _, value = line.partition(':')
            if key.strip() == 'model name' and value.strip():
                model = value.strip()
            elif key.strip() == 'flags':
                flags = set(value.split())
    return model, flags


def cpu_capability() -> str:
    """PyTorch's ATen kernel level here: 'AVX512', 'AVX2' or 'DEFAULT'."""
    import torch
    return torch.backends.cpu.get_cpu_capability()


def machine_lines() -> list[str]:
    import torch
    model, flags = _cpuinfo()
    isa = ' '.join(f for f in _FLAGS if f in flags) or 'unknown'
    versions = []
    for name in _LIBRARIES:
        try:
            versions.append(f'{name} {metadata.version(name)}')
        except metadata.PackageNotFoundError:
            versions.append(f'{name} -')
    overrides = ' '.join(f'{k}={os.environ[k]}' for k in ('ATEN_CPU_CAPABILITY',
                                                          'ONEDNN_MAX_CPU_ISA')
                         if k in os.environ)
    return [f'cpu: {model}, {os.cpu_count()} cores; isa: {isa}',
            f'torch kernels: ATen {cpu_capability()}, oneDNN '
            f'{"available" if torch.backends.mkldnn.is_available() else "absent"}'
            f'{"; " + overrides if overrides else ""}',
            'libraries: ' + ', '.join(versions)]


if __name__ == '__main__':
    print('\n'.join(machine_lines()))
