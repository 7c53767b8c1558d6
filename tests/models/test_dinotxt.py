"""dino.txt: the official files' layout (every key and shape, recorded from the official modules), loading
from files and from the torch hub cache by name, parity with the official code when it is importable,
and the tokenizer against CLIP's own (open_clip's copy)."""
import json
import os
import random
import shutil
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dinokit.models.dinotxt import DinoTxt, DinoTxtConfig
from dinokit.pretrained import DinoTxtModel, is_dinotxt
from dinokit.weights.dinotxt import dinokit_to_official, text_encoder_to_dinokit, vision_head_to_dinokit
from dinokit.weights.download import WeightsNotAvailableError
from dinokit.weights.names import dinotxt_urls
from tests.helpers import clip_vocab, save_dinotxt_folder

LAYOUT = json.loads((Path(__file__).parent / "data" / "dinotxt_official_layout.json").read_text())


def test_the_released_files_layout_key_for_key_and_shape_for_shape():
    """The official modules' state_dict() of the released model (recorded from facebookresearch/dinov2,
    see the file's `source`) is exactly what dinokit writes and reads."""
    with torch.device("meta"):
        model = DinoTxt()
    head, text = dinokit_to_official(model.state_dict())
    assert {k: list(v.shape) for k, v in head.items()} == LAYOUT["vision_head"]
    assert {k: list(v.shape) for k, v in text.items()} == LAYOUT["text_encoder"]
    back = {**vision_head_to_dinokit(head), **text_encoder_to_dinokit(text)}
    assert set(back) == {k for k in model.state_dict() if not k.startswith("backbone.") and k != "logit_scale"}
    assert model.config.embed_dim == 2048 and model.config.backbone.num_register_tokens == 4
    assert abs(model.config.logit_scale - 2.659260036932778) < 1e-12  # log(1 / 0.07)


def test_files_load_into_the_model_that_wrote_them(tmp_path):
    folder, reference = save_dinotxt_folder(tmp_path / "dinotxt")
    model = DinoTxtModel.from_pretrained(folder)
    assert is_dinotxt(folder) and is_dinotxt("dinotxt") and not is_dinotxt(tmp_path)
    pixels = torch.randn(2, 3, 224, 308)
    ids = model.tokenize(["a photo of a cat", "", "a red bicycle " * 30])
    with torch.no_grad():
        assert torch.equal(model.encode_image(pixels), reference.encode_image(pixels))
        assert torch.equal(model.encode_text(ids), reference.encode_text(ids))
        cls, patches = model.get_visual_class_and_patch_tokens(pixels)
    assert cls.shape == (2, 384) and patches.shape == (2, 16 * 22, 384)
    image = model.encode_image(pixels, normalize=True)
    assert torch.allclose(image.norm(dim=-1), torch.ones(2)) and image.shape == (2, 768)


def test_published_names_load_from_the_torch_hub_cache_and_say_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotAvailableError) as missing:
        DinoTxtModel.from_pretrained("dinotxt")
    for url in dinotxt_urls().values():
        assert url in str(missing.value)
    folder, reference = save_dinotxt_folder(tmp_path / "files")
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    sources = {"backbone": "dinov2_vits14_reg4_pretrain.pth", "vision_head": "*_vision_head.pth",
               "text_encoder": "*_text_encoder.pth", "vocab": "bpe_simple_vocab_16e6.txt.gz"}
    for kind, url in dinotxt_urls().items():  # each file where torch.hub keeps its URL's download
        shutil.copy(next(folder.glob(sources[kind])), cache / url.rsplit("/", 1)[-1])
    shutil.copy(folder / "dinotxt_config.json", cache)  # the small test model's head count
    for name in ("dinotxt", "dinov2_vitl14_reg4_dinotxt_tet1280d20h24l"):
        model = DinoTxtModel.from_pretrained(name)
        ids = model.tokenize(["a cat"])
        with torch.no_grad():
            assert torch.equal(model.encode_text(ids), reference.encode_text(ids))


def test_causal_attention_paths_agree():
    from dinokit.models.layers import Attention

    attn = Attention(64, 4, qkv_bias=False, causal=True).eval()
    x = torch.randn(2, 9, 64)
    fast, _ = attn(x)
    explicit, weights = attn(x, need_weights=True)
    assert torch.allclose(fast, explicit, atol=1e-6)
    assert torch.all(weights.triu(1) == 0)  # no token reads a later one
    changed = x.clone()
    changed[:, 5:] += 1.0
    assert torch.allclose(attn(changed)[0][:, :5], fast[:, :5], atol=1e-6)


def _official_modules():
    """The official dino.txt modules, when a checkout of facebookresearch/dinov2 at HEAD is named by
    DINOKIT_DINOV2_HEAD (the released 2023 package predates dino.txt)."""
    root = os.environ.get("DINOKIT_DINOV2_HEAD")
    if not root:
        pytest.skip("set DINOKIT_DINOV2_HEAD to a facebookresearch/dinov2 checkout to compare with the official dino.txt code")
    os.environ.setdefault("XFORMERS_DISABLED", "1")
    sys.path.insert(0, root)
    try:
        from dinov2.hub.text import dinotxt_model, dinov2_wrapper, text_transformer, tokenizer
        from dinov2.models.vision_transformer import vit_small
    finally:
        sys.path.remove(root)
    return dinotxt_model, dinov2_wrapper, text_transformer, tokenizer, vit_small


def test_parity_with_the_official_modules(report):
    dinotxt_model, dinov2_wrapper, text_transformer, _, vit_small = _official_modules()
    from dinokit.models.config import preset_config

    torch.manual_seed(0)
    backbone = vit_small(patch_size=14, img_size=518, init_values=1.0, block_chunks=0, num_register_tokens=4,
                         interpolate_antialias=True, interpolate_offset=0.0)
    config = dinotxt_model.DinoTxtConfig(embed_dim=768, vision_model_use_patch_tokens=True, vision_model_num_head_blocks=2,
                                         text_model_tokens_pooler_type="argmax", text_model_use_linear_projection=True)
    text = text_transformer.TextTransformer(context_length=77, vocab_size=49408, dim=128, num_heads=4, num_layers=2,
                                            ffn_ratio=4, is_causal=True)
    official = dinotxt_model.DinoTxt(config, dinov2_wrapper.DINOv2Wrapper(backbone), text)
    official.init_weights()
    with torch.no_grad():
        for p in official.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    official.eval()
    ours = DinoTxt(DinoTxtConfig(embed_dim=768, text_width=128, text_heads=4, text_layers=2,
                                 backbone=preset_config("s", registers=True))).eval()
    ours.load_state_dict({**{f"backbone.{k}": v for k, v in backbone.state_dict().items()},
                          **vision_head_to_dinokit(official.visual_model.head.state_dict()),
                          **text_encoder_to_dinokit(official.text_model.state_dict()),
                          "logit_scale": official.logit_scale.detach()})
    pixels = torch.randn(2, 3, 224, 224)
    ids = torch.zeros(3, 77, dtype=torch.long)
    ids[0, :5] = torch.tensor([49406, 320, 1929, 539, 49407])
    ids[1, :3] = torch.tensor([49406, 1125, 49407])
    ids[2] = torch.randint(1, 49000, (77,))
    ids[2, 0], ids[2, 76] = 49406, 49407
    with torch.no_grad():
        image = (official.encode_image(pixels) - ours.encode_image(pixels)).abs().max().item()
        text_diff = (official.encode_text(ids) - ours.encode_text(ids)).abs().max().item()
        patches = (official.get_visual_class_and_patch_tokens(pixels)[1]
                   - ours.get_visual_class_and_patch_tokens(pixels)[1]).abs().max().item()
    report(f"dino.txt vs official (fp32): encode_image {image:.1e}, encode_text {text_diff:.1e}, patch tokens {patches:.1e}")
    assert max(image, text_diff, patches) <= 1e-4


def _strings(count=300):
    rng = random.Random(0)
    chars = "abcXYZ éü日本🐱&;#<>|'\"-_.,!?0123456789 \t\n"
    fixed = ["a photo of a cat", "", "   ", "A RED Bicycle!!", "naïve café — déjà vu", "日本語のテキスト", "emoji 🐱🚲 ok",
             "&amp;lt;b&amp;gt; bold &quot;x&quot;", "it's they're we've I'm you'll he'd", "x" * 500, " ".join(["word"] * 100),
             "tab\tnew\nline", "ÃƒÂ© mojibake", "12345 3.14 1e-5", "Σίσυφος ΟΔΥΣΣΕΥΣ", "İstanbul", "ﬁnal ligature",
             "\u200b zero width", "a\x1cb\x1dc", "<b>html</b> &#x27;quoted&#x27; &nbsp;space"]
    return fixed + ["".join(rng.choice(chars) for _ in range(rng.randint(0, 120))) for _ in range(count)]


def test_tokenizer_ids_equal_clips_own():
    """open_clip's SimpleTokenizer is CLIP's tokenizer, the code dino.txt's official tokenizer is built on."""
    import open_clip

    from dinokit.data.tokenizer import ClipTokenizer

    ours, clip = ClipTokenizer(clip_vocab()), open_clip.tokenize
    strings = _strings()
    for text in strings:
        assert torch.equal(ours.tokenize(text), clip([text])), text
    assert torch.equal(ours.tokenize(strings), clip(strings))
    long = ours.tokenize("word " * 200)[0]
    assert long[0] == ours.start_id and long[-1] == ours.end_id and long.ne(0).all()
    assert ours.tokenize("")[0, :3].tolist() == [ours.start_id, ours.end_id, 0]


def test_tokenizer_equals_the_official_one_including_literal_special_tokens():
    """The official tokenizer turns a literal <|endoftext|> in a text into the special id (open_clip 3 does not)."""
    *_, tokenizer, _ = _official_modules()
    from dinokit.data.tokenizer import ClipTokenizer

    official, ours = tokenizer.Tokenizer(str(clip_vocab())), ClipTokenizer(clip_vocab())
    for text in [*_strings(), "<|endoftext|> inside <|startoftext|>", "a<|endoftext|>b"]:
        assert torch.equal(ours.tokenize(text), official.tokenize(text)), text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_autocast_on_gpu_agrees_with_fp32(tmp_path):
    """The notebook runs dino.txt under torch.autocast on CUDA; embeddings stay close to fp32's."""
    folder, _ = save_dinotxt_folder(tmp_path / "dinotxt")
    model = DinoTxtModel.from_pretrained(folder, device="cuda")
    pixels, ids = torch.randn(2, 3, 224, 224, device="cuda"), model.tokenize(["a cat", "a dog on a sofa"]).cuda()
    with torch.no_grad():
        image32, text32 = model.encode_image(pixels, True), model.encode_text(ids, True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            image16, text16 = model.encode_image(pixels, True), model.encode_text(ids, True)
    assert F.cosine_similarity(image16.float(), image32).min() > 0.99
    assert F.cosine_similarity(text16.float(), text32).min() > 0.99
