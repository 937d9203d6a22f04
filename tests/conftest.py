from __future__ import annotations

from pathlib import Path

import http.server
import threading

import pytest

REALCLIPS = Path(__file__).resolve().parents[2] / "shared" / "realclips"


@pytest.fixture(scope="session")
def realclips() -> Path:
    """../shared/realclips beside the checkout (read-only test data, never copied into the repo)."""
    if not REALCLIPS.is_dir():
        pytest.skip(f"{REALCLIPS} is absent: the real-clip checks need the project's shared/ folder beside the checkout")
    return REALCLIPS


@pytest.fixture(scope="session")
def i3d_kinetics():
    """The real pretrained I3D, fetched and converted on first use (CI fetches it before the tests)."""
    from actionrec import load_model

    return load_model("i3d-kinetics400")


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, i3d_kinetics) -> tuple[Path, Path, Path]:
    """A run trained once per session on a small demo set (4 classes x 9 clips of 24 frames, 2 fine-tuning epochs),
    for every test module that needs a trained run. Its softmax head is forced (``--head-fit softmax``: 2 sources per
    class would get the few-shot head), so the epochs, validation and fine-tuning are there to test; the few-shot
    head's run is tests/test_train.py's `fewshot_run`. Returns (run directory, data folder, feature cache folder).
    Tests must not change them (train into their own --out; the cache may be read and reused)."""
    from actionrec.cli import main
    from actionrec.data.demo import write_demo_dataset

    base = tmp_path_factory.mktemp("demo-run")
    data = write_demo_dataset(base / "demo", clips_per_class=9, frames=24)
    run, cache = base / "run", base / "cache"
    args = ["train", str(data), "--out", str(run), "--cache", str(cache), "--finetune-epochs", "2", "--head-fit", "softmax",
            "--quiet"]
    assert main(args) == 0
    return run, data, cache


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty ACTIONREC_HOME for tests that write weights into the cache."""
    monkeypatch.setenv("ACTIONREC_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


class HTTPHandler(http.server.SimpleHTTPRequestHandler):
    truncate: dict[str, int] = {}

    def log_message(self, *args):
        pass

    def do_GET(self):
        name = self.path.lstrip("/")
        if name in self.truncate:  # announce the whole file, send part of it, hang up
            data = (Path(self.directory) / name).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: self.truncate[name]])
            self.wfile.flush()
            self.connection.close()
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    """A file server on 127.0.0.1 serving tmp_path/www; HTTPHandler.truncate[name] = n cuts that file after n bytes."""
    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a, **k: HTTPHandler(*a, directory=str(root), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    HTTPHandler.truncate.clear()
