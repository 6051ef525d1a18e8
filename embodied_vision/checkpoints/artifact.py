"""Every model this package writes, in one layout: safetensors weights + a JSON config.

An artefact is a directory holding `model.safetensors` and `config.json`; the config is also
stored in the safetensors header, so a lone `.safetensors` file is self-contained. Encoders,
policies and downstream heads all use it, so one reader knows what any directory holds.

config.json (format_version 2):
    format          "embodied_vision"
    format_version  2
    kind            "encoder" | "policy" | "head"
    name            the registered architecture, policy type or head type
    license         licence of the published weights the model started from, or ""
    non_commercial  true when that licence forbids commercial use (warned about on load)
    versions        embodied_vision and torch versions that wrote it
    ...             the kind's own fields (an encoder's `kwargs`, a policy's config, ...)

Files written before format_version 2 are read too: encoders (format "embodied_vision",
version 1), pair-geometry heads (format "embodied_vision.pair_geometry") and policies (a
config with only a `type`).
"""
from dataclasses import dataclass, field
import json
import os
from pathlib import Path

import safetensors
import safetensors.torch
import torch

from embodied_vision.checkpoints._format import CheckpointError
from embodied_vision.checkpoints.licence import warn_licence

__all__ = ['Artifact', 'CONFIG_FILE', 'FORMAT_NAME', 'FORMAT_VERSION', 'KINDS', 'WEIGHTS_FILE',
           'encoder_config', 'is_artifact', 'licence_of', 'read_artifact', 'save_artifact',
           'save_encoder']

FORMAT_NAME = 'embodied_vision'
FORMAT_VERSION = 2
KINDS = ('encoder', 'policy', 'head')
WEIGHTS_FILE = 'model.safetensors'
CONFIG_FILE = 'config.json'
ENVELOPE = ('format', 'format_version', 'kind', 'name', 'license', 'non_commercial', 'versions')
_META_KEY = 'embodied_vision_config'
_LEGACY_HEAD_FORMAT = 'embodied_vision.pair_geometry'


@dataclass
class Artifact:
    """What `read_artifact` found: the envelope, the kind's own fields and the weights."""

    path: Path
    kind: str
    name: str
    config: dict                      # the kind's own fields (the envelope removed)
    state: dict[str, torch.Tensor] = field(repr=False)
    license: str = ''
    non_commercial: bool = False
    versions: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def describe(self) -> str:
        return f'{self.kind} {self.name!r} ({self.path})'


def licence_of(module: torch.nn.Module) -> tuple[str, bool]:
    """`(licence, non_commercial)` of the published weights anywhere inside `module`.

    A submodule built from published weights carries their `PretrainedCfg` (timm's own
    `pretrained_cfg` dicts describe a model, not its weights, and are ignored); one read back
    from an artefact carries `weights_license` / `non_commercial`. Several licences are joined
    with ' + '; any non-commercial one makes the whole non-commercial.
    """
    licences, non_commercial = [], False
    for sub in module.modules():
        cfg = getattr(sub, 'pretrained_cfg', None)   # ours; timm's (a dict) says nothing
        found = (cfg.license, cfg.non_commercial) if hasattr(cfg, 'non_commercial') else (
            getattr(sub, 'weights_license', ''), bool(getattr(sub, 'non_commercial', False)))
        if found[0] and found[0] not in licences:
            licences.append(found[0])
        non_commercial |= found[1]
    return ' + '.join(licences), non_commercial


def save_artifact(path: str | os.PathLike, module: torch.nn.Module, kind: str, name: str,
                  config: dict) -> Path:
    """Write `module`'s weights and `config` (the kind's own fields) to directory `path`.

    The licence is taken from the module (`licence_of`), so a model fine-tuned from
    non-commercial weights stays marked as such. Returns the directory.
    """
    if kind not in KINDS:
        raise ValueError(f'kind={kind!r} is not one of {KINDS}')
    clash = sorted(set(config) & set(ENVELOPE))
    if clash:
        raise ValueError(f'{kind} config may not use the envelope keys {clash}')
    from embodied_vision.version import __version__
    licence, non_commercial = licence_of(module)
    full = {'format': FORMAT_NAME, 'format_version': FORMAT_VERSION, 'kind': kind,
            'name': name, 'license': licence, 'non_commercial': non_commercial,
            'versions': {'embodied_vision': __version__, 'torch': torch.__version__},
            **config}
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    text = json.dumps(full, indent=2) + '\n'
    tmp = path / (WEIGHTS_FILE + '.tmp')
    safetensors.torch.save_file(state, str(tmp), metadata={_META_KEY: json.dumps(full)})
    os.replace(tmp, path / WEIGHTS_FILE)
    (path / (CONFIG_FILE + '.tmp')).write_text(text)
    os.replace(path / (CONFIG_FILE + '.tmp'), path / CONFIG_FILE)
    return path


def encoder_config(encoder) -> dict:
    """An encoder's own fields: what `create_encoder` needs to rebuild it, and its contract."""
    cfg = getattr(encoder, 'pretrained_cfg', None)
    return {'tag': cfg.tag if cfg else '', 'kwargs': dict(encoder.init_kwargs),
            'embed_dim': encoder.embed_dim,
            'input_contract': encoder.input_contract.to_dict()}


def save_encoder(encoder, path: str | os.PathLike) -> Path:
    """Write a registered encoder to directory `path`; `load_encoder(path)` rebuilds it."""
    return save_artifact(path, encoder, 'encoder', encoder.name, encoder_config(encoder))


def is_artifact(path: str | os.PathLike) -> bool:
    """True for a directory holding our weights file, or a `.safetensors` file."""
    path = Path(path)
    return (path.is_dir() and (path / WEIGHTS_FILE).exists()) or path.suffix == '.safetensors'


def _expected(kind: str | None) -> str:
    return (f'a directory with {WEIGHTS_FILE} and {CONFIG_FILE} (or a lone .safetensors) '
            f'written by embodied_vision{f" ({kind})" if kind else ""}')


def _parse(text: str, source: Path, kind: str | None) -> dict:
    try:
        config = json.loads(text)
    except ValueError as err:
        raise CheckpointError(f'the config of {source} is not valid JSON ({err}); expected '
                              f'{_expected(kind)}') from err
    if not isinstance(config, dict):
        raise CheckpointError(f'the config of {source} is a {type(config).__name__}, not a '
                              f'JSON object; expected {_expected(kind)}')
    return config


def _config_in_metadata(weights: Path, metadata: dict, kind: str | None) -> dict:
    for key in (_META_KEY, 'config'):     # 'config': policies before format_version 2
        if key in metadata:
            return _parse(metadata[key], weights, kind)
    raise CheckpointError(f'{weights} has no {CONFIG_FILE} beside it and no config in its '
                          f'metadata; expected {_expected(kind)}')


def _envelope(config: dict, source: Path) -> dict:
    """The format_version-2 envelope of `config`, whatever version wrote it."""
    fmt = config.get('format')
    if fmt == FORMAT_NAME and int(config.get('format_version', 1)) >= 2:
        if int(config['format_version']) > FORMAT_VERSION:
            raise CheckpointError(f'{source} has format_version {config["format_version"]}; '
                                  f'this embodied_vision reads up to {FORMAT_VERSION}')
        return config
    if fmt == FORMAT_NAME:                                        # encoders, version 1
        return {**config, 'kind': 'encoder'}
    if fmt == _LEGACY_HEAD_FORMAT:                                # pair geometry, version 1
        return {**config, 'kind': 'head', 'name': 'pair_geometry'}
    if fmt is None and isinstance(config.get('type'), str):       # policies, version 1
        return {**config, 'kind': 'policy', 'name': config['type']}
    raise CheckpointError(f'{source} has format {fmt!r}, expected {FORMAT_NAME!r}')


def read_artifact(path: str | os.PathLike, kind: str | None = None,
                  name: str | None = None) -> Artifact:
    """Read an artefact, checking it holds `kind` (and `name`) when given.

    Raises CheckpointError naming what was found and what was expected. Warns when the
    weights are non-commercial.
    """
    path = Path(path).expanduser()
    weights = path / WEIGHTS_FILE if path.is_dir() else path
    if not weights.is_file():
        raise CheckpointError(f'{path} does not exist or holds no {WEIGHTS_FILE}; expected '
                              f'{_expected(kind)}')
    sidecar = weights.parent / CONFIG_FILE
    config = _parse(sidecar.read_text(), sidecar, kind) if sidecar.exists() else None
    try:
        with safetensors.safe_open(str(weights), framework='pt') as handle:
            metadata = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f'{weights} cannot be read as safetensors '
                              f'({type(err).__name__}: {err}); expected {_expected(kind)}'
                              ) from err
    if config is None:
        config = _config_in_metadata(weights, metadata, kind)
    full = _envelope(config, path)
    found = Artifact(path=path, kind=full.get('kind', ''), name=str(full.get('name', '')),
                     config={k: v for k, v in full.items() if k not in ENVELOPE},
                     state=state, license=str(full.get('license', '')),
                     non_commercial=bool(full.get('non_commercial', False)),
                     versions=dict(full.get('versions', {})),
                     format_version=int(full.get('format_version', 1)))
    if kind is not None and found.kind != kind:
        raise CheckpointError(f'{path} holds {found.kind} {found.name!r}, not a {kind}')
    if name is not None and found.name != name:
        raise CheckpointError(f'{path} holds {found.kind} {found.name!r}, not {name!r}')
    if found.non_commercial:
        warn_licence(str(path), found.license, stacklevel=3)
    return found
