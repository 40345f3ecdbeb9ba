"""The openai backend against stub OpenAI-compatible servers on 127.0.0.1 started by the tests."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from cli_helpers import run_cli
from differad_cli.core.images import load_rgb, save_png
from differad_cli.core.records import Pair
from differad_cli.predict.backends.openai import EndpointError, OpenAIBackend, OpenAIConfig, chat_url

ANSWER = "<think>a stain left of centre</think><answer>(100,200),(500,600)</answer>"


class Stub:
    """Behaviour per URL prefix; records every request it saw."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict, dict]] = []
        self.bodies: list[tuple[str, bytes]] = []  # the raw request bodies, as sent
        self.counts: dict[str, int] = {}
        self.in_flight = 0  # of "busy" requests only
        self.max_in_flight = 0
        self.lock = threading.Lock()


def make_handler(stub: Stub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            payload = json.loads(raw)
            kind = self.path.strip("/").split("/")[0]
            busy = kind == "busy"
            with stub.lock:
                stub.requests.append((self.path, dict(self.headers), payload))
                stub.bodies.append((self.path, raw))
                n = stub.counts[kind] = stub.counts.get(kind, 0) + 1
                stub.in_flight += busy
                stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
            try:
                self._answer(kind, n)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout tests)
            finally:
                with stub.lock:
                    stub.in_flight -= busy

        def _answer(self, kind: str, n: int) -> None:
            content = ANSWER
            if kind == "short" or (kind == "shortfirst" and n == 1):  # body shorter than Content-Length
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self.wfile.write(b'{"choices": ')
                return None
            if kind == "nothttp":  # not an HTTP status line at all
                self.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\n")
                return None
            if kind == "slow" or (kind == "slowfirst" and n == 1):
                time.sleep(0.6)
            if kind == "busy":
                time.sleep(0.05)
            if kind == "flaky" and n <= 2:
                return self._send(503, b'{"error": "loading"}')
            if kind == "auth":
                return self._send(401, b'{"error": "bad key"}')
            if kind == "redirect":  # elsewhere: the client must not re-send the key there
                self.send_response(302)  # urllib would follow a 302 POST as a GET, key included
                self.send_header("Location", "/plain/v1/chat/completions")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            if kind == "notjson":
                return self._send(200, b"<html>proxy error</html>")
            if kind == "garbage":
                content = "I am sorry, I cannot see images."
            if kind == "small":
                content = "<answer>(10,20),(50,40)</answer>"
            if kind == "big":
                content = "<answer>(600,400),(1000,800)</answer>"
            if kind == "parts":
                body = {"choices": [{"message": {"content": [{"type": "text", "text": ANSWER}]}}]}
                return self._send(200, json.dumps(body).encode())
            self._send(
                200,
                json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode(),
            )

    return Handler


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Stub]]:
    stub = Stub()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(stub))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", stub
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def pair(tmp_path: Path) -> Pair:
    rng = np.random.default_rng(0)
    save_png(tmp_path / "r.png", rng.integers(0, 255, (50, 80, 3), dtype=np.uint8))
    save_png(tmp_path / "t.png", rng.integers(0, 255, (50, 80, 3), dtype=np.uint8))
    return Pair("p0", tmp_path / "r.png", tmp_path / "t.png", (0, 0, 0, 0), 0, 80, 50)


def backend(url: str, **kw: object) -> OpenAIBackend:
    cfg = {"endpoint": url, "model": "stub-vl", "retries": 2, "backoff": 0.01, "timeout": 5.0, **kw}
    return OpenAIBackend(OpenAIConfig(**cfg))  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_request_shape_and_box_conversion(server, pair) -> None:
    url, stub = server
    pred = backend(f"{url}/ok/v1", api_key="sekret").predict([pair])[0]
    path, headers, payload = stub.requests[-1]
    assert path == "/ok/v1/chat/completions"
    assert headers["Authorization"] == "Bearer sekret"
    assert payload["model"] == "stub-vl" and payload["temperature"] == 0.0 and payload["seed"] == 0
    parts = payload["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["image_url", "image_url", "text"]  # reference, target, prompt
    for part, path in zip(parts[:2], (pair.ref, pair.tgt), strict=True):
        head, data = part["image_url"]["url"].split(",", 1)
        assert head == "data:image/png;base64"
        sent = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
        np.testing.assert_array_equal(sent[:, :, ::-1], load_rgb(path))
    assert "<answer>" in parts[2]["text"]
    # qwen3_vl default: 0-1000 normalized -> target pixels of the 80x50 image
    assert pred.valid and pred.box == (8, 10, 40, 30) and pred.text == ANSWER


def test_qwen2_5_vl_family_uses_resized_pixels(server, pair) -> None:
    url, _ = server
    pred = backend(f"{url}/small", family="qwen2_5_vl").predict([pair])[0]
    # 80x50 -> smart_resize -> 84x56; (10,20),(50,40) in those pixels -> x * 80/84, y * 50/56
    assert pred.valid and pred.box == (10, 18, 48, 36)
    assert backend(f"{url}/small").predict([pair])[0].box == (1, 1, 4, 2)  # qwen3_vl: 0-1000


def test_content_parts_reply_is_read(server, pair) -> None:
    url, _ = server
    assert backend(f"{url}/parts").predict([pair])[0].box == (8, 10, 40, 30)


def test_garbage_answer_is_an_invalid_prediction(server, pair) -> None:
    url, _ = server
    pred = backend(f"{url}/garbage").predict([pair])[0]
    assert not pred.valid and pred.box == (0, 0, 0, 0) and "cannot see" in (pred.text or "")
    pred = backend(f"{url}/notjson").predict([pair])[0]
    assert not pred.valid and "proxy error" in (pred.text or "")


def test_transient_errors_are_retried(server, pair) -> None:
    url, stub = server
    assert backend(f"{url}/flaky").predict([pair])[0].valid
    assert stub.counts["flaky"] == 3  # two 503s, then success
    pred = backend(f"{url}/slowfirst", timeout=0.3).predict([pair])[0]
    assert pred.valid and stub.counts["slowfirst"] == 2  # first attempt timed out


def test_broken_http_replies_are_transient(server, pair) -> None:
    url, stub = server
    pred = backend(f"{url}/shortfirst").predict([pair])[0]  # IncompleteRead once, then an answer
    assert pred.valid and stub.counts["shortfirst"] == 2
    with pytest.raises(EndpointError, match=r"failed after 2 attempt\(s\): bad HTTP reply.*IncompleteRead"):
        backend(f"{url}/short", retries=1).predict([pair])
    assert stub.counts["short"] == 2
    with pytest.raises(EndpointError, match=r"failed after 2 attempt\(s\): bad HTTP reply.*BadStatusLine"):
        backend(f"{url}/nothttp", retries=1).predict([pair])
    assert stub.counts["nothttp"] == 2


def test_cli_broken_http_reply_exits_2(server, pair, monkeypatch, capsys) -> None:
    url, _ = server
    args = ("predict", pair.ref, pair.tgt, "--endpoint", f"{url}/nothttp", "--model", "m", "--retries", 0)
    assert run_cli(monkeypatch, *args) == 2
    err = capsys.readouterr().err
    assert "failed after 1 attempt(s)" in err and "Traceback" not in err


def test_qwen2_5_vl_pixel_limits_default_to_qwen25_and_reach_the_backend(
    server, tmp_path, monkeypatch, capsys
) -> None:
    from differad_cli.predict.run import PredictOptions, make_backend

    url, _ = server
    save_png(tmp_path / "r.png", np.full((1000, 1200, 3), 90, np.uint8))
    save_png(tmp_path / "t.png", np.full((1000, 1200, 3), 91, np.uint8))
    base = ["predict", tmp_path / "r.png", tmp_path / "t.png", "--endpoint", f"{url}/big", "--model", "m"]
    base += ["--family", "qwen2_5_vl", "--json"]
    # Qwen2.5-VL's processor keeps 1200x1000 at 1204x1008 (max_pixels 12845056): (600,400) -> ~(598,397)
    assert run_cli(monkeypatch, *base) == 0
    assert json.loads(capsys.readouterr().out)["box"] == [598, 397, 997, 794]
    # a server started with max_pixels=1003520 resizes to 1092x896: the same answer is another box
    assert run_cli(monkeypatch, *base, "--max-pixels", 1003520) == 0
    assert json.loads(capsys.readouterr().out)["box"] == [659, 446, 1099, 893]
    opts = PredictOptions(endpoint=url, model="m", family="qwen2_5_vl", min_pixels=1000, max_pixels=5000)
    cfg = make_backend(opts).cfg  # type: ignore[attr-defined]
    assert (cfg.min_pixels, cfg.max_pixels) == (1000, 5000)
    assert (PredictOptions().min_pixels, PredictOptions().max_pixels) == (3136, 12845056)
    assert run_cli(monkeypatch, *base, "--min-pixels", 0) == 2
    assert "--min-pixels" in capsys.readouterr().err


def test_slow_endpoint_clear_error_after_bounded_retries(server, pair) -> None:
    url, stub = server
    with pytest.raises(EndpointError, match=r"failed after 2 attempt\(s\): no answer within 0.2s"):
        backend(f"{url}/slow", timeout=0.2, retries=1).predict([pair])
    assert stub.counts["slow"] == 2


def test_down_endpoint_clear_error(pair) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(EndpointError, match=r"failed after 3 attempt\(s\): cannot connect"):
        backend(url).predict([pair])


def test_refused_request_fails_at_once(server, pair) -> None:
    url, stub = server
    with pytest.raises(EndpointError, match="HTTP 401"):
        backend(f"{url}/auth").predict([pair])
    assert stub.counts["auth"] == 1


def test_redirects_are_not_followed(server, pair) -> None:
    url, stub = server
    before = stub.counts.get("plain", 0)
    with pytest.raises(EndpointError, match="redirects are not followed"):
        backend(f"{url}/redirect", api_key="secret").predict([pair])
    assert stub.counts["redirect"] == 1 and stub.counts.get("plain", 0) == before  # the key went nowhere else


def test_concurrency_is_bounded_and_order_kept(server, tmp_path, pair) -> None:
    url, stub = server
    pairs = [Pair(f"p{i}", pair.ref, pair.tgt, (0, 0, 0, 0), 0, 80, 50) for i in range(8)]
    stub.max_in_flight = 0
    preds = backend(f"{url}/busy", concurrency=3).predict(pairs)
    assert [p.id for p in preds] == [p.id for p in pairs]
    assert 1 < stub.max_in_flight <= 3


def test_bad_config_is_bad_input() -> None:
    from differad_cli.core.errors import BadInput

    with pytest.raises(BadInput, match="http"):
        chat_url("localhost:8000")
    assert chat_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"
    assert chat_url("http://h:1/v1/chat/completions") == "http://h:1/v1/chat/completions"
    with pytest.raises(BadInput, match="family"):
        backend("http://h:1", family="llava")
    with pytest.raises(BadInput, match="--model"):
        backend("http://h:1", model="")


def test_cli_openai_json_and_down_endpoint(server, pair, monkeypatch, capsys) -> None:
    url, _ = server
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    assert (
        run_cli(
            monkeypatch, "predict", pair.ref, pair.tgt, "--endpoint", f"{url}/ok", "--model", "m", "--json"
        )
        == 0
    )
    obj = json.loads(capsys.readouterr().out)
    assert obj["backend"] == "openai" and obj["box"] == [8, 10, 40, 30] and obj["label"] == 1
    down = f"http://127.0.0.1:{free_port()}"
    code = run_cli(
        monkeypatch, "predict", pair.ref, pair.tgt, "--endpoint", down, "--model", "m", "--retries", 0
    )
    err = capsys.readouterr().err
    assert code == 2 and "failed after 1 attempt(s)" in err and "Traceback" not in err


def test_line_mode_requests_share_the_reference_prefix_byte_for_byte(
    server, tmp_path: Path, monkeypatch, capsys
) -> None:
    """vLLM's prefix caching reuses a request's start: for one reference, every request is the same bytes up
    to the target image (reference first, encoded once, the same data URL string), and differs after."""
    import differad_cli.predict.backends.openai as oa

    url, stub = server
    rng = np.random.default_rng(3)
    save_png(tmp_path / "golden.png", rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
    for i in range(3):
        save_png(tmp_path / f"t{i}.png", rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
    encoded: list[str] = []
    real = oa.data_url
    monkeypatch.setattr(oa, "data_url", lambda img: encoded.append(real(img)) or encoded[-1])
    targets = [tmp_path / f"t{i}.png" for i in range(3)]
    args = ["predict", "--ref", tmp_path / "golden.png", *targets, "--endpoint", f"{url}/prefix/v1"]
    assert run_cli(monkeypatch, *args, "--model", "stub-vl") == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    bodies = [raw for path, raw in stub.bodies if path.startswith("/prefix/")]
    assert len(bodies) == 3 and len(encoded) == 4  # the reference encoded once, each target once
    ref_url = real(load_rgb(tmp_path / "golden.png")).encode()
    marker = b'"data:image/png;base64,'
    for body, tgt in zip(bodies, targets, strict=True):
        first = body.index(marker)
        second = body.index(marker, first + 1)
        assert body[first + 1 :].startswith(ref_url)  # the reference comes first
        assert body[second + 1 :].startswith(real(load_rgb(tgt)).encode())
    start = bodies[0].index(marker, bodies[0].index(marker) + 1) + len(marker)
    for other in bodies[1:]:
        shared = next(i for i, (a, b) in enumerate(zip(bodies[0], other, strict=False)) if a != b)
        assert start <= shared < bodies[0].index(b'"', start)  # the same up to the target, which differs
