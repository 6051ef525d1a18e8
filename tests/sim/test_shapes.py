"""`embodied-vision shapes`: procedural categories, full clouds, partial scans, h5 output."""
import json

import numpy as np
import pytest

mujoco = pytest.importorskip('mujoco')
h5py = pytest.importorskip('h5py')

from embodied_vision.data.point_clouds import PointCloudDataset  # noqa: E402
from embodied_vision.geometry.primitives import primitive_contains  # noqa: E402
from embodied_vision.sim.shape_categories import CATEGORIES, make_shape  # noqa: E402
from embodied_vision.sim.shape_clouds import Y_UP, full_cloud, sample_shape_surface  # noqa: E402
from embodied_vision.sim.shape_scans import ScanConfig, ShapeScanner  # noqa: E402
from embodied_vision.sim.shapes import compose_config, generate, main  # noqa: E402

TINY = ['n_per_class=3', 'n_test_per_class=2', 'categories=[mug,table,chair]', 'points=256',
        'partial=true', 'progress=false', 'scan.image_size=48']


def _rng(*seed):
    return np.random.default_rng(list(seed))


def _on_surface(parts, points, tol):
    """Which points lie within about `tol` of the surface of at least one of `parts`."""
    hit = np.zeros(len(points), bool)
    for kind, size, pose in parts:
        hit |= (primitive_contains(kind, size + tol, pose, points)
                & ~primitive_contains(kind, np.maximum(size - tol, tol / 10), pose, points))
    return hit


def _world(cloud_points, centre, scale):
    """Undo the normalisation and the z-up -> y-up turn (Y_UP is a rotation)."""
    return (cloud_points.astype(np.float64) * scale + centre) @ Y_UP


def _nearest(a, b):
    return np.sqrt(np.min(((a[:, None] - b[None]) ** 2).sum(-1), axis=1))


def _features(points):
    """Sorted PCA extents (relative) and a radial histogram: rotation-invariant, hand-made."""
    centred = points - points.mean(0)
    extents = np.sqrt(np.sort(np.linalg.eigvalsh(np.cov(centred.T)))[::-1])
    radius = np.linalg.norm(centred, axis=1)
    hist = np.histogram(radius / radius.max(), bins=10, range=(0, 1))[0] / len(points)
    return np.concatenate([extents / extents[0], hist])


@pytest.fixture(scope='module')
def scanner():
    """A noise-free scanner, so scan points can be checked against the exact geometry."""
    scanner = ShapeScanner(ScanConfig(domain='sim', depth_noise=0.0, image_size=96))
    yield scanner
    scanner.close()


# ------------------------------------------------------------------------- categories
def test_categories_vary_within_a_class_and_reproduce_for_a_seed():
    assert len(CATEGORIES) >= 10
    for name in CATEGORIES:
        a, again = make_shape(name, _rng(1)), make_shape(name, _rng(1))
        b = make_shape(name, _rng(2))
        assert a.category == name
        assert len(a.parts) == len(again.parts)
        for (k1, s1, t1), (k2, s2, t2) in zip(a.parts, again.parts):
            assert k1 == k2 and np.array_equal(s1, s2) and np.array_equal(t1, t2)
        cloud_a, cloud_b = full_cloud(a, 512, _rng(5)).points, full_cloud(b, 512, _rng(5)).points
        assert np.array_equal(cloud_a, full_cloud(again, 512, _rng(5)).points)
        # proportions differ even after normalisation, not only the scale
        assert not np.allclose(np.ptp(cloud_a, axis=0), np.ptp(cloud_b, axis=0), atol=0.02), name
        structures = {tuple(sorted(k for k, _, _ in make_shape(name, _rng(s)).parts))
                      for s in range(30)}
        assert len(structures) > 1, f'{name}: part counts/kinds never vary'
        lo = a.extent()[:, 0]
        assert lo[2] == pytest.approx(0.0, abs=1e-12)  # resting on the floor
    with pytest.raises(ValueError, match="unknown category 'teapot'.*'mug'"):
        make_shape('teapot', _rng(0))


@pytest.mark.parametrize('name', list(CATEGORIES))
def test_full_cloud_is_normalised_and_on_the_visible_part_surfaces(name):
    rng = _rng(3, len(name))
    shape = make_shape(name, rng)
    cloud = full_cloud(shape, 2048, rng)
    points = cloud.points
    assert points.shape == (2048, 3) and points.dtype == np.float32
    np.testing.assert_allclose(points.mean(0), 0.0, atol=1e-6)
    assert np.linalg.norm(points, axis=1).max() == pytest.approx(1.0, abs=1e-6)
    world = _world(points, cloud.centre, cloud.scale)
    span = np.ptp(shape.extent(), axis=1).max()
    assert _on_surface(shape.parts, world, 1e-5 * span).all()
    for kind, size, pose in shape.parts:  # no point hides inside another part
        assert not primitive_contains(kind, size - 1e-4 * span, pose, world).any()


def test_clouds_are_y_up_with_the_front_along_x():
    for seed in range(5):
        table = make_shape('table', _rng(seed))
        cloud = full_cloud(table, 2048, _rng(seed, 1))
        top = max(table.parts, key=lambda part: part[2][2, 3])  # highest part: the top
        top_centre = (top[2][:3, 3] @ Y_UP.T - cloud.centre) / cloud.scale
        assert top_centre[1] > 0.03 and abs(top_centre[0]) < 0.05 and abs(top_centre[2]) < 0.05
        assert 0 < cloud.points[:, 1].max() - top_centre[1] < 0.06  # the top face is the highest
        assert -cloud.points[:, 1].min() > 3 * cloud.points[:, 1].max()  # legs reach far down
        extent = np.ptp(table.extent(), axis=1)  # MuJoCo x, y, z -> cloud x, -z, y
        np.testing.assert_allclose(np.ptp(cloud.points, axis=0) * cloud.scale, extent[[0, 2, 1]],
                                   atol=0.02 * extent.max())
        mug = full_cloud(make_shape('mug', _rng(seed)), 2048, _rng(seed, 2)).points
        assert mug[:, 0].max() > -mug[:, 0].min() + 0.2  # the handle stays on +x
        chair = make_shape('chair', _rng(seed))
        points = full_cloud(chair, 2048, _rng(seed, 3)).points
        back = points[:, 1] > np.quantile(points[:, 1], 0.9)  # the back is high and at -x
        assert points[back, 0].mean() < -0.2


def test_surface_sampling_drops_hidden_faces():
    box = ('box', np.array([0.1, 0.1, 0.1]), np.eye(4))
    inner = np.eye(4)
    inner[:3, 3] = (0.02, 0.0, 0.0)
    points, part = sample_shape_surface([box, ('sphere', np.array([0.05]), inner)], 1000,
                                        _rng(0))
    assert points.shape == (1000, 3) and (part == 0).all()
    np.testing.assert_allclose(np.abs(points).max(axis=1), 0.1)
    shifted = np.eye(4)
    shifted[:3, 3] = (0.1, 0.0, 0.0)  # two overlapping boxes: the union's surface only
    points, part = sample_shape_surface([box, ('box', np.array([0.1, 0.1, 0.1]), shifted)],
                                        4000, _rng(1))
    assert set(np.unique(part)) == {0, 1}
    interior = ((points[:, 0] > -0.1 + 1e-9) & (points[:, 0] < 0.2 - 1e-9)
                & (np.abs(points[:, 1:]) < 0.1 - 1e-9).all(axis=1))
    assert not interior.any()
    assert not np.isclose(points[part == 0, 0], 0.1).any()  # faces inside the other box
    assert not np.isclose(points[part == 1, 0], 0.0).any()


# ------------------------------------------------------------------------- scans
@pytest.mark.parametrize('name', ['bottle', 'box', 'mug', 'chair'])
def test_scan_sees_one_side_with_clutter_and_a_correct_mask(scanner, name):
    rng = _rng(7, len(name))
    scan = scanner.scan(make_shape(name, rng), rng, 2048)
    points, mask = scan.points, scan.mask
    assert points.shape == (2048, 3) and points.dtype == np.float32 and mask.dtype == np.int32
    np.testing.assert_allclose(points.mean(0), 0.0, atol=1e-6)
    assert np.linalg.norm(points, axis=1).max() == pytest.approx(1.0, abs=1e-6)
    world = _world(points, scan.centre, scan.scale)
    layout, tol = scan.layout, 0.002  # metres; round primitives render tessellated
    on_object, background = world[mask >= 0], world[mask < 0]
    assert 0.1 < len(on_object) / len(world) < 0.95 and len(background) > 20
    assert abs(len(on_object) / len(world) - scan.object_fraction) < 0.06
    for j in np.unique(mask[mask >= 0]):  # every object point lies on the part it names
        assert _on_surface([layout.target_parts[j]], world[mask == j], tol).all()
    on_floor = np.abs(background[:, 2]) < tol
    on_clutter = (_on_surface(layout.clutter_parts, background, tol) if layout.clutter_parts
                  else np.zeros(len(background), bool))
    assert (on_floor | on_clutter).all()  # background is floor or neighbour, never object
    assert not _on_surface(layout.target_parts, background[~on_floor], tol).any()
    local = (world - layout.box_pose[:3, 3]) @ layout.box_pose[:3, :3]
    assert (np.abs(local) <= layout.box_half + 1e-6).all()  # cropped to the object's box
    surface, _ = sample_shape_surface(layout.target_parts, 1500, _rng(0))
    covered = (_nearest(surface, on_object) < 0.05 * scanner.config.object_size).mean()
    assert 0.2 < covered < 0.85, f'{name}: scan covers {covered:.2f} of the surface'


def test_scan_layout_keeps_clutter_outside_the_object_and_is_seeded(scanner):
    for seed in range(6):
        shape = make_shape('can', _rng(seed))
        layout = scanner.layout(shape, _rng(seed, 9))
        again = scanner.layout(shape, _rng(seed, 9))
        assert all(np.array_equal(a[2], b[2]) for a, b in zip(layout.clutter_parts,
                                                               again.clutter_parts))
        assert len(layout.cameras) == scanner.config.views
        if layout.clutter_parts:
            probe, _ = sample_shape_surface(layout.clutter_parts, 500, _rng(seed))
            assert not any(primitive_contains(k, s, t, probe).any()
                           for k, s, t in layout.target_parts)


def test_sensor_noise_moves_points_off_the_surface():
    noisy = ShapeScanner(ScanConfig(views=1, image_size=64, neighbours=(0, 0), depth_noise=0.05))
    try:
        rng = _rng(4)
        scan = noisy.scan(make_shape('box', rng), rng, 1024)
    finally:
        noisy.close()
    world = _world(scan.points, scan.centre, scan.scale)
    on_object = world[scan.mask >= 0]
    off = ~_on_surface(scan.layout.target_parts, on_object, 0.0005)
    assert 0.2 < off.mean() and _on_surface(scan.layout.target_parts, on_object, 0.03).all()


def test_pooled_scene_renders_like_its_standalone_mjcf(scanner):
    rng = _rng(11)
    layout = scanner.layout(make_shape('chair', rng), rng)
    pooled = scanner.render(layout)
    model = mujoco.MjModel.from_xml_string(scanner.scene_xml(layout))
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    owner = np.array([int(model.geom(g).name[6:]) if model.geom(g).name.startswith('target')
                      else -1 for g in range(model.ngeom)] + [-1])
    size = scanner.config.image_size
    with mujoco.Renderer(model, size, size) as renderer:
        for i, view in enumerate(pooled):
            renderer.update_scene(data, camera=i)
            renderer.enable_depth_rendering()
            depth = renderer.render()
            renderer.disable_depth_rendering()
            renderer.enable_segmentation_rendering()
            part = owner[renderer.render()[..., 0]]
            renderer.disable_segmentation_rendering()
            hit = depth < 0.999 * 20.0
            np.testing.assert_allclose(view['depth'][hit], depth[hit], atol=1e-5)
            assert (view['depth'][~hit] == 0).all()
            assert (view['part'] != part).mean() < 1e-3
            assert (view['part'] >= 0).sum() > 0.05 * size * size
            np.testing.assert_allclose(view['T_world_cam'][:3, 3], data.cam_xpos[i], atol=1e-9)


# ------------------------------------------------------------------------- the command
def test_command_writes_modelnet40_and_scanobjectnn_files(tmp_path, capsys):
    out = tmp_path / 'shapes'
    assert main([f'out={out}', *TINY]) == 0
    printed = capsys.readouterr().out
    assert 'wrote 9 train / 6 test full + partial clouds of 3 categories' in printed
    folder = out / 'modelnet40_ply_hdf5_2048'
    assert sorted(p.name for p in folder.iterdir()) == [
        'ply_data_test0.h5', 'ply_data_train0.h5', 'shape_names.txt', 'test_files.txt',
        'train_files.txt']
    assert (folder / 'train_files.txt').read_text() == \
        'modelnet40_ply_hdf5_2048/ply_data_train0.h5\n'
    assert (folder / 'shape_names.txt').read_text() == 'mug\ntable\nchair\n'
    labels = {}
    for split, n in (('train', 9), ('test', 6)):
        with h5py.File(folder / f'ply_data_{split}0.h5', 'r') as f:
            assert sorted(f) == ['data', 'label']
            assert f['data'].dtype == np.float32 and f['data'].shape == (n, 256, 3)
            assert f['label'].dtype == np.uint8 and f['label'].shape == (n, 1)
            labels[split] = f['label'][:, 0]
            assert np.bincount(labels[split]).tolist() == [n // 3] * 3
            norms = np.linalg.norm(f['data'][()], axis=2)
            np.testing.assert_allclose(norms.max(axis=1), 1.0, atol=1e-6)
        scan_file = out / 'main_split' / f'{"training" if split == "train" else "test"}' \
                                         f'_objectdataset.h5'
        with h5py.File(scan_file, 'r') as f:
            assert sorted(f) == ['data', 'label', 'mask']
            assert f['data'].dtype == np.float32 and f['data'].shape == (n, 256, 3)
            assert f['label'].dtype == np.int64 and f['label'].shape == (n,)
            assert f['mask'].dtype == np.int32 and f['mask'].shape == (n, 256)
            np.testing.assert_array_equal(f['label'][()], labels[split])  # same instances
            assert (f['mask'][()] == -1).any() and (f['mask'][()] >= 0).any()
    info = json.loads((out / 'dataset.json').read_text())
    assert info['splits'] == {'train': 9, 'test': 6} and info['config']['points'] == 256
    assert 0.1 < info['object_fraction_mean'] < 0.95
    # the reader takes both layouts (the folder holds both, so it must be told which)
    with pytest.raises(ValueError, match='holds both layouts'):
        PointCloudDataset(out, 'train')
    full = PointCloudDataset(out, 'test', layout='modelnet40', n_points=128)
    points, label = full[0]
    assert points.shape == (128, 3) and label == labels['test'][0]
    scans = PointCloudDataset(out / 'main_split', 'test', with_mask=True)
    assert scans.shape_names == ['mug', 'table', 'chair'] and scans[0][2].shape == (256,)
    # a second run into the same folder must not mix datasets
    assert main([f'out={out}', *TINY]) == 2
    assert 'already holds a shape dataset' in capsys.readouterr().err


def test_output_depends_only_on_the_config(tmp_path):
    small = [*TINY[:3], 'points=64', 'progress=false', 'partial=true', 'scan.image_size=32']
    runs = {}
    for name, extra in (('a', []), ('b', []), ('other', ['seed=1'])):
        generate(compose_config([f'out={tmp_path / name}', *small, *extra]))
        runs[name] = {}
        for path in sorted((tmp_path / name).rglob('*.h5')):
            with h5py.File(path, 'r') as f:
                runs[name].update({f'{path.name}/{k}': f[k][()] for k in f})
    assert runs['a'].keys() == runs['b'].keys() == runs['other'].keys()
    assert len(runs['a']) == 10
    for key, value in runs['a'].items():
        np.testing.assert_array_equal(value, runs['b'][key], err_msg=key)
    assert not np.array_equal(runs['a']['ply_data_train0.h5/data'],
                              runs['other']['ply_data_train0.h5/data'])
    # overwrite=true replaces the earlier files instead of refusing
    generate(compose_config([f'out={tmp_path / "a"}', *small, 'partial=false', 'overwrite=true']))
    assert not (tmp_path / 'a' / 'main_split' / 'training_objectdataset.h5').exists()


@pytest.mark.parametrize('override, message', [
    ('categories=[mug,teapot]', r"categories=\['mug', 'teapot'\] must be distinct names"),
    ('n_per_class=0', 'n_per_class must be >= 1'),
    ('scan.views=0', r'scan.views=0 must be >= 1'),
    ('scan.elevation=[60,10]', r'scan.elevation=\[60(\.0)?, 10(\.0)?\] must be'),
    ('scan.domain=moon', "unknown domain 'moon'"),
])
def test_bad_configs_are_refused_before_writing(tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        generate(compose_config([f'out={tmp_path / "x"}', override, 'progress=false']))
    assert not (tmp_path / 'x').exists()


# ------------------------------------------------------------------------- class signal
def test_categories_carry_class_signal_for_a_linear_svm(scanner):
    svm = pytest.importorskip('sklearn.svm')
    pipeline = pytest.importorskip('sklearn.pipeline')
    preprocessing = pytest.importorskip('sklearn.preprocessing')
    names = list(CATEGORIES)
    chance = 1.0 / len(names)
    for kind, floor in (('full', 0.5), ('partial', 0.3)):
        features, labels = {'train': [], 'test': []}, {'train': [], 'test': []}
        for label, name in enumerate(names):
            for i in range(12):
                rng = _rng(21, label, i)
                shape = make_shape(name, rng)
                points = (full_cloud(shape, 1024, rng).points if kind == 'full'
                          else scanner.scan(shape, rng, 1024).points)
                split = 'train' if i < 8 else 'test'
                features[split].append(_features(points))
                labels[split].append(label)
        model = pipeline.make_pipeline(preprocessing.StandardScaler(),
                                       svm.LinearSVC(C=1.0, max_iter=20000))
        model.fit(features['train'], labels['train'])
        accuracy = float(np.mean(model.predict(features['test']) == np.array(labels['test'])))
        assert accuracy > max(floor, 2 * chance), f'{kind}: accuracy {accuracy:.2f}'
