"""Endpoint faults: received answers survive a server failing mid-run, a total deadline per request, a
response size cap, and range checks of the numeric options."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cli_helpers import run_cli
from differad_cli.predict.backends.openai import EndpointError, OpenAIBackend, OpenAIConfig

ANSWER = json.dumps({"choices": [{"message": {"content": "<answer>(100,200),(500,600)</answer>"}}]}).encode()


class State:
    def __init__(self) -> None:
        self.ok_requests = 3  # answer this many, then refuse (HTTP 401: not retried)
        self.served = 0
        self.lock = threading.Lock()


def _handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            kind = self.path.strip("/").split("/")[0]
            try:
                if kind == "drip":  # headers, then one byte every 0.2 s for 6 s
                    self.send_response(200)
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    for _ in range(30):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(0.2)
                    return
                if kind == "huge":
                    body = b" " * (17 * 1024 * 1024)
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                with state.lock:
                    state.served += 1
                    ok = state.served <= state.ok_requests
                if not ok:
                    time.sleep(0.3)  # the answers in flight arrive first
                code, body = (200, ANSWER) if ok else (401, b'{"error": "key revoked"}')
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, State]]:
    state = State()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    httpd.shutdown()
    httpd.server_close()


def test_answers_survive_a_server_failing_mid_run(synth_pairs, server, tmp_path, monkeypatch) -> None:
    url, state = server
    out = tmp_path / "pred.jsonl"
    args = ["predict", "--pairs", synth_pairs, "--out", out, "--endpoint", f"{url}/v1", "--model", "m"]
    args += ["--concurrency", 2, "--retries", 0, "-q"]
    assert run_cli(monkeypatch, *args) == 2
    part = tmp_path / ".pred.jsonl.partial"
    kept = [json.loads(line) for line in part.read_text().splitlines()[1:]]
    assert len(kept) >= 3 and all(row["valid"] for row in kept)
    state.ok_requests, state.served = 10**6, 0
    assert run_cli(monkeypatch, *args) == 0
    assert state.served == 12 - len(kept)  # the resumed run asked only for the missing ones
    assert len(out.read_text().splitlines()) == 12


def _backend(url: str, **kw: object) -> OpenAIBackend:
    return OpenAIBackend(OpenAIConfig(endpoint=url, model="m", retries=0, **kw))  # type: ignore[arg-type]


def test_a_dripping_server_cannot_hold_a_request_past_the_timeout(server, synth_pairs) -> None:
    from differad_cli.core.records import read_pairs

    url, _ = server
    pair = read_pairs(synth_pairs)[0]
    start = time.monotonic()
    with pytest.raises(EndpointError, match=r"no answer within 1s"):
        _backend(f"{url}/drip/v1", timeout=1.0).predict([pair])
    assert time.monotonic() - start < 3.0


def test_a_huge_reply_is_refused(server, synth_pairs) -> None:
    from differad_cli.core.records import read_pairs

    url, _ = server
    with pytest.raises(EndpointError, match="over 16 MB"):
        _backend(f"{url}/huge/v1", timeout=20.0).predict([read_pairs(synth_pairs)[0]])


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--timeout", -1), ("--timeout", 0), ("--timeout", "nan"), ("--retries", -1), ("--concurrency", -5),
     ("--max-new-tokens", 0), ("--batch-size", 0)],
)  # fmt: skip
def test_numeric_options_out_of_range_exit_2(synth_pairs, tmp_path, monkeypatch, capsys, flag, value) -> None:
    out = tmp_path / "p.jsonl"
    assert run_cli(monkeypatch, "predict", "--pairs", synth_pairs, "--out", out, flag, value) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0] and not out.exists()
