"""Student, teacher and the losses of one DINOv2 step (the official `SSLMetaArch.forward_backward`,
without xFormers: global and local crops run as one batch per crop size)."""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..models.config import Dinov2Config
from ..models.vit import DinoVisionTransformer
from .heads import DINOHead
from .losses import DINOLoss, KoLeoLoss, all_reduce, iBOTPatchLoss, sinkhorn_knopp


def heads_for(cfg: dict, width: int) -> nn.ModuleDict:
    d, i = cfg["dino"], cfg["ibot"]
    heads = nn.ModuleDict({"dino_head": DINOHead(width, d["head_n_prototypes"], d["head_nlayers"],
                                                 d["head_hidden_dim"], d["head_bottleneck_dim"])})
    if i["separate_head"]:
        heads["ibot_head"] = DINOHead(width, i["head_n_prototypes"], i["head_nlayers"], i["head_hidden_dim"],
                                      i["head_bottleneck_dim"])
    return heads


def tokens(backbone: DinoVisionTransformer, x: torch.Tensor, masks: torch.Tensor | None = None):
    """(CLS [B, D], patch tokens [B, N, D]) after the final norm (through forward: FSDP gathers there)."""
    t = backbone(x, bool_masked_pos=masks).last_hidden_state
    return t[:, 0], t[:, backbone.num_prefix_tokens:]


class SSLMetaArch(nn.Module):
    """student: backbone + heads (trained); teacher: an EMA copy of them, or, for distillation, a frozen
    larger model (its heads frozen at their initialisation) and a spare EMA of the student backbone, which
    is the final model (as the paper distils)."""

    def __init__(self, cfg: dict, student_backbone: DinoVisionTransformer,
                 teacher_backbone: DinoVisionTransformer | None = None):
        super().__init__()
        self.cfg = cfg
        self.student = nn.ModuleDict({"backbone": student_backbone, **heads_for(cfg, student_backbone.config.hidden_size)})
        self.distilling = teacher_backbone is not None
        if self.distilling:
            self.teacher = nn.ModuleDict({"backbone": teacher_backbone,
                                          **heads_for(cfg, teacher_backbone.config.hidden_size)})
            self.student_ema = copy.deepcopy(student_backbone).requires_grad_(False)
        else:
            self.teacher = copy.deepcopy(self.student)
        self.teacher.requires_grad_(False)
        self.dino_loss = DINOLoss(cfg["dino"]["head_n_prototypes"])
        self.ibot_loss = iBOTPatchLoss(cfg["ibot"]["head_n_prototypes"])
        self.koleo_loss = KoLeoLoss()

    def ibot_head(self, which: nn.ModuleDict) -> nn.Module:
        return which["ibot_head"] if "ibot_head" in which else which["dino_head"]

    @torch.no_grad()
    def teacher_targets(self, global_crops, masks, temperature):
        cls, patches = tokens(self.teacher["backbone"], global_crops)
        B = len(cls) // 2
        cls = torch.cat((cls[B:], cls[:B]))  # crop A's student is matched to crop B's teacher
        cls_out = self.teacher["dino_head"](cls)
        masked_out = self.ibot_head(self.teacher)(patches[masks])
        if self.cfg["train"]["centering"] == "sinkhorn_knopp":
            dino_t = sinkhorn_knopp(cls_out, temperature)
            ibot_t = sinkhorn_knopp(masked_out, temperature, total_samples=all_reduce(torch.tensor(float(masks.sum()))))
        else:
            dino_t = self.dino_loss.centered_softmax(cls_out, temperature)
            ibot_t = self.ibot_loss.centered_softmax(masked_out.unsqueeze(0), temperature).squeeze(0)
            self.dino_loss.update_center(cls_out)
            self.ibot_loss.update_center(masked_out.unsqueeze(0))
        return dino_t.view(2, B, -1), ibot_t

    def forward(self, batch: dict, teacher_temp: float) -> dict[str, torch.Tensor]:
        """The loss terms and their weighted sum ("loss"), for backward."""
        cfg = self.cfg
        g, local, masks = batch["global_crops"], batch["local_crops"], batch["masks"]
        n_local = cfg["crops"]["local_crops_number"]
        dino_t, ibot_t = self.teacher_targets(g, masks, teacher_temp)
        s_cls, s_patches = tokens(self.student["backbone"], g, masks)
        terms = max(n_local * 2, 1) + 2  # (student crop, teacher crop) pairs: local×global + global×other global
        out = {}
        total = 0
        if n_local > 0:
            l_cls, _ = tokens(self.student["backbone"], local)
            out["dino_local_crops_loss"] = self.dino_loss(list(self.student["dino_head"](l_cls).chunk(n_local)),
                                                          list(dino_t)) / terms
            total = total + cfg["dino"]["loss_weight"] * out["dino_local_crops_loss"]
        out["dino_global_crops_loss"] = self.dino_loss([self.student["dino_head"](s_cls)], [dino_t.flatten(0, 1)]) * 2 / terms
        total = total + cfg["dino"]["loss_weight"] * out["dino_global_crops_loss"]
        if cfg["dino"]["koleo_loss_weight"] > 0:
            groups = cfg["dino"].get("koleo_groups", 1)
            koleo = sum(torch.stack([self.koleo_loss(part) for part in crop.chunk(groups)]).mean()
                        for crop in s_cls.chunk(2))
            out["koleo_loss"] = cfg["dino"]["koleo_loss_weight"] * koleo
            total = total + out["koleo_loss"]
        masked_out = self.ibot_head(self.student)(s_patches[masks])
        out["ibot_loss"] = self.ibot_loss(masked_out, ibot_t, masks)  # × loss_scales 2 × 1 / 2 global crops
        total = total + cfg["ibot"]["loss_weight"] * out["ibot_loss"]
        out["loss"] = total
        return out

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """EMA of the student: into the teacher, or (distillation) into the spare student copy."""
        from torch.distributed.tensor import DTensor

        source, target = (self.student["backbone"], self.student_ema) if self.distilling else (self.student, self.teacher)
        for module in (*source.modules(), *target.modules()):
            if hasattr(module, "reshard") and hasattr(module, "unshard"):  # FSDP: back to this process's shards
                module.reshard()
        src = dict(source.named_parameters())
        local = [(t.to_local() if isinstance(t, DTensor) else t, src[n].to_local() if isinstance(src[n], DTensor) else src[n])
                 for n, t in target.named_parameters()]  # by name (FSDP reorders); each process its own shards
        ema = [t for t, _ in local]
        torch._foreach_mul_(ema, momentum)
        torch._foreach_add_(ema, [s for _, s in local], alpha=1 - momentum)

    def final_backbone(self) -> DinoVisionTransformer:
        """What training produces: the EMA teacher, or the EMA of the distilled student."""
        return self.student_ema if self.distilling else self.teacher["backbone"]


def backbone_config(cfg: dict) -> Dinov2Config:
    from .config import student_dims

    s = cfg["student"]
    dim, depth, heads = student_dims(s)
    return Dinov2Config(hidden_size=dim, num_hidden_layers=depth, num_attention_heads=heads,
                        patch_size=s["patch_size"], image_size=cfg["crops"]["global_crops_size"],
                        layerscale_value=s["layerscale"], drop_path_rate=s["drop_path_rate"],
                        use_swiglu_ffn=s["ffn_layer"].startswith("swiglu"),
                        num_register_tokens=s.get("num_register_tokens", 0))
