"""2D-target statistics of I2P-MAE's guide on the eval shapes: the per-channel variance of the
targets (the MSE of predicting each channel's mean) and how much the saliency varies."""
import sys

import torch

from embodied_vision import create_encoder
from embodied_vision.data.point_clouds import read_point_cloud_split
from embodied_vision.encoders import load_encoder
from embodied_vision.pretrain.image_guidance import ImageGuide
from embodied_vision.pretrain.training_i2p_mae_pretrain import normalize_cloud

run, size = sys.argv[1], 256
guide = ImageGuide(load_encoder(f'{run}/guide/encoder'), image_size=64, splat=3)
torch.manual_seed(0)
model = create_encoder('i2p_mae_pretrain_tiny').eval()
for name, root in (('full', 'modelnet40_ply_hdf5_2048'), ('partial', 'main_split')):
    clouds = torch.as_tensor(read_point_cloud_split(f'{run}/shapes/{root}', 'train').points)
    keep = torch.randperm(clouds.shape[1], generator=torch.Generator().manual_seed(0))[:size]
    points = torch.stack([normalize_cloud(c[keep]) for c in clouds[:256]])
    with torch.no_grad():
        signals = guide.signals(points, model.group(points))
    targets = signals.targets.reshape(-1, signals.targets.shape[-1])
    cv = (signals.saliency.std(dim=1) / signals.saliency.mean(dim=1)).mean()
    print(f'{name}: 2D target variance per channel {targets.var(dim=0).mean():.4f}, '
          f'mean square {targets.pow(2).mean():.4f}; saliency coefficient of variation over '
          f'coarse tokens {cv:.3f}')
