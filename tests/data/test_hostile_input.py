"""Image input a hostile or careless user gives: files built to cost memory, files that are not files,
and random corruptions. Each is a tensor of the right shape or an `ImageLoadError` with the true reason."""
import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from dinokit.data import (
    MAX_RESIZED_PIXELS,
    Dinov2ImageProcessor,
    ImageFiles,
    ImageLoadError,
    dense_transform,
    load_image,
    official_eval_transform,
    scan_images,
)

# Bytes an image may add to the peak memory while it is loaded and preprocessed: a refused resize must cost
# nearly nothing; any file within Pillow's pixel limit (179 M pixels, decoded then converted) fits in 2 GiB.
REFUSAL_BUDGET = 256 << 20
MEMORY_BUDGET = 2 << 30


def peak_memory_during(work) -> int:
    """Bytes the process's peak resident memory rose above its size before `work` (Linux: the peak is
    reset through /proc/self/clear_refs, so each call measures itself alone)."""
    def kib(field):
        status = Path("/proc/self/status").read_text()
        return int(status.split(f"{field}:")[1].split()[0]) * 1024

    Path("/proc/self/clear_refs").write_text("5")
    before = kib("VmRSS")
    work()
    return kib("VmHWM") - before


def long_thin_png(tmp_path, width=10_000, height=1) -> Path:
    path = tmp_path / f"thin_{width}x{height}.png"
    Image.new("L", (width, height), 128).save(path, optimize=True)
    return path


def test_a_long_thin_image_is_refused_before_the_resize_allocates_it(tmp_path):
    """A 10000×1 PNG of ~100 bytes: the shortest-edge resize to 256 would make it 2,560,000×256 (7 GB and a
    minute before the fix); every path that resizes refuses it, naming the sizes, within the budget."""
    path = long_thin_png(tmp_path)
    assert path.stat().st_size < 200
    image = load_image(path)
    pipelines = {
        "processor (PIL)": lambda: Dinov2ImageProcessor()(image),
        "processor (tensor)": lambda: Dinov2ImageProcessor()(torch.full((3, 1, 10_000), 0.5)),
        "official eval transform": lambda: official_eval_transform()(image),
        "dense transform": lambda: dense_transform(448)(image),
    }
    for name, run in pipelines.items():
        def refused():
            with pytest.raises(ImageLoadError, match=r"10000x1 to \d+x\d+ .* exceeds the limit"):
                run()
        assert peak_memory_during(refused) < REFUSAL_BUDGET, name
    ok = long_thin_png(tmp_path, 800, 200)  # 4:1 resizes to 1024x256: well inside the limit
    assert Dinov2ImageProcessor()(load_image(ok)).pixel_values.shape == (1, 3, 224, 224)


def test_a_job_reports_the_long_thin_image_and_goes_on(tmp_path, photos):
    folder = tmp_path / "in"
    folder.mkdir()
    long_thin_png(folder)
    Image.open(photos[0]).save(folder / "good.png")
    dataset = ImageFiles(folder, Dinov2ImageProcessor())
    good = list(dataset)
    assert [Path(p).name for _, p in good] == ["good.png"]
    assert len(dataset.failures) == 1 and "exceeds the limit" in dataset.failures[0][1]
    assert str(MAX_RESIZED_PIXELS) in dataset.failures[0][1]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are a POSIX thing")
def test_fifos_devices_and_dangling_links_are_reported_never_opened(tmp_path, photos):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.open(photos[0]).save(folder / "good.png")
    os.mkfifo(folder / "pipe.jpg")  # opening it for reading would block for ever
    os.symlink("/dev/zero", folder / "zero.png")  # reading it would never end
    os.symlink(folder / "gone.jpg", folder / "dangling.jpg")
    os.symlink(folder, folder / "loop")  # a link to a folder: not followed (no loops), but said
    scan = scan_images(folder)
    names = sorted(p.name for p in scan.paths)
    assert names == ["dangling.jpg", "good.png", "pipe.jpg", "zero.png"]
    assert [(Path(p).name, "not followed" in r) for p, r in scan.problems] == [("loop", True)]
    dataset = ImageFiles(folder, Dinov2ImageProcessor())
    assert [Path(p).name for _, p in dataset] == ["good.png"]
    reasons = {Path(p).name: r for p, r in dataset.failures}
    assert "FIFO" in reasons["pipe.jpg"] and "not opened" in reasons["pipe.jpg"]
    assert "character device" in reasons["zero.png"]
    assert "dangling symbolic link" in reasons["dangling.jpg"]
    assert "not followed" in reasons["loop"]


def failures_as_another_user(folder) -> tuple[list[str], dict[str, str]]:
    """`ImageFiles(folder)`'s good paths and failures, read by a forked child that runs as `nobody` when
    this process is root (root reads everything, so a permission error needs an unprivileged reader)."""
    import pickle

    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        try:
            os.close(read_end)
            if os.geteuid() == 0:
                os.setgid(65534), os.setuid(65534)
            dataset = ImageFiles(folder, Dinov2ImageProcessor())
            good = [p for _, p in dataset]
            result = (good, {os.path.basename(p): r for p, r in dataset.failures})
        except BaseException as e:
            result = e
        with os.fdopen(write_end, "wb") as pipe:
            pickle.dump(result, pipe)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        result = pickle.load(pipe)
    os.waitpid(child, 0)
    if isinstance(result, BaseException):
        raise result
    return result


def test_permission_errors_say_permission_denied(photos):
    """An unreadable file and an unlistable folder, each with its true reason (not 'corrupt')."""
    root = Path(tempfile.mkdtemp(prefix="dinokit-perm-", dir="/tmp"))  # a path an unprivileged user can reach
    try:
        os.chmod(root, 0o755)
        Image.open(photos[0]).save(root / "good.png")
        Image.open(photos[1]).save(root / "secret.png")
        os.chmod(root / "secret.png", 0o000)
        (root / "locked").mkdir()
        Image.open(photos[2]).save(root / "locked" / "inside.png")
        os.chmod(root / "locked", 0o000)
        good, failures = failures_as_another_user(root)
        assert [os.path.basename(p) for p in good] == ["good.png"]
        assert "permission denied" in failures["secret.png"], failures
        assert "cannot list folder" in failures["locked"] and "ermission denied" in failures["locked"], failures
    finally:
        for p in (root / "locked", root / "secret.png"):
            os.chmod(p, 0o755)
        shutil.rmtree(root)


ALL_MODES = ("1", "L", "P", "RGB", "RGBA", "LA", "I;16", "I", "F", "CMYK")
FORMATS = {  # the modes Pillow writes in each format
    "PNG": ("1", "L", "P", "RGB", "RGBA", "LA", "I;16"), "JPEG": ("1", "L", "RGB", "CMYK"),
    "GIF": ALL_MODES[:-1], "BMP": ("1", "L", "P", "RGB", "RGBA"), "TIFF": ALL_MODES, "WEBP": ALL_MODES}


@st.composite
def image_files(draw):
    """Bytes of an image file: a format, a mode it can hold, a size (extreme aspect ratios too), then
    maybe a corruption: cut short, bytes overwritten, or junk appended."""
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    mode = draw(st.sampled_from(FORMATS[fmt]))
    width = draw(st.one_of(st.integers(1, 48), st.sampled_from([3000, 16_000])))  # WebP holds ≤ 16383
    height = draw(st.one_of(st.integers(1, 48), st.just(1)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    data = bytearray(buffer.getvalue())
    corruption = draw(st.sampled_from(["none", "truncate", "overwrite", "append"]))
    if corruption == "truncate":
        data = data[: draw(st.integers(0, max(0, len(data) - 1)))]
    elif corruption == "overwrite":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    elif corruption == "append":
        data += draw(st.binary(min_size=1, max_size=64))
    return fmt, bytes(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(image_files())
def test_fuzz_loader_and_processor_give_a_tensor_or_the_typed_error(file):
    """Never another exception, never more than the memory budget; a tensor has the processor's shape."""
    fmt, data = file
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz.{fmt.lower()}"
        path.write_bytes(data)
        processor = Dinov2ImageProcessor()
        result = {}

        def load_and_process():
            try:
                result["pixels"] = processor(load_image(path)).pixel_values
            except ImageLoadError as e:
                result["error"] = e

        assert peak_memory_during(load_and_process) < MEMORY_BUDGET
        if "error" in result:
            assert result["error"].reason
        else:
            pixels = result["pixels"]
            assert pixels.shape == (1, 3, 224, 224) and pixels.dtype == torch.float32
            assert torch.isfinite(pixels).all()
