"""Reading frames from folders and videos, and the R3M-style resize + centre crop."""
import numpy as np
from PIL import Image
import pytest
import torch

from embodied_vision.data.images import iter_frames, resize_center_crop, to_batch


def test_folder_frames_are_sorted_rgb(tmp_path):
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        Image.new('RGB', (40, 30), colour).save(tmp_path / f'{2 - i}.png')
    (tmp_path / 'notes.txt').write_text('ignored')
    frames = list(iter_frames(tmp_path))
    assert [name for name, _ in frames] == ['0.png', '1.png', '2.png']
    assert frames[0][1].shape == (30, 40, 3) and frames[0][1].dtype == np.uint8
    assert tuple(frames[0][1][0, 0]) == (0, 0, 255)
    assert [n for n, _ in iter_frames(tmp_path, stride=2)] == ['0.png', '2.png']


def test_video_frames(tmp_path):
    imageio = pytest.importorskip('imageio.v3')
    video = np.zeros((6, 32, 48, 3), np.uint8)
    video[:, :, :, 0] = np.arange(6)[:, None, None] * 40
    imageio.imwrite(tmp_path / 'clip.gif', video, loop=0)
    frames = list(iter_frames(tmp_path / 'clip.gif', stride=2))
    assert [n for n, _ in frames] == ['clip.gif#0', 'clip.gif#2', 'clip.gif#4']
    assert frames[1][1].shape == (32, 48, 3)
    assert abs(int(frames[2][1][..., 0].mean()) - 160) <= 3


def test_bad_sources_are_named(tmp_path):
    with pytest.raises(ValueError, match='holds no images'):
        list(iter_frames(tmp_path))
    (tmp_path / 'broken.png').write_bytes(b'not a png')
    with pytest.raises(ValueError, match='broken.png: not a readable image'):
        list(iter_frames(tmp_path))
    (tmp_path / 'data.csv').write_text('a,b\n')
    with pytest.raises(ValueError, match='not a folder of images'):
        iter_frames(tmp_path / 'data.csv')  # checked at the call, before any frame
    with pytest.raises(FileNotFoundError, match='no such image folder'):
        iter_frames(tmp_path / 'missing.mp4')
    skipped = []
    assert list(iter_frames(tmp_path, skipped=skipped)) == []
    assert skipped[0][0] == 'broken.png' and 'not a readable image' in skipped[0][1]


def test_resize_center_crop_keeps_the_centre():
    image = torch.zeros(1, 3, 100, 200, dtype=torch.uint8)
    image[..., 40:60, 90:110] = 255  # a square in the middle
    out = resize_center_crop(image, (64, 64))
    assert out.shape == (1, 3, 64, 64) and out.dtype == torch.uint8
    assert out[0, 0, 32, 32] == 255 and out[0, 0, 2, 2] == 0


def test_to_batch_checks_sizes():
    frames = [np.zeros((10, 10, 3), np.uint8), np.zeros((12, 10, 3), np.uint8)]
    with pytest.raises(ValueError, match='different sizes'):
        to_batch(frames)
    assert to_batch(frames, (8, 8)).shape == (2, 3, 8, 8)


def test_as_chw_accepts_both_layouts_and_names_bad_shapes():
    from embodied_vision.data.images import as_chw
    hwc = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    chw = as_chw(hwc)
    assert chw.shape == (3, 4, 5) and chw[1, 2, 3] == hwc[2, 3, 1]
    assert as_chw(chw) is chw
    with pytest.raises(ValueError, match=r'\(H,W,3\)'):
        as_chw(np.zeros((4, 5)))
