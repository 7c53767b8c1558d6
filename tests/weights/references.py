"""Reference models built by the reference libraries themselves, with random weights."""
import transformers

from tests.helpers import perturb_

# (dim, depth, heads, swiglu): S and B at full size; L and g at full width with 2 blocks.
ARCHS = {
    "s": (384, 12, 6, False),
    "b": (768, 12, 12, False),
    "l2": (1024, 2, 16, False),
    "g2": (1536, 2, 24, True),
}
FULL_ARCHS = {"l": (1024, 24, 16, False), "g": (1536, 40, 24, True)}
SIZES = [(224, 224), (518, 518), (308, 448)]


def arch(name):
    return {**ARCHS, **FULL_ARCHS}[name]


def official_model(name):
    from dinov2.models.vision_transformer import DinoVisionTransformer

    dim, depth, heads, swiglu = arch(name)
    model = DinoVisionTransformer(
        img_size=518, patch_size=14, embed_dim=dim, depth=depth, num_heads=heads, mlp_ratio=4,
        init_values=1.0, block_chunks=0, ffn_layer="swiglufused" if swiglu else "mlp",
    )
    return perturb_(model)


def hf_model(name, registers):
    dim, depth, heads, swiglu = arch(name)
    kw = dict(hidden_size=dim, num_hidden_layers=depth, num_attention_heads=heads, use_swiglu_ffn=swiglu,
              image_size=518, patch_size=14, attn_implementation="eager")
    if registers:
        cfg = transformers.Dinov2WithRegistersConfig(num_register_tokens=4, **{k: v for k, v in kw.items() if k != "attn_implementation"})
        model = transformers.Dinov2WithRegistersModel._from_config(cfg, attn_implementation="eager")
    else:
        cfg = transformers.Dinov2Config(**{k: v for k, v in kw.items() if k != "attn_implementation"})
        model = transformers.Dinov2Model._from_config(cfg, attn_implementation="eager")
    return perturb_(model)


def timm_model(name, registers):
    import timm

    dim, depth, heads, swiglu = arch(name)
    word = {1536: "giant", 1024: "large", 768: "base", 384: "small"}[dim]
    variant = f"vit_{word}_patch14{'_reg4' if registers else ''}_dinov2"
    model = timm.create_model(variant, pretrained=False, dynamic_img_size=True, depth=depth, num_classes=0)
    return perturb_(model)
