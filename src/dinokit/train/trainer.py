"""`dinokit train`: the DINOv2 recipe on one process or many (`torchrun`, DDP or FSDP).

OUTPUT/checkpoint.pth   everything needed to continue exactly (written atomically every N steps and at the end)
OUTPUT/log.jsonl        one line per step: every loss term, lr, weight decay, momentum, teacher temperature, speed
OUTPUT/model/           the trained backbone (EMA teacher; distillation: EMA of the student) as a dinokit
                        model (Hugging Face layout): `--model OUTPUT/model` in every command
OUTPUT/config.yaml      the resolved configuration
OUTPUT/failures.jsonl   images that could not be read (replaced by the next one)
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from tqdm.auto import tqdm

from ..distributed import ensure_process_group, rank_and_world
from ..errors import TrainingDiverged, UsageError, first_line, flat_settings, refuse_changed_settings
from ..io import atomic_write, read_yaml
from ..models.vit import DinoVisionTransformer
from ..optim import fuse, param_groups, scaled_lr
from .augment import MultiCropAugmentation
from .data import MultiCropImages, StepBatches, _seed, collate
from .losses import all_reduce
from .meta_arch import SSLMetaArch, backbone_config
from .schedules import Schedules


@dataclass
class TrainResult:
    output: str
    steps: int
    last_losses: dict
    seconds: float
    knn: list


def _device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def _autocast(cfg: dict, device: torch.device):
    dtype = cfg["compute_precision"]["dtype"]
    if device.type != "cuda" or dtype == "fp32":
        return torch.autocast("cpu", enabled=False), None  # fp32 on CPU: bf16 matmuls are slow or crash there
    if dtype == "bf16" or (dtype == "auto" and torch.cuda.is_bf16_supported()):
        return torch.autocast("cuda", dtype=torch.bfloat16), None
    return torch.autocast("cuda", dtype=torch.float16), torch.amp.GradScaler("cuda")


def _load_backbone(source) -> DinoVisionTransformer:
    from ..pretrained import Dinov2Model

    return Dinov2Model.from_pretrained(source)


def build(cfg: dict) -> SSLMetaArch:
    """Student (and teacher) from the config, or from `student.pretrained_weights`: then the checkpoint's
    architecture (width, depth, registers, position-embedding size, LayerScale values) with the config's
    stochastic depth, for continued pretraining on a new domain."""
    s = cfg["student"]
    if s.get("pretrained_weights"):
        loaded = _load_backbone(s["pretrained_weights"])
        student = DinoVisionTransformer(loaded.config.replace(drop_path_rate=s["drop_path_rate"]))
        student.load_state_dict(loaded.state_dict())
    else:
        student = DinoVisionTransformer(backbone_config(cfg))
    teacher = None
    if cfg["distillation"]["enabled"]:
        if not cfg["distillation"]["teacher"]:
            raise ValueError("distillation.enabled needs distillation.teacher (a dinokit model name or path)")
        teacher = _load_backbone(cfg["distillation"]["teacher"])
    return SSLMetaArch(cfg, student, teacher)


def _wrap(arch: SSLMetaArch, cfg: dict, world: int, device):
    if world == 1:
        return arch
    strategy = cfg["distributed"]["strategy"]
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(arch, device_ids=[device.index] if device.type == "cuda" else None,
                                       broadcast_buffers=False)
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for which in (arch.student, arch.teacher):  # each block, then each backbone and head (student and teacher)
            for block in which["backbone"].blocks:
                fully_shard(block)
            for module in which.values():
                fully_shard(module)
        return arch
    raise ValueError(f"distributed.strategy must be ddp or fsdp, not {strategy!r}")


def _reduced(values: dict[str, torch.Tensor], world: int) -> dict[str, float]:
    """Every loss term averaged over the processes, as numbers."""
    keys = sorted(values)
    stacked = all_reduce(torch.stack([values[k].detach().float().reshape(()) for k in keys]).cpu()) / world
    return dict(zip(keys, stacked.tolist()))


def _full_state(module: torch.nn.Module) -> dict:
    """A plain state dict (FSDP's sharded tensors gathered)."""
    from torch.distributed.tensor import DTensor

    return {k: (v.full_tensor() if isinstance(v, DTensor) else v).detach().cpu() for k, v in module.state_dict().items()}


def save_checkpoint(path: Path, arch, optimizer, step: int, cfg: dict, sharded: bool) -> None:
    """Rank 0 writes; with FSDP every process takes part in gathering the shards."""
    if rank_and_world()[0] != 0 and not sharded:
        return
    state = {"model": _full_state(arch), "step": step, "config": cfg, "optimizer": _optimizer_state(arch, optimizer)}
    if rank_and_world()[0] == 0:
        with atomic_write(path) as tmp:
            torch.save(state, tmp)


def _optimizer_state(arch, optimizer) -> dict:
    """The optimizer's whole state keyed by parameter name (FSDP's shards gathered, every process taking part):
    one layout for one process, DDP and FSDP, and an FSDP run resumes with its Adam moments (tested)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(arch, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def _load_optimizer_state(arch, optimizer, saved: dict) -> None:
    """Each process passes the whole saved state; FSDP keeps its own shard of it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    if all(isinstance(k, int) for k in saved["state"]):  # checkpoints from before the names: one process or DDP
        optimizer.load_state_dict(saved)
    else:
        set_optimizer_state_dict(arch, optimizer, saved, options=StateDictOptions(full_state_dict=True))


def save_backbone(arch: SSLMetaArch, folder: Path, sharded: bool) -> Path:
    """The trained backbone as a dinokit model folder (config.json + model.safetensors), written by rank 0."""
    from ..pretrained import Dinov2Model

    if rank_and_world()[0] != 0 and not sharded:
        return folder
    backbone = arch.final_backbone()
    model = Dinov2Model(backbone.config.replace(drop_path_rate=0.0))
    model.load_state_dict(_full_state(backbone))
    if rank_and_world()[0] == 0:
        model.save_pretrained(folder)
    return folder


def knn_check(backbone: DinoVisionTransformer, cfg: dict, device) -> list[dict]:
    from ..eval.features import folder_features
    from ..eval.knn import knn_eval

    e = cfg["evaluation"]
    size = cfg["crops"]["global_crops_size"]
    was_training = backbone.training
    backbone.eval()
    kw = dict(image_size=size, num_workers=0, device=device, progress=False)
    tr = folder_features(backbone, "training", e["knn_train"], **kw)
    va = folder_features(backbone, "training", e["knn_val"], **kw)
    backbone.train(was_training)
    return knn_eval(tr.final_cls(), tr.labels, va.final_cls(), va.labels, len(tr.classes), ks=(e["knn_k"],))


# What a resumed run may change: where and how fast it runs, how long (max_steps) and how it is watched;
# everything else (schedules included: optim.epochs) changes the numbers and is refused.
RESUMABLE_CHANGES = ("train.output_dir", "train.num_workers", "train.max_steps", "train.checkpoint_every",
                     "evaluation.knn_every", "evaluation.knn_train", "evaluation.knn_val", "evaluation.knn_k")


def _checkpoint_step(path: Path) -> int | str:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)["step"]
    except Exception:  # an unreadable checkpoint is still a run not to overwrite
        return "unknown"


def train(cfg: dict, output=None, *, resume: bool = False, progress: bool = True) -> TrainResult:
    rank, world = rank_and_world()
    if world > 1:
        ensure_process_group()
    device = _device()
    out = Path(output or cfg["train"]["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    t, c = cfg["train"], cfg["crops"]
    if not t["dataset_path"]:
        raise ValueError("train.dataset_path is empty: give an image folder or a text file of image paths")
    aug = MultiCropAugmentation(c["global_crops_scale"], c["local_crops_scale"], c["local_crops_number"],
                                c["global_crops_size"], c["local_crops_size"], c["official_blur"])
    dataset = MultiCropImages(os.path.expanduser(t["dataset_path"]), aug, cfg["student"]["patch_size"], c["global_crops_size"],
                              cfg["ibot"]["mask_sample_probability"], cfg["ibot"]["mask_ratio_min_max"], t["seed"],
                              failures=out / "failures.jsonl" if rank == 0 else None)
    per_process = t["batch_size_per_gpu"]
    global_batch = per_process * world
    epoch_length = t["epoch_length"] or max(1, len(dataset) // global_batch)
    if not cfg["optim"]["lr"]:
        cfg["optim"]["lr"] = scaled_lr(cfg["optim"]["base_lr"], global_batch, cfg["optim"]["scaling_rule"])
    sched = Schedules.from_config(cfg, epoch_length)
    total = len(sched.lr)
    stop = min(total, t["max_steps"]) if t["max_steps"] else total

    torch.manual_seed(t["seed"])
    arch = build(cfg).to(device)
    start, state = 0, None
    ckpt_path = out / "checkpoint.pth"
    if not resume and ckpt_path.is_file():  # never start over silently on top of a run
        raise UsageError(f"{out} holds a run (checkpoint at step {_checkpoint_step(ckpt_path)}); --resume continues "
                         "it, or choose another output (or remove it) to start over")
    if resume and ckpt_path.is_file():
        if (out / "config.yaml").is_file():  # a resumed run continues the same run, or it is refused
            refuse_changed_settings(out, flat_settings(read_yaml(out / "config.yaml") or {}), flat_settings(cfg),
                                    allowed=RESUMABLE_CHANGES)
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        try:
            arch.load_state_dict(state["model"])
        except RuntimeError as e:
            raise UsageError(f"{ckpt_path} holds another architecture than this config builds "
                             f"({first_line(e)}); choose another output") from None
        start = state["step"]
        if start >= stop:
            raise UsageError(f"{out} has already finished: its checkpoint is at step {start} of {stop}; raise "
                             f"train.max_steps (or optim.epochs in a new output) to train further")
    model = _wrap(arch, cfg, world, device)  # before the optimizer: FSDP replaces the parameters
    sharded = world > 1 and cfg["distributed"]["strategy"] == "fsdp"
    groups = fuse(param_groups(arch.student["backbone"], cfg["optim"]["layerwise_decay"],
                               cfg["optim"]["patch_embed_lr_mult"])
                  + [g for name, head in arch.student.items() if name != "backbone" for g in param_groups(head)])
    optimizer = torch.optim.AdamW(groups, betas=(cfg["optim"]["adamw_beta1"], cfg["optim"]["adamw_beta2"]))
    if state is not None and state["optimizer"] is not None:  # None: an FSDP checkpoint from before the names
        _load_optimizer_state(arch, optimizer, state["optimizer"])
    if rank == 0:
        (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        log_path = out / "log.jsonl"
        kept = [line for line in (log_path.read_text().splitlines() if log_path.is_file() else [])
                if json.loads(line)["step"] < start]
        log_path.write_text("".join(line + "\n" for line in kept))
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=StepBatches(start, stop, steps_per_epoch=epoch_length, dataset_size=len(dataset),
                                           global_batch=global_batch, rank=rank, per_process=per_process, seed=t["seed"]),
        collate_fn=collate, num_workers=t["num_workers"], persistent_workers=False)
    autocast, scaler = _autocast(cfg, device)
    student_params = [p for p in arch.student.parameters() if p.requires_grad]
    began, losses, knn = time.perf_counter(), {}, []
    bar = tqdm(total=stop - start, desc="train", disable=not progress or rank != 0)
    for step, batch in zip(range(start, stop), loader):
        tick = time.perf_counter()
        torch.manual_seed(_seed(t["seed"], step, rank, 3))  # drop path: the same draws after a resume
        for g in optimizer.param_groups:
            base = sched.last_layer_lr[step] if g["is_last_layer"] else sched.lr[step]
            g["lr"] = float(base * g["lr_multiplier"])
            g["weight_decay"] = float(sched.weight_decay[step] * g["wd_multiplier"])
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast:
            terms = model(batch, float(sched.teacher_temp[step]))
        losses = _reduced(terms, world)
        if not all(math.isfinite(v) for v in losses.values()):
            raise TrainingDiverged(f"the loss became {losses} at step {step}; the last checkpoint ({ckpt_path}) is "
                                   "intact: lower optim.base_lr or raise teacher.warmup_teacher_temp_epochs")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(terms["loss"]).backward()
            scaler.unscale_(optimizer)
        else:
            terms["loss"].backward()
        if cfg["optim"]["clip_grad"]:
            torch.nn.utils.clip_grad_norm_(student_params, cfg["optim"]["clip_grad"])
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        arch.update_teacher(float(sched.momentum[step]))
        seconds = time.perf_counter() - tick
        record = {"step": step, "epoch": step // epoch_length, **{k: round(v, 6) for k, v in losses.items()},
                  "lr": float(sched.lr[step]), "weight_decay": float(sched.weight_decay[step]),
                  "momentum": float(sched.momentum[step]), "teacher_temp": float(sched.teacher_temp[step]),
                  "step_seconds": round(seconds, 4), "images_per_second": round(global_batch / seconds, 2)}
        e = cfg["evaluation"]
        if e["knn_every"] and ((step + 1) % e["knn_every"] == 0 or step + 1 == stop):
            rows = knn_check(arch.final_backbone(), cfg, device)
            record["knn_top1"] = rows[0]["top1"]
            knn.append({"step": step + 1, "top1": rows[0]["top1"]})
        if rank == 0:
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
        bar.set_postfix(loss=f"{losses['loss']:.4f}", img_s=f"{record['images_per_second']:.1f}")
        bar.update()
        if (step + 1) % t["checkpoint_every"] == 0 or step + 1 == stop:
            save_checkpoint(ckpt_path, arch, optimizer, step + 1, cfg, sharded)
    bar.close()
    save_backbone(arch, out / "model", sharded)
    return TrainResult(str(out), stop, losses, round(time.perf_counter() - began, 1), knn)
