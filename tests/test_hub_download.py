"""load_pretrained("gpt2")'s download branch, run against a local Hugging Face hub (issue 22, part 4).

A tiny GPT-2, saved with save_pretrained, is served on 127.0.0.1 the way huggingface.co serves a repo:
a HEAD then a GET of `/{repo}/resolve/main/config.json` (ETag = the git blob sha1), and for the LFS
file model.safetensors a HEAD answered with a 302 to a "CDN" on another origin (another port), with
X-Linked-Etag = its sha256 and X-Linked-Size, and a GET there. huggingface_hub reads HF_ENDPOINT when
it is imported, so each load runs in a subprocess, which may connect to loopback addresses only.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

import gpt2scratch
from gpt2scratch import save_pretrained
from gpt2scratch.model import GPT2
from gpt2scratch.pretrained import CONFIG, ENV_DIR, HUB_REPOS, WEIGHTS
from conftest import tiny_config

pytest.importorskip("huggingface_hub")

REPO = HUB_REPOS["gpt2"]  # what load_pretrained("gpt2") asks the hub for
COMMIT = hashlib.sha1(b"the tiny repo's only commit").hexdigest()
IDS = [[5, 40, 71, 0, 96, 33, 12, 7]]  # ids of tiny_config()'s 97

# Runs in the subprocess: argv[1] is the folder for its results.
LOAD = r'''
import json, socket, sys
_connect = socket.socket.connect
def loopback_only(sock, address, *args):  # no network beyond 127.0.0.1
    if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1"):
        raise OSError(f"test guard: refused a connection to {address}")
    return _connect(sock, address, *args)
socket.socket.connect = loopback_only
import torch
from gpt2scratch.pretrained import find_pretrained, load_pretrained
out, ids = sys.argv[1], json.loads(sys.argv[2])
try:
    model = load_pretrained("gpt2")
except (FileNotFoundError, ValueError) as err:  # the errors load_pretrained documents
    result = {"error": f"{type(err).__name__}: {err}"}
else:
    with torch.no_grad():
        torch.save(model(torch.tensor(ids)), out + "/logits.pt")
    result = {"files": [str(p) for p in find_pretrained("gpt2", download=False)]}
with open(out + "/result.json", "w") as f:
    json.dump(result, f)
'''


class LocalHub:
    """The hub and its CDN: two HTTP servers on 127.0.0.1 serving one folder, logging each request."""

    def __init__(self, folder: Path, corrupt: bool = False):
        self.files = {name: (folder / name).read_bytes() for name in (CONFIG, WEIGHTS)}
        self.sha256 = hashlib.sha256(self.files[WEIGHTS]).hexdigest()
        if corrupt:  # the CDN sends the right length with the last byte flipped
            data = self.files[WEIGHTS]
            self.files[WEIGHTS] = data[:-1] + bytes([data[-1] ^ 1])
        self.requests: list[tuple[str, str, str]] = []
        self.servers = [self._start("hub"), self._start("cdn")]
        self.endpoint, self.cdn = (f"http://127.0.0.1:{s.server_port}" for s in self.servers)

    def _start(self, name: str) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler(name))  # port 0: a free one
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return server

    def _answer(self, name: str, path: str) -> tuple[int, dict, bytes]:
        """(status, headers, body) for a path on the server `name`."""
        if name == "cdn" and path == f"/blobs/{self.sha256}":
            return 200, {}, self.files[WEIGHTS]
        prefix = f"/{REPO}/resolve/main/"
        filename = path.removeprefix(prefix) if name == "hub" and path.startswith(prefix) else None
        if filename == CONFIG:  # a git file: its ETag is its git blob sha1
            body = self.files[CONFIG]
            etag = hashlib.sha1(b"blob %d\0" % len(body) + body).hexdigest()
            return 200, {"ETag": f'"{etag}"', "X-Repo-Commit": COMMIT}, body
        if filename == WEIGHTS:  # an LFS file: a redirect to the CDN, its sha256 in X-Linked-Etag
            linked = {"X-Linked-Etag": f'"{self.sha256}"', "X-Linked-Size": str(len(self.files[WEIGHTS]))}
            location = f"{self.cdn}/blobs/{self.sha256}"
            return 302, {"Location": location, "X-Repo-Commit": COMMIT, **linked}, b""
        return 404, {"X-Error-Code": "EntryNotFound"}, b""

    def _handler(self, name: str):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def reply(self, send_body: bool):
                hub.requests.append((name, self.command, self.path))
                status, headers, body = hub._answer(name, self.path)
                self.send_response(status)
                for key, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(key, value)
                self.end_headers()
                if send_body:
                    self.wfile.write(body)

            def do_HEAD(self):
                self.reply(send_body=False)

            def do_GET(self):
                self.reply(send_body=True)

            def log_message(self, *args):  # quiet
                pass

        return Handler

    def stop(self):
        for server in self.servers:
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT2(tiny_config()).eval()


@pytest.fixture(scope="module")
def served(model, tmp_path_factory):
    """The tiny model in Hugging Face's layout: the folder a LocalHub serves."""
    return save_pretrained(model, tmp_path_factory.mktemp("served"))


@pytest.fixture
def hub(served):
    local = LocalHub(served)
    yield local
    local.stop()  # a second stop (after a test's own) is harmless


@pytest.fixture(scope="module")
def downloaded(served, tmp_path_factory):
    """One download into a fresh cache, shared by the tests that read it: (hub, cache, result,
    the requests the download made). The hub is stopped when the module's tests are done."""
    local, tmp = LocalHub(served), tmp_path_factory.mktemp("downloaded")
    try:
        result = load_in_subprocess(local, tmp / "hf", tmp / "run")
        yield local, tmp, result, list(local.requests)
    finally:
        local.stop()


def load_in_subprocess(hub: LocalHub, hf_home: Path, out: Path, **env) -> dict:
    """Run load_pretrained("gpt2") in a fresh interpreter whose hub is `hub` and cache `hf_home`."""
    out.mkdir()
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("HF_", "HUGGINGFACE_")) and "proxy" not in k.lower()
             and k not in (ENV_DIR, "TRANSFORMERS_OFFLINE")}
    src = str(Path(gpt2scratch.__file__).parents[1])
    clean.update(
        PYTHONPATH=os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])]),
        HF_ENDPOINT=hub.endpoint, HF_HOME=str(hf_home), HF_HUB_CACHE=str(hf_home / "hub"),
        HF_HUB_ETAG_TIMEOUT="10", HF_HUB_DOWNLOAD_TIMEOUT="10", HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1", NO_PROXY="127.0.0.1", **env,
    )
    proc = subprocess.run([sys.executable, "-c", LOAD, str(out), json.dumps(IDS)], env=clean,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((out / "result.json").read_text())


def logits_of(model: GPT2) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor(IDS))


def test_downloads_into_the_cache_verified_with_equal_logits(model, downloaded):
    hub, tmp, result, requests = downloaded
    assert torch.equal(torch.load(tmp / "run" / "logits.pt"), logits_of(model))
    repo = tmp / "hf" / "hub" / f"models--{REPO.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    assert result["files"] == [str(snapshot / CONFIG), str(snapshot / WEIGHTS)]
    assert (repo / "refs" / "main").read_text() == COMMIT
    blob = (snapshot / WEIGHTS).resolve()  # the hub names an LFS blob by the sha256 it announced
    assert blob == (repo / "blobs" / hub.sha256).resolve()
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == hub.sha256
    assert requests == [
        ("hub", "HEAD", f"/{REPO}/resolve/main/{CONFIG}"),
        ("hub", "GET", f"/{REPO}/resolve/main/{CONFIG}"),
        ("hub", "HEAD", f"/{REPO}/resolve/main/{WEIGHTS}"),
        ("cdn", "GET", f"/blobs/{hub.sha256}"),
    ]


def test_second_load_comes_from_the_cache_with_the_server_stopped(model, downloaded):
    hub, tmp, first, _ = downloaded
    hub.stop()
    hub.requests.clear()
    second = load_in_subprocess(hub, tmp / "hf", tmp / "stopped")
    assert second == first and hub.requests == []
    assert torch.equal(torch.load(tmp / "stopped" / "logits.pt"), logits_of(model))


def test_offline_with_an_empty_cache_says_what_to_do(hub, tmp_path):
    result = load_in_subprocess(hub, tmp_path / "hf", tmp_path / "run", HF_HUB_OFFLINE="1")
    message = result["error"]
    assert message.startswith("FileNotFoundError: ")
    assert f"{REPO}/{CONFIG} is not in the Hugging Face cache ({tmp_path / 'hf' / 'hub'})" in message
    assert "HF_HUB_OFFLINE" in message and ENV_DIR in message and f"folder with {CONFIG}" in message
    assert hub.requests == []  # offline means no request, not a failed one


def test_a_download_whose_sha256_differs_is_refused_and_not_cached(served, tmp_path):
    hub = LocalHub(served, corrupt=True)
    try:
        result = load_in_subprocess(hub, tmp_path / "hf", tmp_path / "run")
    finally:
        hub.stop()
    assert hub.sha256 in result.get("error", "")  # the error names the sha256 it expected
    snapshots = tmp_path / "hf" / "hub" / f"models--{REPO.replace('/', '--')}" / "snapshots"
    assert not list(snapshots.glob(f"*/{WEIGHTS}"))  # else the next load takes it from the cache
