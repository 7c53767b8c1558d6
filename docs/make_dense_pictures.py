"""The README's dense pictures, made from the test photos (scikit-image's samples): `python docs/make_dense_pictures.py`.

No real DINOv2 weights can be downloaded where dinokit is built, so the pictures use the test models: a
random-weight ViT (depth, matches) and a segmentation head trained by the tests' recipe on generated shapes.
With `--model dinov2_vits14` / `--depth-model dinov2_vits14_nyu_dpt` the same script shows real features."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dinokit.dense import load_depth_model, train_segmentation, write_match  # noqa: E402
from dinokit.dense.pictures import colour_depth, mask_picture  # noqa: E402
from dinokit.dense.predict import depth, segment  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", help="a folder with coffee.png and chelsea.png (default: scikit-image's samples)")
    parser.add_argument("--model", help="backbone for matches and segmentation (default: the tests' random model)")
    parser.add_argument("--depth-model", help="depth model (default: a random-weight DPT in transformers' layout)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "images"))
    parser.add_argument("--work", default="/tmp/dinokit-pictures")
    args = parser.parse_args()
    from tests.dense.test_depth import hf_dpt
    from tests.dense.test_segmentation import shapes_on_textures
    from tests.helpers import sample_photos, save_tiny_model

    work, out = Path(args.work), Path(args.out)
    photos = Path(args.photos) if args.photos else sample_photos()[0].parent
    out.mkdir(parents=True, exist_ok=True)
    model = args.model or save_tiny_model(work / "smooth-model", noise=0.1)
    if args.depth_model is None:
        hf_dpt().save_pretrained(work / "dpt")
    depth_model = load_depth_model(args.depth_model or work / "dpt")
    photo = Image.open(photos / "coffee.png").convert("RGB")
    d = depth([photo], depth_model, short_side=224)[0]
    side = Image.new("RGB", (photo.width * 2, photo.height), "white")
    side.paste(photo, (0, 0))
    side.paste(colour_depth(d), (photo.width, 0))
    side.save(out / "depth.png")
    data = shapes_on_textures(work / "shapes", 30, seed=0)
    train_segmentation(data / "images", data / "masks", work / "seg-head", model, image_size=224, progress=False)
    mask = segment([photo], work / "seg-head")[0]
    mask_picture(photo, mask, ["background", "disc", "square"]).save(out / "segment.png")
    a = Image.open(photos / "chelsea.png").convert("RGB")
    b = a.crop((40, 20, a.width - 10, a.height)).resize((400, 260))  # a crop, resized
    write_match(a, b, out / "match.png", model, max_matches=60, short_side=224)
    print(f"wrote {out / 'depth.png'}, {out / 'segment.png'}, {out / 'match.png'}")


if __name__ == "__main__":
    main()
