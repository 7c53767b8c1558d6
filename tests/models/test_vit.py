"""The model itself: sizes, outputs, masks, attention paths, tracing."""
import copy
import threading

import pytest
import torch

from dinokit import Dinov2Config, Dinov2Model, preset_config
from tests.conftest import max_diff, perturb_

OFFICIAL_PARAMS = {"s": 22_056_576, "b": 86_580_480, "l": 304_368_640, "g": 1_136_480_768}


def tiny(**kw):
    return Dinov2Config(**{**dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=56), **kw})


@pytest.mark.parametrize("size", ["s", "b", "l"])
def test_parameter_counts_equal_official(size):
    dim = preset_config(size).hidden_size
    assert Dinov2Model(preset_config(size)).num_parameters() == OFFICIAL_PARAMS[size]
    assert Dinov2Model(preset_config(size, registers=True)).num_parameters() == OFFICIAL_PARAMS[size] + 4 * dim


@pytest.mark.slow
def test_parameter_count_giant():
    model = Dinov2Model(preset_config("g", registers=True))
    assert model.num_parameters() == OFFICIAL_PARAMS["g"] + 4 * 1536
    assert model.blocks[0].mlp.w12.weight.shape == (8192, 1536) and model.blocks[0].mlp.w3.weight.shape == (1536, 4096)


def test_outputs_and_tuple_form():
    model = perturb_(Dinov2Model(tiny(num_register_tokens=4)))
    x = torch.randn(2, 3, 42, 70)
    out = model(x, output_hidden_states=True, output_attentions=True)
    assert out.last_hidden_state.shape == (2, 1 + 4 + 3 * 5, 64)
    assert torch.equal(out.pooler_output, out.last_hidden_state[:, 0])
    assert len(out.hidden_states) == 3 and len(out.attentions) == 2
    assert out.attentions[0].shape == (2, 2, 20, 20)
    torch.testing.assert_close(model.norm(out.hidden_states[-1]), out.last_hidden_state)
    as_tuple = model(x, return_dict=False)
    assert len(as_tuple) == 2 and torch.equal(as_tuple[1], model(x).pooler_output)
    assert torch.equal(out["pooler_output"], out[1])


def test_explicit_attention_path_equals_sdpa():
    model = perturb_(Dinov2Model(tiny()))
    x = torch.randn(2, 3, 56, 56)
    fast = model(x).last_hidden_state
    explicit = model(x, output_attentions=True).last_hidden_state
    assert max_diff(fast, explicit) < 1e-5


def test_head_mask_masks_heads():
    model = perturb_(Dinov2Model(tiny()))
    x = torch.randn(1, 3, 56, 56)
    ones = model(x, head_mask=torch.ones(2)).last_hidden_state
    assert max_diff(ones, model(x).last_hidden_state) < 1e-5
    out = model(x, head_mask=torch.tensor([[1.0, 0.0], [1.0, 1.0]]), output_attentions=True)
    assert out.attentions[0][:, 1].abs().max() == 0 and out.attentions[0][:, 0].abs().max() > 0
    assert max_diff(out.last_hidden_state, ones) > 1e-3
    with pytest.raises(ValueError, match="head_mask"):
        model(x, head_mask=torch.ones(3))


def test_mask_token_replaces_masked_patches_before_position_embeddings():
    model = perturb_(Dinov2Model(tiny()))
    x = torch.randn(1, 3, 56, 56)
    masks = torch.zeros(1, 16, dtype=torch.bool)
    masks[0, 5] = True
    tokens = model.prepare_tokens(x, masks)
    pos = model.position_embeddings((56, 56))
    torch.testing.assert_close(tokens[0, 1 + 5], model.mask_token[0] + pos[0, 1 + 5])
    via_forward = model(x, bool_masked_pos=masks).last_hidden_state
    torch.testing.assert_close(via_forward, model.norm(model.forward_features(x, masks)["x_prenorm"]))
    assert max_diff(via_forward, model(x).last_hidden_state) > 1e-4


def test_jit_trace_matches_eager():
    model = perturb_(Dinov2Model(tiny(num_register_tokens=4)))
    x = torch.randn(2, 3, 70, 42)
    traced = torch.jit.trace(model, x)
    eager = model(x)
    traced_out = traced(x)
    assert max_diff(traced_out[0], eager.last_hidden_state) <= 1e-4
    assert max_diff(traced_out[1], eager.pooler_output) <= 1e-4


def test_sides_not_multiple_of_patch_are_floored():
    model = perturb_(Dinov2Model(tiny()))
    x = torch.randn(1, 3, 60, 71)  # 4x5 patches; the right/bottom remainder is dropped
    torch.testing.assert_close(model(x).last_hidden_state, model(x[:, :, :56, :70]).last_hidden_state)
    with pytest.raises(ValueError, match="smaller than one"):
        model(torch.randn(1, 3, 10, 56))


def test_position_embedding_cache_follows_weight_updates():
    model = perturb_(Dinov2Model(tiny()))
    x = torch.randn(1, 3, 42, 42)
    with torch.no_grad():
        first = model(x).pooler_output
        model.pos_embed.mul_(2.0)
        second = model(x).pooler_output
    with torch.enable_grad():
        reference = model(x).pooler_output
    assert max_diff(first, second) > 1e-4
    assert max_diff(second, reference) < 1e-6


def test_large_cpu_batches_split_internally_give_the_same_numbers():
    model = perturb_(Dinov2Model(tiny(image_size=224)))
    model.CPU_TOKENS_PER_CHUNK = 600  # force several chunks on a small batch
    x = torch.randn(9, 3, 224, 224)
    with torch.no_grad():
        assert model._split_batch(model.prepare_tokens(x))[0]
        together = model(x).last_hidden_state
        one_by_one = torch.cat([model(x[i:i + 1]).last_hidden_state for i in range(9)])
    assert max_diff(together, one_by_one) < 1e-5
    with torch.enable_grad():
        assert model._split_batch(model.prepare_tokens(x)) == (0, 1)  # training keeps the plain path


@pytest.mark.parametrize("swiglu", [False, True])
def test_packed_cpu_linear_gives_the_plain_numbers_and_follows_weight_updates(monkeypatch, swiglu):
    from dinokit.models import inference

    if not inference._PACKED_LINEAR:
        pytest.skip("this PyTorch build has no oneDNN linear")
    model = perturb_(Dinov2Model(tiny(use_swiglu_ffn=swiglu)))
    x = torch.randn(3, 3, 56, 56)
    with torch.no_grad():
        model(x)
        assert model.blocks[0].attn.qkv not in inference._PACKED  # no_grad alone keeps the plain path
    with torch.inference_mode():
        packed = model(x).last_hidden_state
        assert model.blocks[0].attn.qkv in inference._PACKED  # the fast path really ran
        monkeypatch.setattr(inference, "_PACKED_LINEAR", False)
        plain = model(x).last_hidden_state
        monkeypatch.setattr(inference, "_PACKED_LINEAR", True)
        assert max_diff(packed, plain) < 1e-5
    with torch.no_grad():
        for block in model.blocks:  # weights loaded in place: the packed copies must be rebuilt
            block.mlp.load_state_dict({k: v * 1.5 for k, v in block.mlp.state_dict().items()})
    copy.deepcopy(model)  # the cache lives beside the model, not in it
    with torch.inference_mode():
        updated = model(x).last_hidden_state
    with torch.enable_grad():
        reference = model(x).last_hidden_state  # gradients on: the plain path
    assert max_diff(updated, packed) > 1e-3
    assert max_diff(updated, reference) < 1e-5


def test_in_place_inference_gives_the_same_numbers_and_spares_hooked_outputs():
    model = perturb_(Dinov2Model(tiny()))
    x = torch.randn(3, 3, 56, 56)
    with torch.no_grad():
        reference = model(x).last_hidden_state  # out-of-place (no inference mode)
    seen = {}

    def keep(name):
        def hook(module, args, output):
            output = output[0] if isinstance(output, tuple) else output
            seen[name] = (output, output.clone())
        return hook

    with torch.inference_mode():
        fast = model(x).last_hidden_state
        handles = [model.blocks[0].attn.register_forward_hook(keep("attn")),
                   model.blocks[1].mlp.fc1.register_forward_hook(keep("fc1"))]
        hooked = model(x).last_hidden_state
    for h in handles:
        h.remove()
    assert torch.equal(fast, hooked)  # the in-place and the plain block compute the same bits
    assert max_diff(fast, reference) < 1e-5
    for name, (held, at_hook_time) in seen.items():  # what a hook holds is never overwritten afterwards
        assert torch.equal(held, at_hook_time), name
    with torch.inference_mode():
        model.blocks[0].mlp.fc1.register_forward_hook(lambda *a: None)
        from dinokit.models.inference import in_place_ok
        assert in_place_ok(model.blocks[1]) and not in_place_ok(model.blocks[0])


@pytest.mark.parametrize("registers", [0, 4])
def test_class_token_alone_equals_the_pooler_output(registers):
    model = perturb_(Dinov2Model(tiny(image_size=224, num_register_tokens=registers)))
    x = torch.randn(3, 3, 224, 224)
    with torch.inference_mode():
        pooled = model(x).pooler_output
        alone = model.forward_class_token(x)
        model.CPU_TOKENS_PER_CHUNK = 300  # and through the chunked batch path
        chunked = model.forward_class_token(x)
    assert alone.shape == pooled.shape == (3, 64)
    assert max_diff(alone, pooled) < 1e-5 and max_diff(chunked, pooled) < 1e-5
    with torch.no_grad():  # outside inference mode too (the plain, out-of-place layers)
        assert max_diff(model.forward_class_token(x), pooled) < 1e-5


def test_cpu_batches_run_in_pieces_side_by_side_with_the_same_numbers(monkeypatch):
    from dinokit.models import inference

    if torch.get_num_threads() < 2:
        pytest.skip("needs two CPU threads")
    model = perturb_(Dinov2Model(tiny(image_size=224)))
    x = torch.randn(5, 3, 224, 224)
    threads = torch.get_num_threads()
    with torch.inference_mode():
        tokens = model.prepare_tokens(x)
        assert model._split_batch(tokens) == (-(-5 // threads), threads)  # one piece per thread
        together = model(x).last_hidden_state
        cls = model.forward_class_token(x)
        workers = {t.name for t in threading.enumerate() if t.name.startswith("dinokit-cpu")}
        assert len(workers) == threads
        assert torch.get_num_threads() == threads  # the workers' own setting does not leak out
        monkeypatch.setattr(inference, "_CPU_STREAMS", False)
        assert model._split_batch(tokens) == (0, 1)
        plain = model(x).last_hidden_state
        monkeypatch.setattr(inference, "_CPU_STREAMS", True)
        hook = model.blocks[0].register_forward_hook(lambda *a: None)
        assert model._split_batch(tokens) == (0, 1)  # a hook sees whole batches, in order, in the caller's thread
        hook.remove()
    with torch.no_grad():
        assert model._split_batch(tokens) == (0, 1)  # side by side only at inference
    assert max_diff(together, plain) < 1e-5 and max_diff(cls, together[:, 0]) < 1e-5


def test_pieces_go_side_by_side_only_while_they_keep_the_threads_busy():
    from dinokit.models.inference import images_per_stream

    assert images_per_stream(8, 2, largest=8) == 4
    assert images_per_stream(32, 2, largest=8) == 8  # two rounds of two pieces of 8
    assert images_per_stream(3, 2, largest=3) == 2  # 2 + 1 images: three quarters busy
    assert images_per_stream(1, 2, largest=1) == 0  # one image cannot be cut by batch
    assert images_per_stream(64, 16, largest=8) == 4  # every thread a piece of 4
    assert images_per_stream(8, 16, largest=8) == 0  # half of 16 threads idle: every op on all 16 instead
    assert images_per_stream(20, 16, largest=8) == 0  # 2 + 2 + 2 + 2 + 1 … : most threads wait for the pairs


def test_a_batch_smaller_than_the_thread_count_keeps_every_thread():
    model = perturb_(Dinov2Model(tiny(image_size=224)))
    x = torch.randn(2, 3, 224, 224)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(8)
        with torch.inference_mode():
            assert model._split_batch(model.prepare_tokens(x)) == (0, 1)  # not 2 pieces on 8 threads
            wide = model(x).last_hidden_state
    finally:
        torch.set_num_threads(threads)
    with torch.inference_mode():
        assert max_diff(wide, model(x).last_hidden_state) < 1e-5


def test_callers_in_several_threads_share_the_pieces_pool():
    from concurrent.futures import ThreadPoolExecutor

    model = perturb_(Dinov2Model(tiny(image_size=224)))
    inputs = [torch.randn(4, 3, 224, 224) for _ in range(4)]

    def forward(x):
        with torch.inference_mode():
            return model(x).last_hidden_state

    alone = [forward(x) for x in inputs]
    with ThreadPoolExecutor(4) as callers:
        together = list(callers.map(forward, inputs))
    assert all(max_diff(a, b) < 1e-5 for a, b in zip(alone, together))
