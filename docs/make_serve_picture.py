"""The README's picture of the `dinokit serve` page: `python docs/make_serve_picture.py` (needs Debian's
chromium and chromium-driver, and selenium).

No real DINOv2 weights can be downloaded where dinokit is built, so the collection (the test photos:
scikit-image's and scikit-learn's samples) is embedded with the tests' random model: the page and its
plumbing are real, the ranking means nothing. `--model dinov2_vits14` shows real neighbours."""
from __future__ import annotations

import argparse
import io
import shutil
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dinokit  # noqa: E402
from dinokit.serve import SpawnedServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", help="backbone (default: the tests' random model)")
    parser.add_argument("--query", default="chelsea.png")
    parser.add_argument("--out", default=str(ROOT / "docs" / "images" / "serve.jpg"))
    parser.add_argument("--work", default="/tmp/dinokit-serve-picture")
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.helpers import sample_photos, save_tiny_model

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    (work / "photos").mkdir(parents=True)
    for f in sample_photos():
        shutil.copy(f, work / "photos" / f.name)
    model = args.model or str(save_tiny_model(work / "model", noise=0.1))
    dinokit.embed(work / "photos", work / "photos.parquet", model, num_workers=0, progress=False)
    dinokit.build_index(work / "photos.parquet", work / "photos.index")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--window-size=1100,760"):
        options.add_argument(arg)
    with SpawnedServer(["--index", work / "photos.index"]) as server:
        browser = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
        try:
            browser.get(server.url + "/")
            browser.find_element("id", "file-input").send_keys(str(work / "photos" / args.query))
            WebDriverWait(browser, 120).until(lambda b: len([
                i for i in b.find_elements("css selector", "#results .hit img")
                if b.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", i)]) >= 8)
            Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB").save(args.out, quality=85)
        finally:
            browser.quit()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
