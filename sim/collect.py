"""`embodied-vision collect`: record scripted-expert episodes to HDF5.

    embodied-vision collect task=PickPlace domain=real n=50 out=demos.hdf5 \\
        cameras=[front,wrist] size=128 seed=0 num_envs=2 vector=async

Arguments are hydra overrides of `embodied_vision/configs/collect.yaml` (composed with
hydra's compose API). Episodes run in a gymnasium vector env (sync or async) with autoreset
disabled: every finished sub-env is reset with the next episode seed (`seed + k` for the k-th
launched episode), so the recorded episodes do not depend on `num_envs`. The file layout is
documented in `embodied_vision.data.episodes`.
"""
import logging
import sys

from gymnasium.vector import AutoresetMode
import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from embodied_vision.configs import compose_config as compose_package_config
from embodied_vision.data.episodes import EpisodeBuffer, EpisodeWriter
from embodied_vision.sim.base import EVALUATION_SEED_BASE
from embodied_vision.sim.tasks import TASKS

__all__ = ['collect', 'compose_config', 'main']

_logger = logging.getLogger(__name__)


def compose_config(overrides: list[str]) -> DictConfig:
    """Compose `collect.yaml` with hydra-style `overrides` (`key=value`)."""
    return compose_package_config('collect', overrides)


def _env_kwargs(cfg: DictConfig) -> dict:
    size = cfg.size
    size = tuple(size) if OmegaConf.is_list(size) else int(size)
    randomization = cfg.domain_randomization
    if OmegaConf.is_config(randomization):
        randomization = OmegaConf.to_container(randomization)
    return {
        'cameras': tuple(cfg.cameras),
        'image_size': size,
        'depth': bool(cfg.depth),
        'shadows': bool(cfg.shadows),
        'stereo': bool(cfg.stereo),
        'domain': cfg.domain,
        'domain_kwargs': OmegaConf.to_container(cfg.domain_kwargs),
        'domain_randomization': randomization,
        'task_kwargs': OmegaConf.to_container(cfg.task_kwargs),
    }


def _make_envs(cfg: DictConfig):
    from embodied_vision.sim.vector import make_vector_env
    return make_vector_env(cfg.task, int(cfg.num_envs), asynchronous=cfg.vector == 'async',
                           max_episode_steps=cfg.max_episode_steps,
                           autoreset_mode=AutoresetMode.DISABLED, **_env_kwargs(cfg))


def _slice(obs: dict, i: int) -> dict:
    return {k: v[i] for k, v in obs.items()}


def _info(infos: dict, i: int) -> dict:
    return {k: v[i] for k, v in infos.items() if not k.startswith('_')}


def _max_attempts(cfg: DictConfig) -> int:
    """Episodes `collect` may launch: `max_attempts`, or twice `n` when unset."""
    return int(cfg.max_attempts) if cfg.max_attempts is not None else 2 * int(cfg.n)


def _validate(cfg: DictConfig) -> None:
    if cfg.task not in TASKS:
        raise ValueError(f'unknown task {cfg.task!r}; valid tasks: {sorted(TASKS)}')
    if cfg.vector not in ('sync', 'async'):
        raise ValueError(f"vector must be 'sync' or 'async', got {cfg.vector!r}")
    for key in ('n', 'num_envs'):
        if int(cfg[key]) < 1:
            raise ValueError(f'{key} must be >= 1, got {cfg[key]}')
    if not 0.0 <= float(cfg.expert_noise) <= 1.0:
        raise ValueError(f'expert_noise must be in [0, 1], got {cfg.expert_noise}')
    attempts = _max_attempts(cfg)
    last_seed = int(cfg.seed) + attempts + int(cfg.num_envs) - 1
    if int(cfg.seed) < 0 or last_seed >= EVALUATION_SEED_BASE:
        raise ValueError(f'seed={cfg.seed} with up to {attempts} attempts would use episode '
                         f'seeds up to {last_seed}; collection seeds must lie in [0, '
                         f'{EVALUATION_SEED_BASE}): seeds from {EVALUATION_SEED_BASE} up are '
                         'held out for evaluation')


def collect(cfg: DictConfig) -> dict:
    """Record `cfg.n` expert episodes; returns a summary dict (episodes, attempts, success)."""
    _validate(cfg)
    n, num_envs, seed = int(cfg.n), int(cfg.num_envs), int(cfg.seed)
    max_attempts = _max_attempts(cfg)
    envs = _make_envs(cfg)
    launched = 0
    attempts = successes = written = 0
    try:
        seeds = [seed + i for i in range(num_envs)]
        launched = num_envs
        obs, infos = envs.reset(seed=seeds)
        env_args = envs.call('describe')[0]
        env_args['collect'] = OmegaConf.to_container(cfg)
        episode_seed = list(seeds)
        camera_params = [d['camera_params'] for d in envs.call('describe')]
        buffers = [EpisodeBuffer(_info(infos, i)) for i in range(num_envs)]
        noise = [np.random.default_rng([s, 1]) for s in episode_seed]
        active = np.ones(num_envs, dtype=bool)
        bar = tqdm(total=n, desc=f'collect {cfg.task}/{cfg.domain}', unit='ep',
                   disable=not cfg.progress)
        with EpisodeWriter(cfg.out, env_args=env_args, compression=cfg.compression) as writer:
            while written < n and active.any():
                actions = np.stack(envs.call('expert_action'))
                states = envs.call('get_state')
                if cfg.expert_noise:
                    jitter = np.stack([rng.normal(0.0, cfg.expert_noise, 3) for rng in noise])
                    actions[:, :3] = np.clip(actions[:, :3] + jitter, -1.0, 1.0)
                next_obs, rewards, terminated, truncated, infos = envs.step(actions)
                done = terminated | truncated
                for i in np.flatnonzero(active):
                    info = _info(infos, i)
                    buffers[i].add(_slice(obs, i), actions[i], rewards[i], done[i], info,
                                   next_obs=_slice(next_obs, i), state=states[i])
                obs = next_obs
                finished = np.flatnonzero(done & active)
                if not len(finished):
                    continue
                reset_mask = np.zeros(num_envs, dtype=bool)
                reset_seeds = [None] * num_envs
                for i in finished:
                    attempts += 1
                    success = bool(infos['success'][i])
                    successes += success
                    if (success or not cfg.only_success) and written < n:
                        writer.add_episode(buffers[i], attrs={
                            'seed': episode_seed[i], 'success': success,
                            'camera_params': camera_params[i]})
                        written += 1
                        bar.update(1)
                    reset_mask[i] = True
                    if launched < max_attempts and written + active.sum() - 1 < n + num_envs:
                        reset_seeds[i] = seed + launched
                        episode_seed[i] = seed + launched
                        launched += 1
                    else:
                        active[i] = False
                        reset_seeds[i] = seed + launched
                # With autoreset disabled, a masked reset returns the latest observation of
                # every sub-env (the others keep theirs).
                obs, reset_infos = envs.reset(seed=reset_seeds,
                                              options={'reset_mask': reset_mask})
                described = envs.call('describe')
                for i in np.flatnonzero(reset_mask):
                    buffers[i] = EpisodeBuffer(_info(reset_infos, i))
                    noise[i] = np.random.default_rng([episode_seed[i], 1])
                    camera_params[i] = described[i]['camera_params']
        bar.close()
    finally:
        envs.close()
    if written < n:
        _logger.warning('wrote %d of %d episodes (%d attempts, %d successes)', written, n,
                        attempts, successes)
    return {'episodes': written, 'attempts': attempts, 'successes': successes,
            'success_rate': successes / max(attempts, 1), 'out': cfg.out}


def main(argv: list[str] | None = None) -> int:
    """Entry point: `argv` are hydra overrides. Returns 0 when all `n` episodes were written."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        cfg = compose_config(argv)
        summary = collect(cfg)
    except ValueError as err:
        _logger.error('%s', err)
        sys.stderr.write(f'error: {err}\n')
        return 2
    sys.stdout.write(f"wrote {summary['episodes']} episodes to {summary['out']} "
                     f"(expert success {summary['success_rate']:.0%} over "
                     f"{summary['attempts']} attempts)\n")
    return 0 if summary['episodes'] >= int(cfg.n) else 1


if __name__ == '__main__':
    sys.exit(main())
