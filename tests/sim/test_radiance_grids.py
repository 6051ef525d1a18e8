"""`embodied-vision grids`: NeRF-MAE datasets from the sim suite, and their labels."""
import json

import numpy as np
import pytest

from embodied_vision.data.radiance_grids import RadianceGridDataset, read_split
from embodied_vision.geometry.radiance_grid import RadianceGrid
from embodied_vision.sim.grid_labels import (
    CLASS_NAMES,
    Instance,
    voxel_boxes,
    voxel_semantics,
)
from embodied_vision.sim.radiance_grids import compose_config, generate, main, render_scene

# Small grids and few tiny views: 10 scenes cover every task in both domains.
SMALL = ['n=10', 'resolution=24', 'n_views=4', 'image_size=48', 'max_expert_steps=3',
         'progress=false', 'val=0.2', 'test=0.2']


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp('grids') / 'tabletop'
    assert main([f'out={out}', *SMALL]) == 0
    return out


def _meta(root, name):
    return json.loads((root / 'meta' / f'{name}.json').read_text())


def test_command_writes_the_nerf_rpn_layout(dataset, capsys):
    names = sorted(p.stem for p in (dataset / 'features').glob('*.npz'))
    assert len(names) == 10
    for folder, suffix in (('aabb', '.npy'), ('obb', '.npy'), ('voxel_tabletop', '.npy'),
                           ('meta', '.json')):
        assert sorted(p.stem for p in (dataset / folder).glob(f'*{suffix}')) == names
    split = read_split(dataset)
    assert (dataset / 'tabletop_split.npz').is_file()
    assert [len(split[s]) for s in ('train', 'val', 'test')] == [6, 2, 2]
    assert sorted(split['train'] + split['val'] + split['test']) == names  # disjoint, complete
    with np.load(dataset / 'features' / f'{names[0]}.npz') as data:
        assert set(data) == {'rgbsigma', 'resolution', 'bbox_min', 'bbox_max'}
        assert data['rgbsigma'].shape == (21, 24, 11, 4) and data['rgbsigma'].dtype == np.float32
    classes = json.loads((dataset / 'classes.json').read_text())['classes']
    assert [c['name'] for c in classes] == list(CLASS_NAMES) and classes[0]['id'] == 0
    metas = [_meta(dataset, n) for n in names]
    assert {m['domain'] for m in metas} == {'sim', 'real'}
    assert {(m['task'], m['domain']) for m in metas} == {
        (t, d) for t in ('Reach', 'Push', 'PickPlace', 'Stack', 'TwoStepPickPlace')
        for d in ('sim', 'real')}
    item = RadianceGridDataset(dataset, 'val', labels=True)[0]
    assert item['grid'].shape == (4, 21, 24, 11) and item['semantics'].shape == (21, 24, 11)
    assert len(item['aabb']) == len(item['obb']) == len(_meta(dataset, item['name'])['objects'])
    # A second run into the same folder must not mix datasets.
    assert main([f'out={dataset}', *SMALL]) == 2
    assert 'already holds a radiance-grid dataset' in capsys.readouterr().err


def test_same_seed_same_dataset_other_seed_other_scenes(dataset, tmp_path):
    again = tmp_path / 'again'
    generate(compose_config([f'out={again}', *SMALL]))
    assert read_split(again) == read_split(dataset)
    for path in sorted((dataset / 'features').glob('*.npz')):
        a, b = RadianceGrid.load_npz(path), RadianceGrid.load_npz(again / 'features' / path.name)
        np.testing.assert_array_equal(a.rgbsigma, b.rgbsigma)
        for folder in ('aabb', 'obb', 'voxel_tabletop'):
            np.testing.assert_array_equal(np.load(dataset / folder / f'{path.stem}.npy'),
                                          np.load(again / folder / f'{path.stem}.npy'))
    other = tmp_path / 'other'
    generate(compose_config([f'out={other}', 'seed=5', *SMALL[1:], 'n=2']))
    first = sorted((other / 'features').glob('*.npz'))[0]
    assert not np.array_equal(RadianceGrid.load_npz(first).rgbsigma,
                              RadianceGrid.load_npz(dataset / 'features' / first.name).rgbsigma)
    # overwrite=true replaces the earlier scenes instead of mixing them in.
    generate(compose_config([f'out={other}', 'seed=5', *SMALL[1:], 'n=1', 'labels=false',
                             'overwrite=true']))
    assert [p.name for p in (other / 'features').iterdir()] == ['reach_sim_00000.npz']
    assert read_split(other)['train'] == ['reach_sim_00000']
    assert not list((other / 'aabb').glob('*.npy')) and not (other / 'classes.json').exists()
    assert [p.name for p in (other / 'meta').iterdir()] == ['reach_sim_00000.json']


# Scenes of the dataset above, rendered again directly (the env keeps the rendered state):
# Stack (boxes) and TwoStepPickPlace (capsules, cylinders, a 13-geom bowl).
SCENES = {'Stack': 'stack_sim_00003', 'TwoStepPickPlace': 'twosteppickplace_sim_00004'}


@pytest.fixture(scope='module')
def scenes():
    import gymnasium as gym

    import embodied_vision.sim  # noqa: F401  (registers the ids)
    cfg = compose_config(SMALL)
    rendered, envs = {}, []
    for task, name in SCENES.items():
        envs.append(gym.make(f'embodied_vision/{task}-v0', cameras=(), depth=False,
                             shadows=False))
        index = int(name.rsplit('_', 1)[1])
        scene = {'index': index, 'name': name, 'task': task, 'domain': 'sim', 'seed': index}
        rendered[task] = (envs[-1].unwrapped, *render_scene(envs[-1].unwrapped, cfg, scene))
    yield rendered
    for env in envs:
        env.close()


@pytest.mark.parametrize('task', sorted(SCENES))
def test_scene_matches_the_written_file(dataset, scenes, task):
    _, grid, labels, meta = scenes[task]
    name = SCENES[task]
    written = RadianceGrid.load_npz(dataset / 'features' / f'{name}.npz')
    np.testing.assert_array_equal(written.rgbsigma, grid.rgbsigma)
    for kind, folder in (('aabb', 'aabb'), ('obb', 'obb'), ('semantics', 'voxel_tabletop')):
        np.testing.assert_array_equal(np.load(dataset / folder / f'{name}.npy'), labels[kind])
    assert meta == _meta(dataset, name)


@pytest.mark.parametrize('task', sorted(SCENES))
def test_boxes_contain_the_object_surface(scenes, task):
    env, grid, labels, meta = scenes[task]
    names = [o['name'] for o in meta['objects']]
    assert set(env.task.objects) <= set(names)
    for row, name in enumerate(names):
        if name not in env.task.objects:
            continue  # the gripper: no object_point_cloud
        points = env.object_point_cloud(name, n=1024).astype(np.float64)
        voxels = (points - grid.bbox_min) / grid.spacing  # NeRF-RPN's voxel units
        aabb = labels['aabb'][row].astype(np.float64)
        assert np.all(voxels >= aabb[:3] - 1e-4) and np.all(voxels <= aabb[3:] + 1e-4)
        obb = labels['obb'][row].astype(np.float64)  # x y z w l h theta
        centre = grid.bbox_min + obb[:3] * grid.spacing
        size = obb[3:6] * grid.spacing
        theta = obb[6]
        c, s = np.cos(theta), np.sin(theta)
        offset = points - centre
        local = np.stack([offset[:, 0] * c + offset[:, 1] * s,
                          -offset[:, 0] * s + offset[:, 1] * c, offset[:, 2]], axis=1)
        assert np.all(np.abs(local) <= size / 2 + 1e-5), name
        assert np.all(np.ptp(local, axis=0) > 0.9 * size), name  # and it is tight


def test_centre_voxel_of_an_object_has_its_class(scenes):
    _, grid, labels, meta = scenes['Stack']
    cubes = [o for o in meta['objects'] if o['name'] in ('red_cube', 'green_cube')]
    assert len(cubes) == 2
    for cube in cubes:
        index = tuple(np.floor((np.array(cube['obb_world'][:3]) - grid.bbox_min)
                               / grid.spacing).astype(int))
        assert grid.alpha[index] > 0.01  # the cube's centre voxel is seen (occupied)
        assert labels['semantics'][index] == CLASS_NAMES.index(cube['name'])
    assert set(np.unique(labels['semantics'])) >= {0, CLASS_NAMES.index('red_cube'),
                                                   CLASS_NAMES.index('green_cube')}


def _known_grid(occupied=True):
    """A 10 x 10 x 10 grid of 1 cm voxels over [0, 0.1]^3, fully occupied (or empty)."""
    rgbsigma = np.zeros((10, 10, 10, 4), np.float32)
    rgbsigma[..., 3] = 500.0 if occupied else 0.0
    return RadianceGrid(rgbsigma, np.zeros(3), np.full(3, 0.1), (10, 10, 10))


def _placed(kind, size, centre):
    pose = np.eye(4)
    pose[:3, 3] = centre
    return (kind, np.asarray(size, np.float64), pose)


def test_voxel_classes_on_known_geometry():
    grid = _known_grid()
    cube = Instance('red_cube', 3, [_placed('box', [0.02, 0.02, 0.02], [0.03, 0.03, 0.03])])
    ball = Instance('can', 2, [_placed('sphere', [0.015], [0.075, 0.075, 0.075])])
    # A 4 mm slab across the voxel boundary z = 0.06: no voxel centre lies inside it.
    slab = Instance('plate', 7, [_placed('box', [0.025, 0.025, 0.002], [0.025, 0.025, 0.06])])
    centres = np.indices((10, 10, 10)).transpose(1, 2, 3, 0) * 0.01 + 0.005
    expected = np.zeros((10, 10, 10), np.uint8)
    expected[1:5, 1:5, 1:5] = 3  # voxel centres 0.015 .. 0.045 lie in the cube [0.01, 0.05]
    expected[np.sum((centres - 0.075) ** 2, axis=-1) <= 0.015 ** 2] = 2
    assert (expected == 2).sum() == 19  # the centre voxel, 6 faces and 12 edges
    np.testing.assert_array_equal(voxel_semantics(grid, [cube, ball, slab]), expected)
    # Probing each cell on a 3^3 lattice finds the slab in the two layers it crosses; the
    # cube, whose faces lie on voxel boundaries, keeps exactly its voxels.
    probed = voxel_semantics(grid, [slab, ball, cube], samples_per_axis=3)
    slab_voxels = np.zeros_like(expected, bool)
    slab_voxels[0:5, 0:5, 5:7] = True
    np.testing.assert_array_equal(probed == 7, slab_voxels)
    np.testing.assert_array_equal(probed == 3, expected == 3)
    assert np.all(probed[expected == 2] == 2) and (probed == 2).sum() > 19
    # Only occupied voxels get a class.
    assert not voxel_semantics(_known_grid(occupied=False), [cube, ball], 0.01, 3).any()


def test_world_boxes_to_voxel_units_follow_nerf_rpn():
    grid = _known_grid()
    aabb = np.array([[0.01, 0.02, 0.03, 0.05, 0.06, 0.07], [-0.05, 0.0, 0.0, 0.03, 0.1, 0.2]])
    obb = np.array([[0.03, 0.04, 0.05, 0.04, 0.02, 0.04, 0.3],
                    [-0.01, 0.05, 0.1, 0.08, 0.1, 0.2, 0.0]])
    vox_aabb, vox_obb, keep = voxel_boxes(aabb, obb, grid)
    np.testing.assert_allclose(vox_aabb, [[1, 2, 3, 5, 6, 7]], atol=1e-5)
    np.testing.assert_allclose(vox_obb, [[3, 4, 5, 4, 2, 4, 0.3]], atol=1e-5)
    assert keep.tolist() == [True, False]  # the second centre lies outside the grid
    clipped, _, keep = voxel_boxes(aabb[1:], np.array([[0.01, 0.05, 0.1, 0.08, 0.1, 0.2, 0]]),
                                   grid)
    np.testing.assert_allclose(clipped, [[0, 0, 0, 3, 10, 10]], atol=1e-5)


def test_empty_grid_and_bad_config_are_refused(tmp_path, capsys):
    nowhere = ['bbox=[[5.0,5.0,5.0],[5.6,5.7,5.3]]']  # the views look at empty space
    assert main([f'out={tmp_path / "empty"}', *SMALL, *nowhere]) == 2
    assert 'the grid is empty (0 occupied voxels' in capsys.readouterr().err
    with pytest.raises(ValueError, match='tasks=.*must be a non-empty subset'):
        generate(compose_config([f'out={tmp_path / "x"}', 'tasks=[Juggle]']))
    with pytest.raises(ValueError, match='val=0.6 and test=0.5'):
        generate(compose_config([f'out={tmp_path / "x"}', 'val=0.6', 'test=0.5']))
    with pytest.raises(ValueError, match='held out for evaluation'):
        generate(compose_config([f'out={tmp_path / "x"}', 'seed=999999']))
    with pytest.raises(ValueError, match='bbox='):
        generate(compose_config([f'out={tmp_path / "x"}', 'bbox=[[0,0,0],[1,1,0]]']))
