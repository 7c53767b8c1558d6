"""The benchmark's own numbers must be trustworthy: every peer gets the same weights, and dinokit in a peer's
interpolation mode gives that peer's output. (Speed itself is reported by `dinokit bench`, never asserted.)"""
from dinokit.bench import bench_models, vit_flops
from dinokit.models import preset_config


def test_bench_compares_equal_models():
    result = bench_models(sizes=("s",), batch_sizes=(2,), repeats=1, warmup=0, progress=None)
    rows = {r["peer"]: r for r in result["rows"]}
    assert set(rows) == {"dinokit", "transformers", "timm", "official"}
    assert rows["official"]["max_abs_diff_vs_official"] == 0.0
    assert rows["dinokit"]["max_abs_diff_vs_official"] <= 1e-4
    for peer in ("transformers", "timm", "official"):
        assert rows[peer]["max_abs_diff_vs_peer"] <= 1e-4, peer
    # the peers differ from the official output at 224 px by design (their interpolation)
    assert rows["timm"]["max_abs_diff_vs_official"] > 1e-3
    flops = vit_flops(preset_config("s"), 2, 224)  # the rates are the FLOPs over the same median times
    for r in rows.values():
        assert abs(r["dinokit_gflops"] * 1e9 / flops - r["dinokit_img_s"]["median"] / 2) < 1e-6 * r["dinokit_gflops"]
        assert abs(r["speedup"] - r["dinokit_img_s"]["median"] / r["peer_img_s"]["median"]) < 1e-9


def test_flop_count_matches_published_figures():
    # mmpretrain's model table: ViT-S/14 46.76 G and ViT-B/14 152.00 G multiply-adds at 518 px
    assert abs(vit_flops(preset_config("s"), 1, 518) / 2e9 - 46.76) / 46.76 < 0.005
    assert abs(vit_flops(preset_config("b"), 1, 518) / 2e9 - 152.00) / 152.00 < 0.005


def test_backend_bench_measures_speed_and_effect(photos, photo_dir):
    from dinokit.bench import bench_backends

    result = bench_backends(["onnxruntime", "int8"], sizes=("s",), batch_sizes=(1,), repeats=1, warmup=0,
                            photos=photo_dir, knn=False, progress=None)
    rows = {r["backend"]: r for r in result["rows"]}
    assert set(rows) == {"eager", "onnxruntime", "int8"} and rows["eager"]["speedup"] == 1.0
    assert rows["onnxruntime"]["max_abs_diff_vs_eager"] < 1e-4 < rows["int8"]["max_abs_diff_vs_eager"]
    effects = {e["backend"]: e for e in result["effects"]}
    assert effects["onnxruntime"]["cls_cosine_min"] > 0.99999
    assert 0.9 < effects["int8"]["cls_cosine_min"] < 0.99999
    assert effects["int8"]["photos"] == len(photos)


def test_embed_bench_times_both_sides_on_the_same_images_and_numbers(photo_dir, tmp_path):
    import json

    from dinokit.bench import main

    out = tmp_path / "embed.json"
    assert main(["--no-peers", "--embed-folder", str(photo_dir), "--embed-limit", "5",
                 "--embed-repeats", "2", "-o", str(out)]) == 0
    e = json.loads(out.read_text())["embed"]
    assert e["images"] == 5 and [len(v) for v in e["seconds"].values()] == [2, 2]
    assert e["max_abs_diff"] < 1e-4  # the same embeddings from both sides, image by image
    from statistics import median
    t = e["seconds"]
    assert abs(e["speedup"] - median(t["transformers"]) / median(t["dinokit"])) < 1e-9


def test_dinov3_bench_times_equal_models():
    from dinokit.bench import bench_dinov3

    result = bench_dinov3(sizes=("s",), batch_sizes=(2,), repeats=1, warmup=0, progress=None)
    rows = {r["peer"]: r for r in result["rows"]}
    assert set(rows) == {"transformers", "timm"}
    for r in rows.values():
        assert r["max_abs_diff_vs_peer"] <= 1e-4 and r["model"] == "DINOv3 ViT-S/16"
        assert abs(r["speedup"] - r["dinokit_img_s"]["median"] / r["peer_img_s"]["median"]) < 1e-9
