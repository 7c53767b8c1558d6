"""Embeddings with planted structure for the curation tests: the tests know the right answer."""
import numpy as np

from dinokit.curate import Pool

DIM = 384


def unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def near(rng, base, cosine):
    """Unit vectors at (about) the given cosine similarity to each base vector."""
    noise = unit(rng.normal(size=base.shape))
    noise = unit(noise - (noise * base).sum(-1, keepdims=True) * base)  # orthogonal to base
    return unit(cosine * base + np.sqrt(1 - cosine ** 2) * noise)


def concepts(rng, n_concepts, sizes, within=0.85):
    """Distinct items around concept centres: items of one concept have cosine ≈ within² to each other
    (0.72), well below any duplicate threshold, but far above unrelated items (≈ 0)."""
    centres = unit(rng.normal(size=(n_concepts, DIM)))
    labels = np.repeat(np.arange(n_concepts), sizes)
    return near(rng, centres[labels], within), labels


def pool_of(vectors, prefix="img"):
    return Pool([f"{prefix}/{i:06d}.jpg" for i in range(len(vectors))], unit(vectors))
