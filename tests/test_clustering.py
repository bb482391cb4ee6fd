"""KMeans of the vocabulary matrix."""

import pytest
import torch

from lens_embed.models.clustering import assign_to_centroids, kmeans_vocabulary, lloyd_kmeans


def planted(n_per: int = 40, k: int = 4, dim: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    centers = torch.randn(k, dim, generator=generator) * 10
    labels = torch.arange(k).repeat_interleave(n_per)
    return centers[labels] + torch.randn(k * n_per, dim, generator=generator) * 0.1, labels


def same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    return all(len(set(b[a == c].tolist())) == 1 for c in a.unique())


def test_faiss_kmeans_recovers_planted_clusters():
    data, labels = planted()
    result = kmeans_vocabulary(data, 4, seed=0)
    assert result.centroids.shape == (4, 8) and result.assignments.shape == (160,)
    assert same_partition(labels, result.assignments)


def test_torch_lloyd_loop_recovers_planted_clusters():
    data, labels = planted()
    centroids = lloyd_kmeans(data, 4, n_iter=20, seed=3)
    assert same_partition(labels, assign_to_centroids(data, centroids))


def test_clustering_is_deterministic_for_a_seed():
    data, _ = planted()
    first, second = kmeans_vocabulary(data, 6, seed=7), kmeans_vocabulary(data, 6, seed=7)
    assert torch.equal(first.centroids, second.centroids)


@pytest.mark.parametrize("k", [1, 160, 500, 0])
def test_k_out_of_range_is_rejected(k):
    data, _ = planted()
    with pytest.raises(ValueError, match="1 < K < vocab size"):
        kmeans_vocabulary(data, k)


def test_k_must_be_an_integer():
    with pytest.raises(TypeError, match="int"):
        kmeans_vocabulary(planted()[0], 4.0)
