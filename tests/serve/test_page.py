"""The page of `dinokit serve` in a real headless browser: Debian's chromium and chromium-driver through
Selenium (browsers cannot be downloaded here; `.ci/run` installs them). Upload a photo, find the result
thumbnails, open an image's PCA and attention pictures, see the duplicate groups."""
import json
import os
import shutil

import pytest

import dinokit
from dinokit.serve import SpawnedServer

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER) and not os.environ.get("CI"),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from tests.helpers import sample_photos, save_tiny_model

    root = tmp_path_factory.mktemp("page")
    photos = root / "photos"
    photos.mkdir()
    for f in sample_photos():
        shutil.copy(f, photos / f.name)
    model = save_tiny_model(root / "model", noise=0.1)
    dinokit.embed(photos, root / "emb.parquet", str(model), num_workers=0, progress=False)
    dinokit.build_index(root / "emb.parquet", root / "index")
    (root / "dups.json").write_text(json.dumps({"groups": dinokit.dedup(root / "emb.parquet", threshold=0.9)}))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,900"):
        options.add_argument(arg)
    with SpawnedServer(["--index", root / "index", "--duplicates", root / "dups.json", "--token", "page-token"]) as server:
        browser = webdriver.Chrome(options=options, service=Service(DRIVER))
        try:
            yield browser, server, photos
        finally:
            browser.quit()


def _loaded_images(browser, selector):
    return [img for img in browser.find_elements("css selector", selector)
            if browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)]


def test_search_by_upload_shows_the_thumbnails_then_the_pictures_and_duplicates(page, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    browser, server, photos = page
    wait = WebDriverWait(browser, 120)
    browser.get(server.url + "/")
    wait.until(lambda b: b.find_element("id", "token-box").is_displayed())  # the server asks for its token
    token = browser.find_element("id", "token")
    token.send_keys("page-token")
    browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", token)
    wait.until(lambda b: "11 images" in b.find_element("id", "about").text)
    browser.find_element("id", "file-input").send_keys(str(photos / "chelsea.png"))
    wait.until(lambda b: len(_loaded_images(b, "#results .hit img")) == 11)
    assert browser.find_element("id", "status").text == "11 nearest images of chelsea.png"
    first = browser.find_element("css selector", "#results .hit")
    assert first.find_element("css selector", ".path").text == str(photos / "chelsea.png")
    assert float(first.find_element("css selector", ".score").text) > 0.999
    browser.save_screenshot(str(tmp_path / "search.png"))

    first.click()
    wait.until(lambda b: len(_loaded_images(b, "#view-image img")) == 3)
    assert browser.find_element("id", "image-path").text == str(photos / "chelsea.png")

    browser.find_element("css selector", "nav button[data-view=duplicates]").click()
    groups = json.loads((photos.parent / "dups.json").read_text())["groups"]
    wait.until(lambda b: len(_loaded_images(b, "#groups .hit img")) == sum(map(len, groups)))
    assert f"{len(groups)} groups of near-duplicates" in browser.find_element("id", "dup-status").text


def test_search_by_text_with_a_dinotxt_index(page, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.helpers import save_dinotxt_folder

    browser, _, photos = page
    model, _ = save_dinotxt_folder(tmp_path / "dinotxt")
    dinokit.embed(photos, tmp_path / "txt.parquet", str(model), num_workers=0, progress=False)
    dinokit.build_index(tmp_path / "txt.parquet", tmp_path / "txt.index")
    expected = [h.path for h in dinokit.search(text="a cat", index=tmp_path / "txt.index", k=11)[0]]
    with SpawnedServer(["--index", tmp_path / "txt.index"]) as server:
        wait = WebDriverWait(browser, 120)
        browser.get(server.url + "/")
        wait.until(lambda b: b.find_element("id", "text-query").is_enabled())
        browser.find_element("id", "text-query").send_keys("a cat")
        browser.find_element("id", "text-search").click()
        wait.until(lambda b: len(_loaded_images(b, "#results .hit img")) == 11)
        assert browser.find_element("id", "status").text == "11 nearest images of “a cat”"
        assert [e.text for e in browser.find_elements("css selector", "#results .hit .path")] == expected
