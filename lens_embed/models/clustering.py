"""Vocabulary compression: KMeans of the token-embedding matrix into K centroids.

One centroid = one output dimension of a LENS model, so every dimension can be named by its
member tokens (the token -> cluster assignment saved beside the centroids).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import trange


@dataclass(frozen=True)
class Clustering:
    """Centroids [K, H] (float32) and, for every vocabulary row, the index of its cluster."""

    centroids: torch.Tensor
    assignments: torch.Tensor


def validate_n_clusters(n_clusters: int, vocab_size: int) -> None:
    """K must split the vocabulary: 1 < K < vocab size."""
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, int):
        raise TypeError(f"n_clusters must be an int, got {type(n_clusters).__name__}")
    if not 1 < n_clusters < vocab_size:
        raise ValueError(f"n_clusters must satisfy 1 < K < vocab size ({vocab_size}), got K={n_clusters}")


def kmeans_vocabulary(
    matrix: torch.Tensor,
    n_clusters: int,
    *,
    n_iter: int = 20,
    seed: int = 0,
    device: str | torch.device | None = None,
    verbose: bool = False,
) -> Clustering:
    """Cluster the rows of ``matrix``: faiss on CPU, a torch Lloyd loop on GPU (when one is used)."""
    validate_n_clusters(n_clusters, matrix.shape[0])
    data = matrix.detach().float()
    target = torch.device(device) if device is not None else data.device
    if target.type == "cuda":
        centroids = lloyd_kmeans(data.to(target), n_clusters, n_iter=n_iter, seed=seed, verbose=verbose).cpu()
    else:
        centroids = faiss_kmeans(data.cpu(), n_clusters, n_iter=n_iter, seed=seed, verbose=verbose)
    return Clustering(centroids=centroids, assignments=assign_to_centroids(data.cpu(), centroids))


def faiss_kmeans(
    data: torch.Tensor, n_clusters: int, *, n_iter: int, seed: int, verbose: bool
) -> torch.Tensor:
    """faiss' KMeans (seeded) on CPU."""
    import faiss

    points = np.ascontiguousarray(data.numpy(), dtype=np.float32)
    kmeans = faiss.Kmeans(
        points.shape[1],
        n_clusters,
        niter=n_iter,
        seed=seed,
        verbose=verbose,
        min_points_per_centroid=1,
        max_points_per_centroid=1 << 30,
    )
    kmeans.train(points)
    return torch.from_numpy(np.array(kmeans.centroids, dtype=np.float32))


def lloyd_kmeans(
    data: torch.Tensor, n_clusters: int, *, n_iter: int, seed: int, verbose: bool = False
) -> torch.Tensor:
    """Plain Lloyd iterations in torch (for GPUs); empty clusters are re-seeded from far points."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    init = torch.randperm(data.shape[0], generator=generator)[:n_clusters].to(data.device)
    centroids = data[init].clone()
    for _ in trange(n_iter, desc="KMeans", disable=not verbose):
        labels = nearest_centroid(data, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, labels, data)
        counts = torch.bincount(labels, minlength=n_clusters).to(data.dtype)
        empty = counts == 0
        centroids = sums / counts.clamp(min=1).unsqueeze(1)
        if empty.any():
            distance = (data - centroids[labels]).pow(2).sum(dim=1)
            far = distance.topk(int(empty.sum())).indices
            centroids[empty] = data[far]
    return centroids


def nearest_centroid(data: torch.Tensor, centroids: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    """Index of the nearest centroid (Euclidean) for each row, in row batches to bound memory."""
    centroid_norms = centroids.pow(2).sum(dim=1)
    labels = []
    for begin in range(0, data.shape[0], batch_size):
        rows = data[begin : begin + batch_size]
        distance = centroid_norms.unsqueeze(0) - 2 * rows @ centroids.T
        labels.append(distance.argmin(dim=1))
    return torch.cat(labels)


def assign_to_centroids(matrix: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Token -> cluster map for any vocabulary matrix (also used when a checkpoint ships only centroids)."""
    return nearest_centroid(matrix.detach().float().cpu(), centroids.float().cpu())
