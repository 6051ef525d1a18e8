"""Language: the packaged MiniLM sentence embedder and sentence similarity (Lang4Sim2Real)."""
from embodied_vision.language.embedder import SentenceEmbedder, default_model_path
from embodied_vision.language.similarity import (
    MiniLMCosineSimilarity,
    create_similarity,
    min_max_normalise,
    register_similarity,
)

__all__ = ['MiniLMCosineSimilarity', 'SentenceEmbedder', 'create_similarity',
           'default_model_path', 'min_max_normalise', 'register_similarity']
