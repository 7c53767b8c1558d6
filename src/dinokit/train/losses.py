"""The three losses of DINOv2 (Oquab et al., 2023), each a small module, numerically equal to the official
`dinov2.loss` modules on the same inputs (tested). Teacher targets come from `teacher_targets`: EMA-centred
softmax or Sinkhorn-Knopp, both all-reduced over processes, so several processes give the targets of one
process holding the whole batch."""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def all_reduce(t: torch.Tensor, op=dist.ReduceOp.SUM) -> torch.Tensor:
    """In place over every process (a no-op for one)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=op)
    return t


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


@torch.no_grad()
def sinkhorn_knopp(scores: torch.Tensor, temperature: float, iterations: int = 3,
                   total_samples: int | torch.Tensor | None = None) -> torch.Tensor:
    """[B, K] teacher scores → [B, K] assignments whose rows sum to 1 and whose prototypes share the batch
    evenly (SwAV's equipartition); total_samples is the number of rows over all processes. The scores are
    shifted by their (global) maximum before exp — the normalisation cancels it — so large scores cannot
    overflow to inf/NaN as in the official code."""
    scores = scores.float()
    top = all_reduce(scores.max().detach().clone(), dist.ReduceOp.MAX)
    Q = torch.exp((scores - top) / temperature).t()
    K = Q.shape[0]
    B = total_samples if total_samples is not None else Q.shape[1] * _world()
    Q /= all_reduce(Q.sum())
    for _ in range(iterations):
        Q /= all_reduce(Q.sum(dim=1, keepdim=True))
        Q /= K
        Q /= Q.sum(dim=0, keepdim=True)
        Q /= B
    Q *= B
    return Q.t()


class _Centered(nn.Module):
    """The EMA centre of the teacher's outputs (DINO's centring), updated after each step."""

    def __init__(self, shape, center_momentum: float):
        super().__init__()
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(shape))

    @torch.no_grad()
    def centered_softmax(self, teacher_output: torch.Tensor, temperature: float) -> torch.Tensor:
        return F.softmax((teacher_output - self.center) / temperature, dim=-1)

    @torch.no_grad()
    def _update(self, batch_sum: torch.Tensor, count: int) -> None:
        mean = all_reduce(batch_sum) / (count * _world())
        self.center.mul_(self.center_momentum).add_(mean * (1 - self.center_momentum))


class DINOLoss(_Centered):
    """Cross-entropy between the teacher's target distributions and the student's softmax(s / 0.1), summed
    over every (student crop, teacher crop) pair given."""

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9):
        super().__init__((1, out_dim), center_momentum)
        self.student_temp = student_temp

    def forward(self, student_outputs: list[torch.Tensor], teacher_targets: list[torch.Tensor]) -> torch.Tensor:
        total = 0
        for s in student_outputs:
            log_p = F.log_softmax(s / self.student_temp, dim=-1)
            for t in teacher_targets:
                total = total - (t * log_p).sum(-1).mean()
        return total

    @torch.no_grad()
    def update_center(self, teacher_output: torch.Tensor) -> None:
        self._update(teacher_output.sum(0, keepdim=True), len(teacher_output))


class iBOTPatchLoss(_Centered):
    """The same cross-entropy on masked patch tokens: each image's masked patches weigh 1 / (its number of
    masked patches), and the sum is divided by the number of images."""

    def __init__(self, patch_out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9):
        super().__init__((1, 1, patch_out_dim), center_momentum)
        self.student_temp = student_temp

    def forward(self, student_masked: torch.Tensor, teacher_masked: torch.Tensor, masks: torch.Tensor,
                masks_weight: torch.Tensor | None = None) -> torch.Tensor:
        """student_masked, teacher_masked: [M, K], the masked patches of all images in order; masks [B, N]."""
        loss = (teacher_masked * F.log_softmax(student_masked.float() / self.student_temp, dim=-1)).sum(-1)
        if masks_weight is None:
            masks_weight = (1 / masks.sum(-1).clamp(min=1.0)).unsqueeze(-1).expand_as(masks)[masks]
        return -(loss * masks_weight).sum() / masks.shape[0]

    @torch.no_grad()
    def update_center(self, teacher_patch_tokens: torch.Tensor) -> None:
        """teacher_patch_tokens: [B', N', K] (the official code passes the masked tokens as [1, M, K])."""
        self._update(teacher_patch_tokens.mean(1).sum(0, keepdim=True), len(teacher_patch_tokens))


class KoLeoLoss(nn.Module):
    """Kozachenko-Leonenko entropy estimator (Sablayrolles et al., 2019): −mean log distance of each
    L2-normalised vector to its nearest neighbour in the batch. Computed in fp32 with the distance floored at
    eps, so duplicate images (distance 0) give a large finite loss, never NaN."""

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(x.float(), p=2, dim=-1, eps=self.eps)
        with torch.no_grad():
            dots = x @ x.t()
            dots.fill_diagonal_(-1)
            nearest = dots.argmax(dim=1)
        distances = F.pairwise_distance(x, x[nearest], p=2, eps=self.eps)
        return -torch.log(distances + self.eps).mean()
