"""Multi-process runs: re-execute the current command through ``accelerate launch``.

Multi-GPU and multi-node training (DeepSpeed ZeRO-2/3) are accelerate's and DeepSpeed's job; differad only
builds the launcher's argv. An environment guard stops the relaunched processes from relaunching again.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from differad_cli.core.errors import BadInput

ENV_GUARD = "DIFFERAD_LAUNCHED"


def should_relaunch(num_processes: int | None, accelerate_config: str | os.PathLike[str] | None) -> bool:
    """True in the user's process when more than one process or an accelerate config is asked for."""
    if os.environ.get(ENV_GUARD) == "1":
        return False
    return bool(accelerate_config) or (num_processes or 1) > 1


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
) -> NoReturn:
    """Replace this process by the accelerate launcher running the same differad command."""
    from differad_cli.core import console

    argv = launch_argv(command_argv, num_processes=num_processes, accelerate_config=accelerate_config)
    console.info("relaunching: " + " ".join(argv))
    env = {**os.environ, ENV_GUARD: "1"}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(argv[0], argv, env)
