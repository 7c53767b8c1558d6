"""`dinokit serve` against a real server on loopback (a child process, as a user starts it): every endpoint,
embeddings and hits equal to the offline jobs', concurrent clients, 503 under overload, bad uploads,
auth, path traversal; the dynamic batcher and the collection's rules on their own."""
import asyncio
import base64
import io
import json
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

import dinokit
from dinokit.embeddings import read_embeddings
from dinokit.serve import Collection, DynamicBatcher, Overloaded, Refused, Service, SpawnedServer
from dinokit.serve.service import ServeLimits

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """Photos, a tiny model, their embeddings, index and dedup result, and a small classifier."""
    from tests.helpers import generated_images, sample_photos, save_tiny_model

    root = tmp_path_factory.mktemp("serve")
    photos = root / "photos"
    (photos / "sub").mkdir(parents=True)
    for i, f in enumerate(sample_photos()):
        shutil.copy(f, (photos / "sub" if i % 4 == 0 else photos) / f.name)
    generated_images(root / "gen", 1)[0].rename(photos / "victim.jpg")  # becomes a link out of the collection
    model = save_tiny_model(root / "model", noise=0.1)
    dinokit.embed(photos, root / "emb.parquet", str(model), batch_size=16, num_workers=0, progress=False)
    dinokit.build_index(root / "emb.parquet", root / "index")
    groups = dinokit.dedup(root / "emb.parquet", threshold=0.9)
    assert groups, "the test needs at least one duplicate group"
    (root / "dups.json").write_text(json.dumps({"threshold": 0.9, "groups": groups}))
    torch.manual_seed(0)
    classifier = dinokit.Dinov2ForImageClassification(dinokit.Dinov2Config(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_labels=3, id2label={0: "cat", 1: "dog", 2: "car"}))
    classifier.save_pretrained(root / "classifier")
    paths, vectors, _ = read_embeddings(root / "emb.parquet")
    return {"root": root, "photos": photos, "model": model, "offline": dict(zip(paths, vectors)),
            "paths": sorted(paths), "groups": groups}


@pytest.fixture(scope="module")
def server(collection):
    root = collection["root"]
    with SpawnedServer(["--index", root / "index", "--duplicates", root / "dups.json", "--classifier",
                        root / "classifier", "--max-request-mb", "16"]) as s:
        yield s


@pytest.fixture(scope="module")
def busy_server(collection):
    """One image per forward pass, two waiting at most, a token from the environment variable."""
    with SpawnedServer(["--model", collection["model"], "--max-batch-size", "1", "--max-queue", "2",
                        "--batch-window-ms", "0"], env={"DINOKIT_SERVE_TOKEN": TOKEN}) as s:
        yield s


def files(*paths):
    return [("image", (os.path.basename(p), open(p, "rb").read())) for p in paths]


def test_every_endpoint_answers(server, collection):
    client = httpx.Client(base_url=server.url, timeout=120)
    assert client.get("/healthz").json()["status"] == "ok"
    info = client.get("/v1/info").json()
    assert info["index"]["count"] == len(collection["paths"]) and info["duplicate_groups"] == len(collection["groups"])
    assert info["model"] == str(collection["model"]) and info["pooling"] == "cls" and info["reads_text"] is False
    spec = client.get("/openapi.json").json()
    assert {"/v1/embed", "/v1/search", "/v1/classify", "/v1/thumbnail", "/v1/duplicates", "/healthz", "/metrics"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/v1/embed"]["post"]["requestBody"]["content"]
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"] and "/page/app.js" in page.text
    assert "searchImage" in client.get("/page/app.js").text
    thumb = client.get("/v1/thumbnail", params={"path": "chelsea.png"})
    assert thumb.headers["content-type"] == "image/jpeg" and max(Image.open(io.BytesIO(thumb.content)).size) == 256
    for kind in ("pca", "attention"):
        picture = client.get(f"/v1/viz/{kind}", params={"path": "sub/astronaut.png"})
        assert picture.headers["content-type"] == "image/png" and Image.open(io.BytesIO(picture.content)).width > 256
    assert client.get("/v1/viz/nope", params={"path": "chelsea.png"}).status_code == 404
    groups = client.get("/v1/duplicates").json()["groups"]
    assert [[h["path"] for h in g] for g in groups] == collection["groups"]
    for group in groups:
        for hit in group:
            assert client.get("/v1/thumbnail", params={"path": hit["key"]}).status_code == 200
    metrics = client.get("/metrics").text
    assert 'dinokit_requests_total{endpoint="/v1/info",status="200"}' in metrics and "dinokit_queue_depth" in metrics


def test_embeddings_equal_dinokit_embed_bit_for_bit(server, collection):
    """One request of the photos in embed's order is one forward pass of the same batch: identical bits.
    JSON and base64 bodies give the same answer as multipart."""
    paths = collection["paths"]
    got = np.asarray(httpx.post(server.url + "/v1/embed", files=files(*paths), timeout=300).json()["embeddings"], np.float32)
    offline = np.stack([collection["offline"][p] for p in paths])
    assert got.shape == offline.shape and np.array_equal(got, offline)
    encoded = [base64.b64encode(open(p, "rb").read()).decode() for p in paths]
    as_json = httpx.post(server.url + "/v1/embed", json={"images": encoded}, timeout=300).json()["embeddings"]
    assert np.array_equal(np.asarray(as_json, np.float32), offline)


def test_64_concurrent_clients_get_the_offline_answers(server, collection, report):
    """Single-image requests arriving together share forward passes (dynamic batching); each answer equals
    the offline embedding to float32 rounding (another batch composition: see docs/serve.md) and the offline
    search's hits."""
    paths = collection["paths"]
    offline_hits = dinokit.search(paths, collection["root"] / "index", k=5)
    before = _batches(server)

    def one(i):
        path = paths[i % len(paths)]
        with httpx.Client(base_url=server.url, timeout=300) as client:
            emb = client.post("/v1/embed", files=files(path))
            hits = client.post("/v1/search", files=files(path), data={"k": "5"})
        return i, emb, hits

    with ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(one, range(64)))
    worst = 0.0
    for i, emb, hits in answers:
        assert emb.status_code == 200 and hits.status_code == 200, (emb.text, hits.text)
        vector = np.asarray(emb.json()["embeddings"][0], np.float32)
        offline = collection["offline"][paths[i % len(paths)]]
        worst = max(worst, float(np.abs(vector - offline).max()))
        got = hits.json()["results"][0]["hits"]
        expected = offline_hits[i % len(paths)]
        assert [h["path"] for h in got] == [h.path for h in expected]
        assert np.allclose([h["score"] for h in got], [h.score for h in expected], atol=1e-5)
    report(f"serve: 64 concurrent clients vs dinokit embed, max abs difference {worst:.1e}")
    assert worst <= 1e-4
    images, batches = (a - b for a, b in zip(_batches(server), before))
    assert images == 128 and batches < images, f"{images} images in {batches} forward passes: no batching"


def _batches(server) -> tuple[float, float]:
    """(images, forward passes) of the embedding model so far, from /metrics."""
    values = {}
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        for name in ("dinokit_images_total", "dinokit_batch_size_count"):
            if line.startswith(name + '{model="embed"}'):
                values[name] = float(line.split()[-1])
    return values.get("dinokit_images_total", 0.0), values.get("dinokit_batch_size_count", 0.0)


def test_classify_equals_dinokit_classify(server, collection):
    paths = collection["paths"][:4]
    got = httpx.post(server.url + "/v1/classify", files=files(*paths), data={"top_k": "2"}, timeout=300).json()["results"]
    offline = dinokit.classify.classify(paths, str(collection["root"] / "classifier"), top_k=2)
    for answer, expected in zip(got, offline):
        assert [p["label"] for p in answer["predictions"]] == [p["label"] for p in expected["predictions"]]
        assert np.allclose([p["probability"] for p in answer["predictions"]],
                           [p["probability"] for p in expected["predictions"]], atol=2e-6)
    assert {p["label"] for a in got for p in a["predictions"]} <= {"cat", "dog", "car"}


def _tiny_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (2, 2)).save(out, "PNG")
    return out.getvalue()


def _bomb_png() -> bytes:
    """A PNG that declares 20000 × 20000 pixels in a few hundred bytes (zlib of zeros)."""
    image = Image.new("1", (20000, 20000))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_bad_uploads_get_a_4xx_with_the_reason_and_the_server_goes_on(server, collection, tmp_path):
    good = files(collection["paths"][0])
    photo = open(collection["paths"][0], "rb").read()
    cases = {
        "corrupt": ([("image", ("corrupt.jpg", photo[: len(photo) // 3]))], 400, "corrupt"),
        "empty": ([("image", ("empty.png", b""))], 400, "empty file"),
        "not an image": ([("image", ("notes.txt", b"hello, I am text"))], 400, "not an image"),
        "decompression bomb": ([("image", ("bomb.png", _bomb_png()))], 413, "decompression bomb"),
        "oversized": ([("image", ("big.png", os.urandom(17 << 20)))], 413, "at most"),
        "mixed with a good one": (good + [("image", ("notes.txt", b"text"))], 400, "notes.txt (image 2 of 2)"),
    }
    for name, (body, status, reason) in cases.items():
        answer = httpx.post(server.url + "/v1/embed", files=body, timeout=120)
        assert answer.status_code == status and reason in answer.json()["detail"], (name, answer.text)
        assert httpx.get(server.url + "/healthz").json()["status"] == "ok"
        assert httpx.post(server.url + "/v1/embed", files=good, timeout=120).status_code == 200, name
    requests = [
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
        ({"json": {"images": ["%%%"]}}, 400, "not valid base64"),
        ({"json": {"images": []}}, 400, "no image"),
        ({"content": b"abc", "headers": {"content-type": "text/plain"}}, 415, "multipart/form-data"),
        ({"files": good, "data": {"k": "zero"}}, 400, "k must be an integer"),
        ({"files": good, "data": {"k": "0"}}, 400, "from 1 to 1000"),
        ({"json": {"text": "a red bicycle"}}, 400, "does not read text"),
        ({"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data; boundary=x"}}, 400, "multipart"),
        ({"files": [("image", ("tiny.png", _tiny_png()))] * 65}, 413, "at most 64"),
        ({"files": [("picture", ("tiny.png", _tiny_png()))]}, 400, "fields named 'image'"),
    ]
    for kwargs, status, reason in requests:
        answer = httpx.post(server.url + "/v1/search", timeout=120, **kwargs)
        assert answer.status_code == status and reason in answer.json()["detail"], (kwargs, answer.text)
    assert httpx.post(server.url + "/v1/search", files=good, timeout=120).status_code == 200


def test_paths_outside_the_collection_are_refused(server, collection):
    photos = collection["photos"]
    victim = photos / "victim.jpg"
    victim.unlink()
    victim.symlink_to("/etc/hostname")  # replaced by a link out of the collection after indexing
    attempts = {"../model/config.json": 403, "sub/../../model/config.json": 403, "/etc/passwd": 403,
                str(photos / "chelsea.png"): 403, "..%2fmodel%2fconfig.json": 404, "victim.jpg": 403,
                "not-indexed.png": 404, "": 403, "sub\\..\\..\\model": 403}
    for path, status in attempts.items():
        for endpoint in ("/v1/thumbnail", "/v1/viz/pca"):
            answer = httpx.get(server.url + endpoint, params={"path": path}, timeout=120)
            assert answer.status_code == status, (endpoint, path, answer.text)
    raw = httpx.get(server.url + "/v1/thumbnail?path=%2E%2E/model/config.json")
    assert raw.status_code == 403
    assert httpx.get(server.url + "/page/../../../../etc/passwd").status_code == 404
    assert httpx.get(server.url + "/v1/thumbnail", params={"path": "chelsea.png"}).status_code == 200


def test_overload_answers_503_with_retry_after_and_recovers(busy_server, collection):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = files(collection["paths"][1])

    def one(_):
        with httpx.Client(base_url=busy_server.url, timeout=300, headers=auth) as client:
            return client.post("/v1/embed", files=body)

    with ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(one, range(64)))
    statuses = [a.status_code for a in answers]
    assert set(statuses) == {200, 503}, statuses
    refused = [a for a in answers if a.status_code == 503]
    assert all(int(a.headers["retry-after"]) >= 1 and "queue is full" in a.json()["detail"] for a in refused)
    served = [np.asarray(a.json()["embeddings"][0], np.float32) for a in answers if a.status_code == 200]
    assert all(np.array_equal(v, served[0]) for v in served)  # one image per forward pass: always the same bits
    assert np.abs(served[0] - collection["offline"][collection["paths"][1]]).max() <= 1e-4
    assert httpx.get(busy_server.url + "/healthz").json() == {"status": "ok", "queue_depth": 0}
    assert httpx.post(busy_server.url + "/v1/embed", files=body, headers=auth, timeout=120).status_code == 200
    metrics = httpx.get(busy_server.url + "/metrics", headers=auth).text
    assert f"dinokit_overloaded_total {float(len(refused))}" in metrics


def test_auth_on_and_off(busy_server, server, collection):
    body = files(collection["paths"][0])
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}):
        for method, path in (("POST", "/v1/embed"), ("GET", "/v1/info"), ("GET", "/metrics"), ("GET", "/v1/duplicates")):
            answer = httpx.request(method, busy_server.url + path, headers=headers, files=body if method == "POST" else None)
            assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer", (headers, path)
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.post(busy_server.url + "/v1/embed", headers=good, files=body, timeout=120).status_code == 200
    assert httpx.get(busy_server.url + "/healthz").status_code == 200  # health and the page stay open
    assert httpx.get(busy_server.url + "/").status_code == 200
    assert httpx.get(server.url + "/v1/info").status_code == 200  # no token configured: open
    assert httpx.post(busy_server.url + "/v1/search", headers=good, files=body).status_code == 409  # and no index


# --- the parts on their own ----------------------------------------------------------------------------

def test_batcher_gathers_requests_into_batches_and_keeps_going_after_an_error():
    sizes = []

    def run(values):
        sizes.append(len(values))
        if "boom" in values:
            raise RuntimeError("boom")
        return [v * 2 for v in values]

    async def main():
        batcher = DynamicBatcher(run, max_batch_size=4, window_ms=200, max_queue=10).start()
        try:
            results = await asyncio.gather(*(batcher.submit([i]) for i in range(4)), batcher.submit([10, 11, 12]))
            assert results == [[0], [2], [4], [6], [20, 22, 24]]
            with pytest.raises(Overloaded):
                await batcher.submit(list(range(11)))
            with pytest.raises(RuntimeError, match="boom"):
                await batcher.submit(["boom"])
            assert await batcher.submit([5]) == [10]
        finally:
            batcher.stop()

    asyncio.run(main())
    assert sizes == [4, 3, 1, 1]  # the window gathered 4 single requests, then the request of 3


def test_batcher_refuses_whole_requests_beyond_the_queue():
    release = threading.Event()

    def run(values):
        release.wait(30)
        return values

    async def main():
        batcher = DynamicBatcher(run, max_batch_size=1, window_ms=0, max_queue=3).start()
        try:
            first = asyncio.ensure_future(batcher.submit([1]))
            while batcher.depth:  # the worker took it and is busy
                await asyncio.sleep(0.01)
            waiting = asyncio.ensure_future(batcher.submit([2, 3]))
            await asyncio.sleep(0.05)
            with pytest.raises(Overloaded) as refused:
                await batcher.submit([4, 5])  # 2 waiting + 2 > 3: none of them enters
            assert refused.value.retry_after >= 1 and batcher.depth == 2
            release.set()
            assert await first == [1] and await waiting == [2, 3]
            assert await batcher.submit([6]) == [6]  # room again once the waiting ones ran
        finally:
            release.set()
            batcher.stop()

    asyncio.run(main())


def test_collection_reads_only_its_own_files(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    inside = [tmp_path / "a" / "x.png", tmp_path / "a" / "b" / "y.png"]
    for p in inside:
        p.write_bytes(b"x")
    (tmp_path / "secret.txt").write_text("no")
    c = Collection(inside)
    assert c.root == str(tmp_path / "a") and c.key(str(inside[1])) == "b/y.png"
    assert c.resolve("b/y.png") == str(inside[1])
    for key, status in {"../secret.txt": 403, "b/../../secret.txt": 403, str(tmp_path / "secret.txt"): 403,
                        "b/z.png": 404, "b/y.png\x00": 403, "C:/x.png": 403}.items():
        with pytest.raises(Refused) as e:
            c.resolve(key)
        assert e.value.status == status, key


def test_service_refuses_settings_that_differ_from_the_index(collection):
    index = collection["root"] / "index"
    limits = ServeLimits()
    with pytest.raises(dinokit.errors.UsageError, match="--pooling mean"):
        Service(index=index, pooling="mean", limits=limits)
    with pytest.raises(dinokit.errors.UsageError, match="not the model of the index"):
        Service("dinov2_vits14", index=index, limits=limits)
    with pytest.raises(dinokit.errors.UsageError, match="--classifier"):
        Service(index=index, classifier=str(collection["model"]), limits=limits)


@pytest.mark.slow
def test_serve_bench_times_both_servers_on_the_same_requests(collection, tmp_path, capsys):
    from dinokit.bench import main
    from tests.helpers import sample_photos

    (tmp_path / "photos").mkdir()
    for photo in sample_photos():  # the collection's own folder holds a link another test turns into a non-image
        shutil.copy(photo, tmp_path / "photos")
    out = tmp_path / "serve.json"
    assert main(["--no-peers", "--serve", "--serve-model", str(collection["model"]), "--photos", str(tmp_path / "photos"),
                 "--serve-clients", "8", "--serve-requests", "40", "-o", str(out)]) == 0
    s = json.loads(out.read_text())["serve"]
    for mode in ("one per forward", "dynamic batching"):
        assert s[mode]["errors"] == 0 and s[mode]["requests_per_s"] > 0 and s[mode]["p99_ms"] >= s[mode]["p50_ms"]
    assert abs(s["speedup"] - s["dynamic batching"]["requests_per_s"] / s["one per forward"]["requests_per_s"]) < 1e-9
    assert f"x{s['speedup']:.2f} the requests per second" in capsys.readouterr().out
