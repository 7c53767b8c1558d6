"""The CPU fast path the jobs apply: the plain model's numbers, faster paths that really run, and a model
that stays an ordinary module (state dict, pickles, hooks, training)."""
import copy
import io
import threading

import pytest
import torch

import dinokit
from dinokit import Dinov2Config, Dinov2Model
from dinokit.runtime import fast_path, is_fast, plain
from tests.helpers import max_diff, perturb_


def tiny(**kw):
    return Dinov2Config(**{**dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=56), **kw})


def twins(**kw):
    """(plain model, the same weights on the fast path)."""
    model = perturb_(Dinov2Model(tiny(**kw)))
    return model, fast_path(copy.deepcopy(model))


@pytest.mark.parametrize("kw", [{}, {"use_swiglu_ffn": True}, {"num_register_tokens": 4}, {"hidden_act": "relu"}],
                         ids=["mlp", "swiglu", "registers", "relu"])
def test_the_fast_path_gives_the_plain_numbers(kw):
    model, fast = twins(image_size=224, **kw)
    x = torch.randn(9, 3, 224, 224)
    with torch.inference_mode():
        expected = model(x).last_hidden_state
        fast.CPU_TOKENS_PER_CHUNK = 600  # several pieces even for this small batch
        got, cls = fast(x).last_hidden_state, fast.forward_class_token(x)
        layers = fast.get_intermediate_layers(x, n=2)
        expected_layers = model.get_intermediate_layers(x, n=2)
    assert max_diff(got, expected) < 1e-5 and max_diff(cls, expected[:, 0]) < 1e-5
    assert all(max_diff(a, b) < 1e-5 for a, b in zip(layers, expected_layers))


def test_a_fast_model_is_the_same_module():
    model, fast = twins()
    assert isinstance(fast, Dinov2Model) and type(fast).__name__ == "Dinov2Model" and is_fast(fast)
    assert repr(fast) == repr(model)
    assert fast.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(fast.state_dict().values(), model.state_dict().values()))
    buffer = io.BytesIO()
    torch.save(fast, buffer)
    buffer.seek(0)
    assert not is_fast(torch.load(buffer, weights_only=False)) and not is_fast(copy.deepcopy(fast))
    assert not is_fast(plain(fast)) and type(fast) is Dinov2Model and type(fast.blocks[0].attn.qkv) is torch.nn.Linear
    assert fast_path(fast) is fast and fast_path(fast) is fast  # idempotent


def test_packed_weights_follow_weight_updates():
    model, fast = twins(use_swiglu_ffn=True)
    x = torch.randn(3, 3, 56, 56)
    with torch.inference_mode():
        before = fast(x).last_hidden_state
    with torch.no_grad():
        for blk in fast.blocks:  # weights loaded in place: the packed copies must be rebuilt
            blk.mlp.load_state_dict({k: v * 1.5 for k, v in blk.mlp.state_dict().items()})
        fast.pos_embed.mul_(2.0)  # and the cached position embeddings
        for blk in model.blocks:
            blk.mlp.load_state_dict({k: v * 1.5 for k, v in blk.mlp.state_dict().items()})
        model.pos_embed.mul_(2.0)
    with torch.inference_mode():
        after, expected = fast(x).last_hidden_state, model(x).last_hidden_state
    assert max_diff(after, before) > 1e-3 and max_diff(after, expected) < 1e-5


def test_what_a_hook_holds_is_never_overwritten():
    model, fast = twins()
    x = torch.randn(3, 3, 56, 56)
    seen = {}

    def keep(name):
        def hook(module, args, output):
            output = output[0] if isinstance(output, tuple) else output
            seen[name] = (output, output.clone())
        return hook

    handles = [fast.blocks[0].attn.register_forward_hook(keep("attn")),
               fast.blocks[1].mlp.fc1.register_forward_hook(keep("fc1"))]
    with torch.inference_mode():
        hooked, expected = fast(x).last_hidden_state, model(x).last_hidden_state
    for h in handles:
        h.remove()
    assert max_diff(hooked, expected) < 1e-5
    for name, (held, at_hook_time) in seen.items():
        assert torch.equal(held, at_hook_time), name


def test_training_and_gradients_take_the_plain_path():
    model, fast = twins()
    x = torch.randn(2, 3, 56, 56)
    fast.train(), model.train()
    torch.manual_seed(1)
    fast(x).pooler_output.sum().backward()
    torch.manual_seed(1)
    model(x).pooler_output.sum().backward()
    for (name, a), b in zip(fast.named_parameters(), model.parameters()):
        assert (a.grad is None) == (b.grad is None), name  # the mask token alone takes no gradient here
        assert a.grad is None or max_diff(a.grad, b.grad) < 1e-6, name


def test_pieces_run_side_by_side_on_every_thread_count():
    model, fast = twins(image_size=224)
    x = torch.randn(8, 3, 224, 224)
    threads = torch.get_num_threads()
    with torch.inference_mode():
        expected = model(x).last_hidden_state
    try:
        for n in (1, 2, 3, 4, 8):
            torch.set_num_threads(n)
            with torch.inference_mode():
                got = fast(x).last_hidden_state
            assert max_diff(got, expected) < 1e-5, n
            assert torch.get_num_threads() == n  # the workers' own setting does not leak out
    finally:
        torch.set_num_threads(threads)
    assert any(t.name.startswith("dinokit-cpu") for t in threading.enumerate())  # the pieces really ran in the pool


def test_callers_in_several_threads_share_the_pieces_pool():
    from concurrent.futures import ThreadPoolExecutor

    model, fast = twins(image_size=224)
    inputs = [torch.randn(4, 3, 224, 224) for _ in range(4)]

    def forward(x):
        with torch.inference_mode():
            return fast(x).last_hidden_state

    with torch.inference_mode():
        alone = [model(x).last_hidden_state for x in inputs]
    with ThreadPoolExecutor(4) as callers:
        together = list(callers.map(forward, inputs))
    assert all(max_diff(a, b) < 1e-5 for a, b in zip(alone, together))


def test_the_switches_keep_the_numbers():
    model = perturb_(Dinov2Model(tiny(image_size=224)))
    x = torch.randn(5, 3, 224, 224)
    with torch.inference_mode():
        expected = model(x).last_hidden_state
        for options in ({"packed_linear": False}, {"side_by_side": False}):
            fast = fast_path(copy.deepcopy(model), **options)
            assert max_diff(fast(x).last_hidden_state, expected) < 1e-5


def test_jobs_run_the_fast_path(tiny_model_dir, photos):
    """embed (through accelerate), the evaluation's feature loop, the PCA picture and fine-tuning's
    validation put the model on the fast path."""
    from dinokit import accelerate
    from dinokit.data import official_eval_transform
    from dinokit.eval.features import extract

    model = Dinov2Model.from_pretrained(tiny_model_dir)
    assert not is_fast(model)
    accelerate(model, "eager")
    assert is_fast(model)
    model = Dinov2Model.from_pretrained(tiny_model_dir)
    extract(model, [str(p) for p in photos[:2]], official_eval_transform(56), num_workers=0, progress=False)
    assert is_fast(model)
    from PIL import Image

    from dinokit.features.viz import patch_features
    from dinokit.finetune import evaluate

    model = Dinov2Model.from_pretrained(tiny_model_dir)
    patch_features(model, [Image.open(photos[0]).convert("RGB")], size=56)
    assert is_fast(model)
    classifier = dinokit.Dinov2ForImageClassification(model.config.replace(num_labels=3))
    evaluate(classifier, [], torch.zeros(0, dtype=torch.long), "cpu")  # fine-tuning's validation pass
    assert is_fast(classifier)
