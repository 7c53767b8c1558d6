"""The documented examples, run verbatim with only the import changed, against the libraries they document:
the transformers DINOv2 docs (usage tip with tracing; the Dinov2Config, Dinov2Model,
Dinov2ForImageClassification and Dinov2Backbone docstrings), the `facebook/dinov2-small-imagenet1k-1-layer`
model card, and mmpretrain's DINOv2 page.

The one edit besides the import: the lines that fetch the cats photo over the network load a local photo
instead. Names resolve offline from caches laid out as `huggingface_hub` and `torch.hub` lay them out,
holding random weights (2 blocks per model, 37×37 position embeddings, so that 224 px interpolates).
Against the installed transformers (5.x: size-based interpolation) the fake repos say
`"interpolate_mode": "hf"` in config.json; against transformers 4.37.2 (the version the Chinese page
documents; the official `+0.1` interpolation) they leave dinokit's default.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

import dinokit
from dinokit.heads.classification import imagenet_labels
from tests.helpers import HANG, SNAPSHOT, max_diff, perturb_

TRANSFORMERS_4 = Path(os.environ.get("DINOKIT_TRANSFORMERS_437", Path(sys.prefix) / "side" / "transformers-4.37.2"))
FETCH = {  # the docs' network lines → a local photo
    "image = Image.open(requests.get(url, stream=True).raw)": "image = Image.open(PHOTO)",
    'dataset = load_dataset("huggingface/cats-image")\nimage = dataset["test"]["image"][0]': "image = Image.open(PHOTO)",
    "from datasets import load_dataset\n": "from PIL import Image\n",
}

EXAMPLES = {
    # docs/source/en/model_doc/dinov2.md (and its ar / zh translations): the usage tip
    "usage_tip": '''
import torch
from transformers import AutoImageProcessor, AutoModel
from PIL import Image
import requests

url = 'http://images.cocodataset.org/val2017/000000039769.jpg'
image = Image.open(requests.get(url, stream=True).raw)

processor = AutoImageProcessor.from_pretrained('facebook/dinov2-base')
model = AutoModel.from_pretrained('facebook/dinov2-base')

inputs = processor(images=image, return_tensors="pt")
outputs = model(**inputs)
last_hidden_states = outputs[0]

# We have to force return_dict=False for tracing
model.config.return_dict = False

with torch.no_grad():
    traced_model = torch.jit.trace(model, [inputs.pixel_values])
    traced_outputs = traced_model(inputs.pixel_values)

print((last_hidden_states - traced_outputs[0]).abs().max())
SAVE = dict(pixel_values=inputs.pixel_values, last_hidden_states=last_hidden_states.detach(),
            traced=traced_outputs[0], pooler=outputs[1].detach())
''',
    # Dinov2Config's docstring
    "config_docstring": '''
from transformers import Dinov2Config, Dinov2Model

# Initializing a Dinov2 dinov2-base style configuration
configuration = Dinov2Config()

# Initializing a model (with random weights) from the dinov2-base style configuration
model = Dinov2Model(configuration)

# Accessing the model configuration
configuration = model.config
SAVE = dict(parameters=sum(p.numel() for p in model.parameters()), hidden=configuration.hidden_size,
            out_features=configuration.out_features, labels=len(configuration.id2label))
''',
    # Dinov2Model.forward's docstring
    "model_docstring": '''
from transformers import AutoImageProcessor, Dinov2Model
import torch
from datasets import load_dataset

dataset = load_dataset("huggingface/cats-image")
image = dataset["test"]["image"][0]

image_processor = AutoImageProcessor.from_pretrained("facebook/dinov2-base")
model = Dinov2Model.from_pretrained("facebook/dinov2-base")

inputs = image_processor(image, return_tensors="pt")

with torch.no_grad():
    outputs = model(**inputs)

last_hidden_states = outputs.last_hidden_state
list(last_hidden_states.shape)
SAVE = dict(shape=list(last_hidden_states.shape), last_hidden_states=last_hidden_states)
''',
    # Dinov2ForImageClassification.forward's docstring
    "classifier_docstring": '''
from transformers import AutoImageProcessor, Dinov2ForImageClassification
import torch
from datasets import load_dataset

dataset = load_dataset("huggingface/cats-image")
image = dataset["test"]["image"][0]

image_processor = AutoImageProcessor.from_pretrained("facebook/dinov2-small-imagenet1k-1-layer")
model = Dinov2ForImageClassification.from_pretrained("facebook/dinov2-small-imagenet1k-1-layer")

inputs = image_processor(image, return_tensors="pt")

with torch.no_grad():
    logits = model(**inputs).logits

# model predicts one of the 1000 ImageNet classes
predicted_label = logits.argmax(-1).item()
print(model.config.id2label[predicted_label])
SAVE = dict(logits=logits, label=model.config.id2label[predicted_label])
''',
    # the facebook/dinov2-small-imagenet1k-1-layer model card
    "model_card": '''
from transformers import AutoImageProcessor, AutoModelForImageClassification
from PIL import Image
import requests

url = 'http://images.cocodataset.org/val2017/000000039769.jpg'
image = Image.open(requests.get(url, stream=True).raw)

processor = AutoImageProcessor.from_pretrained('facebook/dinov2-small-imagenet1k-1-layer')
model = AutoModelForImageClassification.from_pretrained('facebook/dinov2-small-imagenet1k-1-layer')

inputs = processor(images=image, return_tensors="pt")
outputs = model(**inputs)
logits = outputs.logits

predicted_class_idx = logits.argmax(-1).item()
print("Predicted class:", model.config.id2label[predicted_class_idx])
SAVE = dict(logits=logits.detach(), label=model.config.id2label[predicted_class_idx])
''',
    # Dinov2Backbone.forward's docstring
    "backbone_docstring": '''
from transformers import AutoImageProcessor, AutoBackbone
import torch
from PIL import Image
import requests

url = "http://images.cocodataset.org/val2017/000000039769.jpg"
image = Image.open(requests.get(url, stream=True).raw)

processor = AutoImageProcessor.from_pretrained("facebook/dinov2-base")
model = AutoBackbone.from_pretrained(
    "facebook/dinov2-base", out_features=["stage1", "stage2"]
)

inputs = processor(image, return_tensors="pt")

outputs = model(**inputs)
feature_maps = outputs.feature_maps
list(feature_maps[-1].shape)
SAVE = dict(shape=list(feature_maps[-1].shape), maps=[m.detach() for m in feature_maps])
''',
}

# transformers 5 fails its own usage tip once `config.return_dict = False` is set (its encoder then returns a
# tuple that Dinov2Model reads as an output object: AttributeError), so against it the tip runs up to the trace,
# and dinokit's trace is checked against its own eager output and against transformers 4.37.2.
BROKEN_IN_TRANSFORMERS_5 = {"usage_tip": ("# We have to force return_dict=False for tracing",
                                          "SAVE = dict(pixel_values=inputs.pixel_values, "
                                          "last_hidden_states=last_hidden_states.detach(), pooler=outputs[1].detach())")}

# Two changes to the transformers 5 reference run only: its AutoBackbone asks the hub whether the repo exists (a
# network call even with HF_HUB_OFFLINE), so the repos of the fake cache answer yes; and its AutoImageProcessor
# defaults to the torchvision backend, within one grey level of the PIL numerics that transformers 4 and dinokit
# use (measured by the last test), so it is given backend="pil" to compare the models on the same pixels.
TRANSFORMERS_5_PREAMBLE = """
import functools, huggingface_hub, transformers
huggingface_hub.HfApi.repo_exists = lambda self, repo_id, **kw: repo_id.startswith("facebook/dinov2-")
_load = transformers.AutoImageProcessor.from_pretrained
transformers.AutoImageProcessor.from_pretrained = functools.partial(_load, backend="pil")
"""

RUNNER = '''
import sys, torch
sys.path[:0] = {path!r}
{preamble}
import transformers, dinokit
results = {{}}
for name, code in {examples!r}.items():
    scope = {{"PHOTO": {photo!r}}}
    exec(compile(code, name, "exec"), scope)
    results[name] = scope["SAVE"]
torch.save(results, {out!r})
'''


def verbatim(code: str, library: str) -> str:
    for docs, local in FETCH.items():
        code = code.replace(docs, local)
    return code.replace("from transformers import", f"from {library} import")


def fake_hub(root: Path, interpolate_mode: str | None, processor_type: str) -> Path:
    """facebook/dinov2-base and facebook/dinov2-small-imagenet1k-1-layer in the huggingface_hub cache layout."""
    torch.manual_seed(0)
    base = perturb_(dinokit.Dinov2Model(dinokit.Dinov2Config(num_hidden_layers=2, image_size=518,
                                                             interpolate_mode=interpolate_mode)))
    config = dinokit.preset_config("s", num_hidden_layers=2, interpolate_mode=interpolate_mode,
                                   id2label=dict(enumerate(imagenet_labels())))
    small = perturb_(dinokit.Dinov2ForImageClassification(config))
    processor = {**dinokit.Dinov2ImageProcessor().to_dict(), "image_processor_type": processor_type}
    for repo_id, model in (("facebook/dinov2-base", base), ("facebook/dinov2-small-imagenet1k-1-layer", small)):
        repo = root / f"models--{repo_id.replace('/', '--')}"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(SNAPSHOT)
        folder = model.save_pretrained(repo / "snapshots" / SNAPSHOT)
        (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    return root


def run_examples(library: str, hub: Path, out: Path, photo: Path, path: list[str], cut: dict | None = None,
                 preamble: str = "") -> dict:
    examples = {name: verbatim(code, library) for name, code in EXAMPLES.items()}
    for name, (marker, save) in (cut or {}).items():
        examples[name] = examples[name][:examples[name].index(marker)] + save
    script = RUNNER.format(path=path, preamble=preamble, examples=examples, photo=str(photo), out=str(out))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub), "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=HANG)
    assert result.returncode == 0, f"{library} examples failed:\n{result.stderr[-4000:]}"
    return torch.load(out, weights_only=False)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    from PIL import Image
    from sklearn.datasets import load_sample_image

    path = tmp_path_factory.mktemp("photo") / "china.jpg"
    Image.fromarray(load_sample_image("china.jpg")).save(path, quality=95)
    return path


def compare(ours: dict, theirs: dict, report, reference: str) -> None:
    assert ours.keys() == theirs.keys()
    for example in EXAMPLES:
        worst = 0.0
        for key, value in theirs[example].items():
            mine = ours[example][key]
            if isinstance(value, torch.Tensor):
                assert mine.shape == value.shape, (example, key)
                worst = max(worst, max_diff(mine, value))
            elif isinstance(value, list) and value and isinstance(value[0], torch.Tensor):
                worst = max([worst] + [max_diff(a, b) for a, b in zip(mine, value, strict=True)])
            else:
                assert mine == value, (example, key, mine, value)
        report(f"docs example {example} vs {reference}: {worst:.1e}")
        assert worst <= 1e-4, (example, worst)


def test_docs_examples_equal_installed_transformers(tmp_path, photo, report):
    hub = fake_hub(tmp_path / "hub", "hf", "BitImageProcessor")
    cut = BROKEN_IN_TRANSFORMERS_5
    theirs = run_examples("transformers", hub, tmp_path / "theirs.pt", photo, [], cut, TRANSFORMERS_5_PREAMBLE)
    ours = run_examples("dinokit", hub, tmp_path / "ours.pt", photo, [])
    assert max_diff(ours["usage_tip"]["traced"], ours["usage_tip"]["last_hidden_states"]) <= 1e-4
    compare({k: {f: v for f, v in d.items() if f in theirs[k]} for k, d in ours.items()}, theirs, report,
            f"transformers {transformers.__version__} (hf mode)")


@pytest.mark.skipif(not (TRANSFORMERS_4 / "transformers").is_dir(),
                    reason=f"transformers 4.37.2 side install not found at {TRANSFORMERS_4} (tests/install-references)")
def test_docs_examples_equal_transformers_4_37(tmp_path, photo, report):
    hub = fake_hub(tmp_path / "hub", None, "BitImageProcessor")
    theirs = run_examples("transformers", hub, tmp_path / "theirs.pt", photo, [str(TRANSFORMERS_4)])
    ours = run_examples("dinokit", hub, tmp_path / "ours.pt", photo, [])
    # Dinov2Config()'s defaults follow the installed transformers: 4.37.2's default patch_size was 16, not 14
    assert ours["config_docstring"].pop("parameters") - theirs["config_docstring"].pop("parameters") == 768 * 3 * (
        14 * 14 - 16 * 16) + 768 * (257 - 197)
    compare(ours, theirs, report, "transformers 4.37.2 (default, official mode)")


def test_default_transformers_5_processor_is_within_one_grey_level(photo, report):
    """transformers 5's default `BitImageProcessor` resizes with torchvision; dinokit keeps the PIL numerics
    of transformers 4 and of `backend="pil"` (a deliberate difference, in the README)."""
    from PIL import Image

    image = Image.open(photo)
    ours = dinokit.Dinov2ImageProcessor()(image, return_tensors="np")["pixel_values"]
    kw = {k: v for k, v in dinokit.Dinov2ImageProcessor().to_dict().items() if k != "image_processor_type"}
    theirs = transformers.BitImageProcessor(**kw)(image, return_tensors="np")["pixel_values"]
    diff = np.abs(ours - theirs).max()
    report(f"processor vs transformers 5 default (torchvision) backend: {diff:.4f} (one grey level = 0.0175)")
    assert diff <= 0.0176
