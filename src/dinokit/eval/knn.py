"""The paper's k-NN protocol: L2-normalised features, cosine similarity, the top 200 neighbours weighted
by softmax(similarity / T), votes summed over the first k, top-1 and top-5 accuracy."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..embeddings import knn


def knn_predict(train: torch.Tensor, train_labels: torch.Tensor, query: torch.Tensor, num_classes: int,
                ks=(10, 20, 100, 200), temperature: float = 0.07) -> dict[int, torch.Tensor]:
    """Class scores [Q, C] for every k (as the official KnnModule: one softmax over the max-k neighbours).
    The neighbours come from the exact search every job shares (`dinokit.embeddings.knn`)."""
    max_k = min(max(ks), len(train))
    top_sim, top_idx = (torch.from_numpy(a) for a in knn(train.float().numpy(), query.float().numpy(), max_k,
                                                        kind="flat"))
    weights = (top_sim / temperature).softmax(dim=1)
    votes = F.one_hot(train_labels[top_idx], num_classes).float() * weights[..., None]
    return {k: votes[:, :min(k, max_k)].sum(dim=1) for k in ks}


def accuracy(scores: torch.Tensor, labels: torch.Tensor, topk: int) -> float:
    topk = min(topk, scores.shape[1])
    hits = (scores.topk(topk, dim=1).indices == labels[:, None]).any(dim=1)
    return hits.float().mean().item()


def knn_eval(train, train_labels, val, val_labels, num_classes, ks=(10, 20, 100, 200), temperature=0.07):
    scores = knn_predict(train, train_labels, val, num_classes, ks, temperature)
    return [{"k": k, "top1": accuracy(s, val_labels, 1), "top5": accuracy(s, val_labels, 5)} for k, s in scores.items()]
