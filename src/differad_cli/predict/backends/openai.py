"""The ``openai`` backend: any OpenAI-compatible chat/completions endpoint (vLLM, SGLang, LMDeploy, ...).

Both images travel inline as base64 PNG data URLs in ``image_url`` content parts, reference first. Only the
stdlib (urllib + a thread pool) is used: httpx and the ``openai`` package bound each phase (connect, each
read) but not a request's total time either, so a deadline watchdog would be needed over them too, and
urllib keeps the package free of another dependency. Each request has a total deadline (``timeout``, connect
+ all reads) and a size cap (MAX_RESPONSE_BYTES). Transient failures (connection refused, timeouts, HTTP 429
and 5xx, replies broken mid-way or not HTTP at all) are retried with exponential backoff a bounded number of
times, then reported as one clear error; other HTTP errors (bad key, unknown model) fail at once. A reply
that is not a chat completion, or an answer without a box, becomes an invalid prediction, never a crash.

Coordinates: a remote model's family cannot be read from a config, so the user names it (``family``). The
default is ``qwen3_vl`` (0-1000 normalized): the paper's deployed model is a Qwen3-VL, and the normalized
convention does not depend on the server's resize settings. For ``qwen2_5_vl`` the resized size is computed
with Qwen's rule from ``min_pixels``/``max_pixels``, which must match the server's image processor
(defaults: Qwen2.5-VL's published 3136 / 12845056).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from differad_cli.core import console
from differad_cli.core.coords import check_family, smart_resize
from differad_cli.core.errors import BadInput
from differad_cli.core.images import SizedReference, encode_png, load_rgb
from differad_cli.core.records import Pair, Prediction
from differad_cli.protocol.parsing import parse_prediction
from differad_cli.protocol.prompts import build_messages

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_BACKOFF_S = 10.0
MAX_TEXT = 4000  # keep at most this much of a garbage reply in the prediction record


MAX_RESPONSE_BYTES = 16 * 1024 * 1024  # a chat completion is a few KB; more is a broken or hostile server


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """urllib would re-send the Authorization header to wherever a redirect points: follow none."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


class _Deadline:
    """One request's total deadline (connect + every read). Socket timeouts bound each read alone, so a
    server dripping a byte a second could hold a request for ever; at the deadline the socket is shut down,
    which ends any blocked read at once."""

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def attach(self, sock: socket.socket | None) -> None:
        with self._lock:
            if sock is not None:
                self._socks.append(sock)
            if self.expired:
                self._shut()

    def _fire(self) -> None:
        with self._lock:
            self.expired = True
            self._shut()

    def _shut(self) -> None:
        for sock in self._socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        self._timer.cancel()


def _opener(deadline: _Deadline) -> urllib.request.OpenerDirector:
    """urllib (proxies, HTTPS defaults) with connections that report their socket to ``deadline``."""

    def tracked(base: type[http.client.HTTPConnection]) -> type[http.client.HTTPConnection]:
        class Conn(base):  # type: ignore[misc, valid-type]
            def connect(self) -> None:
                super().connect()
                deadline.attach(self.sock)

        return Conn

    class HTTP(urllib.request.HTTPHandler):
        def http_open(self, req):  # type: ignore[no-untyped-def]
            return self.do_open(tracked(http.client.HTTPConnection), req)

    class HTTPS(urllib.request.HTTPSHandler):
        def https_open(self, req):  # type: ignore[no-untyped-def]
            return self.do_open(tracked(http.client.HTTPSConnection), req, context=self._context)

    return urllib.request.build_opener(_NoRedirect, HTTP, HTTPS)


def _read_capped(resp: http.client.HTTPResponse, url: str) -> bytes:
    """The whole body, refusing one larger than MAX_RESPONSE_BYTES (a 50 MB answer is not an answer)."""
    buf = bytearray()
    while chunk := resp.read(65536):
        buf += chunk
        if len(buf) > MAX_RESPONSE_BYTES:
            raise EndpointError(
                f"endpoint {url} sent a reply over {MAX_RESPONSE_BYTES // (1024 * 1024)} MB; refusing it"
            )
    if resp.length:  # the connection closed before Content-Length bytes came
        raise http.client.IncompleteRead(bytes(buf), resp.length)
    return bytes(buf)


# Qwen2.5-VL's published image-processor limits (preprocessor_config.json), what a stock server uses
QWEN25_MIN_PIXELS = 56 * 56  # 3136
QWEN25_MAX_PIXELS = 28 * 28 * 16384  # 12845056


class EndpointError(BadInput):
    """The endpoint is down, too slow or refuses the request: one line, exit code 2."""


@dataclass
class OpenAIConfig:
    endpoint: str = field(
        metadata={"help": "Base URL (http://host:8000/v1) or the full chat/completions URL."}
    )
    model: str = field(metadata={"help": "Model name the server serves."})
    api_key: str | None = field(default=None, metadata={"help": "Bearer key; default: env OPENAI_API_KEY."})
    family: str = field(default="qwen3_vl", metadata={"help": "Coordinate convention of the served model."})
    template: str = field(default="differad", metadata={"help": "Prompt template (prompts.TEMPLATES)."})
    max_tokens: int = field(default=256, metadata={"help": "Longest answer, in tokens."})
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy (reproducible)."})
    seed: int = field(default=0, metadata={"help": "Sent as the request's seed (servers that honour it)."})
    timeout: float = field(default=60.0, metadata={"help": "Seconds per request before it counts as failed."})
    retries: int = field(default=3, metadata={"help": "Retries of a transient failure (then an error)."})
    backoff: float = field(default=0.5, metadata={"help": "First retry delay in seconds; doubles each time."})
    concurrency: int = field(default=4, metadata={"help": "Requests in flight at once."})
    min_pixels: int = field(
        default=QWEN25_MIN_PIXELS, metadata={"help": "Server processor's min_pixels (qwen2_5_vl only)."}
    )
    max_pixels: int = field(
        default=QWEN25_MAX_PIXELS, metadata={"help": "Server processor's max_pixels (qwen2_5_vl only)."}
    )


def chat_url(endpoint: str) -> str:
    """Accept a base URL (``.../v1``) or a full ``.../chat/completions`` URL."""
    parsed = urllib.parse.urlparse(endpoint)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise BadInput(f"--endpoint must be an http(s) URL, got '{endpoint}'")
    path = parsed.path.rstrip("/")
    if not path.endswith("/chat/completions"):
        path = path + ("/chat/completions" if path.endswith("/v1") else "/v1/chat/completions")
    return urllib.parse.urlunparse(parsed._replace(path=path))


def data_url(img: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(encode_png(img, level=1)).decode("ascii")


def completion_content(body: bytes) -> str | None:
    """The first choice's text of a chat completion, or None when the body is not one."""
    try:
        obj = json.loads(body)
        content = obj["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError, RecursionError):
        return None
    if isinstance(content, list):  # some servers return content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else None


class OpenAIBackend:
    def __init__(self, cfg: OpenAIConfig):
        if not cfg.model:
            raise BadInput("--backend openai needs --model NAME (the model name the server serves)")
        check_family(cfg.family)
        build_messages(cfg.template)  # unknown template -> BadInput before any request
        if cfg.min_pixels <= 0 or cfg.max_pixels < cfg.min_pixels:
            got = f"{cfg.min_pixels}/{cfg.max_pixels}"
            raise BadInput(f"--min-pixels/--max-pixels must satisfy 0 < min <= max, got {got}")
        self.cfg = cfg
        self.url = chat_url(cfg.endpoint)
        self.api_key = cfg.api_key or os.environ.get("OPENAI_API_KEY")

    def _payload(self, ref_url: str, tgt_url: str) -> bytes:
        """The request body. Everything before the target image is the same bytes for every target against
        one reference (model, the message's start, the reference image's data URL), so servers with prefix
        caching (vLLM) reuse the reference's work; the instruction follows the images, as in training."""
        urls = iter([ref_url, tgt_url])
        messages = build_messages(self.cfg.template)
        for msg in messages:
            msg["content"] = [
                {"type": "image_url", "image_url": {"url": next(urls)}}
                if part.get("type") == "image"
                else part
                for part in msg["content"]
            ]
        body = {
            "model": self.cfg.model,
            "messages": messages,
            "max_tokens": self.cfg.max_tokens,
            "temperature": self.cfg.temperature,
            "seed": self.cfg.seed,
        }
        return json.dumps(body).encode("utf-8")

    def _post(self, payload: bytes) -> bytes:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        attempts = self.cfg.retries + 1
        last = ""
        for attempt in range(attempts):
            if attempt:
                delay = min(self.cfg.backoff * 2 ** (attempt - 1), MAX_BACKOFF_S)
                console.debug(f"retry {attempt}/{self.cfg.retries} in {delay:.1f}s: {last}")
                time.sleep(delay)
            req = urllib.request.Request(self.url, data=payload, headers=headers, method="POST")
            deadline = _Deadline(self.cfg.timeout)
            try:
                with _opener(deadline).open(req, timeout=self.cfg.timeout) as resp:
                    body = _read_capped(resp, self.url)
                if not deadline.expired:
                    return body
                last = f"no answer within {self.cfg.timeout:g}s"
            except EndpointError:
                raise
            except urllib.error.HTTPError as e:
                if 300 <= e.code < 400:
                    raise EndpointError(
                        f"endpoint {self.url} redirects (HTTP {e.code} to {e.headers.get('Location')}); "
                        "redirects are not followed (the API key would travel with them): use the final URL"
                    ) from None
                detail = e.read(300).decode("utf-8", "replace").strip()
                last = f"HTTP {e.code} {e.reason}" + (f": {detail}" if detail else "")
                if e.code not in RETRY_STATUS:
                    raise EndpointError(f"endpoint {self.url} refused the request: {last}") from None
            except TimeoutError:
                last = f"no answer within {self.cfg.timeout:g}s"
            except http.client.HTTPException as e:  # IncompleteRead, BadStatusLine, ...: a broken reply
                last = f"bad HTTP reply ({type(e).__name__}: {e})"
            except urllib.error.URLError as e:
                reason = e.reason
                last = (
                    f"no answer within {self.cfg.timeout:g}s"
                    if isinstance(reason, (TimeoutError, socket.timeout))
                    else f"cannot connect ({reason})"
                )
            except (ConnectionError, OSError) as e:
                last = f"connection failed ({e})"
            finally:
                deadline.cancel()
            if deadline.expired:
                last = f"no answer within {self.cfg.timeout:g}s"
        raise EndpointError(f"endpoint {self.url} failed after {attempts} attempt(s): {last}")

    def _resized(self, width: int, height: int) -> tuple[int, int] | None:
        if self.cfg.family != "qwen2_5_vl":
            return None
        return smart_resize(height, width, min_pixels=self.cfg.min_pixels, max_pixels=self.cfg.max_pixels)

    def predict_arrays(
        self, pid: str, ref: np.ndarray, tgt: np.ndarray, ref_url: str | None = None
    ) -> Prediction:
        """One answer; ``ref_url``: the reference already encoded (line mode encodes it once)."""
        height, width = tgt.shape[:2]
        body = self._post(self._payload(ref_url or data_url(ref), data_url(tgt)))
        content = completion_content(body)
        if content is None:
            console.warn(f"{pid}: the endpoint's reply is not a chat completion; recorded as invalid")
            return Prediction(pid, (0, 0, 0, 0), False, body[:MAX_TEXT].decode("utf-8", "replace"))
        box, valid = parse_prediction(content, self.cfg.family, width, height, self._resized(width, height))
        return Prediction(pid, box, valid, content)

    def with_reference(self, ref: Path, image: np.ndarray | None = None) -> Callable[[Pair], Prediction]:
        """Line mode: the reference decoded once and encoded once per target size (resized to it, as in
        one-pair mode); every request then carries the same data URL string, byte for byte."""
        reference = SizedReference(ref, image)
        urls: dict[tuple[int, int], str] = {}

        def answer(pair: Pair) -> Prediction:
            tgt = load_rgb(pair.tgt)
            size = (tgt.shape[0], tgt.shape[1])
            if size not in urls:
                urls[size] = data_url(reference.at(*size))
            return self.predict_arrays(pair.id, reference.at(*size), tgt, ref_url=urls[size])

        return answer

    def _indexed(self, pairs: list[Pair]) -> Iterator[tuple[int, Prediction]]:
        """(position, prediction) as each answer arrives. After a failure no new request starts, the answers
        already in flight are still yielded, then the first error is raised: nothing received is lost."""
        from differad_cli.core.images import load_pair_images

        def one(pair: Pair) -> Prediction:
            ref, tgt = load_pair_images(pair.ref, pair.tgt)
            return self.predict_arrays(pair.id, ref, tgt)

        if len(pairs) <= 1 or self.cfg.concurrency <= 1:
            for i, p in enumerate(pairs):
                yield i, one(p)
            return
        error: BaseException | None = None
        with ThreadPoolExecutor(max_workers=self.cfg.concurrency) as pool:
            futures = {pool.submit(one, p): i for i, p in enumerate(pairs)}
            for fut in as_completed(futures):
                if fut.cancelled():
                    continue
                try:
                    pred = fut.result()
                except Exception as e:
                    if error is None:
                        error = e
                        for other in futures:
                            other.cancel()
                    continue
                yield futures[fut], pred
        if error is not None:
            raise error

    def predict_iter(self, pairs: list[Pair]) -> Iterator[Prediction]:
        """Each prediction the moment its answer arrives (completion order)."""
        for _, pred in self._indexed(pairs):
            yield pred

    def predict(self, pairs: list[Pair]) -> list[Prediction]:
        got = dict(self._indexed(pairs))
        return [got[i] for i in range(len(pairs))]
