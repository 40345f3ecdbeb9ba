"""Multi-process runs: re-execute the current command through ``accelerate launch``.

Multi-GPU and multi-node training (DeepSpeed ZeRO-2/3) are accelerate's and DeepSpeed's job; differad only
builds the launcher's argv. The user's process checks every input first (``train.common.check_inputs``)
and says why it relaunches; it then becomes a small relay (``python -m differad_cli.train.launch``) that
runs the launcher and passes its output through, so bad input found in the workers is still one line and
exit 2 (not one line per worker and torch-elastic's traceback). An environment guard stops the relaunched
processes from relaunching again.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

from differad_cli.core.errors import EXIT_BAD_INPUT, BadInput

ENV_GUARD = "DIFFERAD_LAUNCHED"
# a worker's bad-input line, possibly behind a launcher prefix such as "[rank1]: "
_CHILD_ERROR = re.compile(r"^(?:\[[^\]]*\]:?\s*)*differad: error: (.*)$")
# where the launcher starts reporting a failed worker (torch elastic, accelerate's CalledProcessError)
_LAUNCHER_FAILURE = re.compile(r"^Traceback \(most recent call last\)|ChildFailedError|elastic.*exitcode")


def should_relaunch(num_processes: int | None, accelerate_config: str | os.PathLike[str] | None) -> bool:
    """True in the user's process when more than one process or an accelerate config is asked for (never
    inside a launcher: the relaunched workers, or a run the user started with ``accelerate launch``)."""
    if os.environ.get(ENV_GUARD) == "1" or "LOCAL_RANK" in os.environ:
        return False
    return bool(accelerate_config) or (num_processes or 1) > 1


def launch_request(
    recipe: str | os.PathLike[str] | None, options: dict[str, Any]
) -> tuple[int | None, str | None, str] | None:
    """(num_processes, accelerate_config, the one line saying why) when the command must run under
    accelerate; None when it runs here. Options override the recipe."""
    from differad_cli.train.configs import load_recipe

    rec = load_recipe(recipe)
    n = options.get("num_processes")
    acc = options.get("accelerate_config")
    from_recipe = (n is None and rec.get("num_processes") is not None) or (
        acc is None and rec.get("accelerate_config") is not None
    )
    n = rec.get("num_processes") if n is None else n
    acc = rec.get("accelerate_config") if acc is None else acc
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise BadInput(f"num_processes must be a whole number >= 1, got {n!r}")
    if acc is not None and not isinstance(acc, (str, os.PathLike)):
        raise BadInput(f"accelerate_config must be a file path, got {acc!r}")
    if not should_relaunch(n, acc):
        return None
    asked = [f"{n} processes"] if (n or 1) > 1 else []
    asked += [f"accelerate config {acc}"] if acc else []
    who = f"recipe {recipe}" if from_recipe else "the command line"
    return n, acc, f"{who} asks for {' and '.join(asked)}; relaunching via accelerate"


def launch_argv(
    command_argv: Sequence[str],
    *,
    num_processes: int | None,
    accelerate_config: str | os.PathLike[str] | None,
    python: str | None = None,
) -> list[str]:
    """``python -m accelerate.commands.launch [--config_file F] [--num_processes N] -m differad_cli ARGS``."""
    if num_processes is not None and num_processes < 1:
        raise BadInput(f"--num-processes must be >= 1, got {num_processes}")
    cmd = [python or sys.executable, "-m", "accelerate.commands.launch"]
    if accelerate_config:
        cfg = Path(accelerate_config)
        if not cfg.is_file():
            raise BadInput(f"accelerate config not found: {cfg}")
        cmd += ["--config_file", str(cfg)]
    if num_processes is not None:
        cmd += ["--num_processes", str(num_processes)]
    return [*cmd, "-m", "differad_cli", *command_argv]


def relaunch(
    command_argv: Sequence[str],
    *,
    num_processes: int | None,
    accelerate_config: str | os.PathLike[str] | None,
    why: str = "relaunching via accelerate",
) -> NoReturn:
    """Replace this process by the relay running the accelerate launcher with the same differad command."""
    from differad_cli.core import console

    argv = launch_argv(command_argv, num_processes=num_processes, accelerate_config=accelerate_config)
    console.info(why)
    console.debug("relaunching: " + " ".join(argv))
    env = {**os.environ, ENV_GUARD: "1"}
    sys.stdout.flush()
    sys.stderr.flush()
    relay_argv = [sys.executable, "-m", "differad_cli.train.launch", *argv]
    os.execvpe(relay_argv[0], relay_argv, env)


class StderrFilter:
    """The launcher's stderr, passed through as it comes (progress bars redraw in place), except what would
    bury a bad-input line: the workers' ``differad: error:`` lines (kept once each) and everything after
    them or after the launcher's failure report (held; shown only when the run failed for another reason)."""

    def __init__(self, out: BinaryIO) -> None:
        self.out, self.buf = out, b""
        self.errors: list[str] = []
        self.held: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        *lines, self.buf = (self.buf + chunk).split(b"\n")
        for line in lines:
            self._line(line + b"\n")
        if not (self.errors or self.held) and b"\r" in self.buf:
            cut = self.buf.rindex(b"\r") + 1
            self._write(self.buf[:cut])
            self.buf = self.buf[cut:]

    def close(self) -> None:
        if self.buf:
            self._line(self.buf)
            self.buf = b""

    def _line(self, line: bytes) -> None:
        body = line.rstrip(b"\r\n")
        redrawn, cr, last = body.rpartition(b"\r")  # progress-bar redraws before the line proper
        if cr and not (self.errors or self.held):
            self._write(redrawn + cr)
            line = line[len(redrawn + cr) :]
        text = last.decode("utf-8", "replace")
        m = _CHILD_ERROR.match(text)
        if m:
            if m.group(1) not in self.errors:
                self.errors.append(m.group(1))
        elif self.errors or self.held or _LAUNCHER_FAILURE.search(text):
            self.held.append(line)
        else:
            self._write(line)

    def _write(self, data: bytes) -> None:
        self.out.write(data)
        self.out.flush()


def _stderr_channel() -> tuple[int, int]:
    """(read end, write end) for the launcher's stderr: a pseudo-terminal of our terminal's size when our
    stderr is one (the workers keep their progress bars), else a pipe."""
    if sys.stderr.isatty():
        try:
            import fcntl
            import pty
            import termios

            read_fd, write_fd = pty.openpty()
            size = fcntl.ioctl(sys.stderr.fileno(), termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(write_fd, termios.TIOCSWINSZ, size)
            return read_fd, write_fd
        except (ImportError, OSError):
            pass
    return os.pipe()


def relay(argv: Sequence[str]) -> int:
    """Run the launcher ``argv``; its exit code, or 2 with one ``differad: error:`` line when workers
    stopped on bad input."""
    read_fd, write_fd = _stderr_channel()
    try:
        proc = subprocess.Popen(list(argv), stderr=write_fd)
    except OSError as e:
        print(f"differad: error: cannot start {argv[0]}: {e.strerror or e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        os.close(write_fd)
    filt = StderrFilter(sys.stderr.buffer)
    try:
        while True:
            try:
                chunk = os.read(read_fd, 1 << 16)
            except OSError:  # EIO: the last writer of the pseudo-terminal is gone
                chunk = b""
            if not chunk:
                break
            filt.feed(chunk)
        rc = proc.wait()
    except KeyboardInterrupt:  # the launcher got the same Ctrl-C and stops its workers
        proc.wait()
        print("differad: interrupted", file=sys.stderr)
        return 130
    finally:
        os.close(read_fd)
    filt.close()
    if rc != 0 and filt.errors:
        print(f"differad: error: {filt.errors[0]}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for line in filt.held:
        sys.stderr.buffer.write(line)
    for message in filt.errors:
        print(f"differad: error: {message}", file=sys.stderr)
    sys.stderr.flush()
    return rc if rc >= 0 else 128 - rc


if __name__ == "__main__":
    sys.exit(relay(sys.argv[1:]))
