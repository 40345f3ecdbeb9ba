"""Stage ``train``: SFT cold start (:func:`train_cold`) and GRPO (:func:`train_rl`) on TRL.

``configs`` declares every option (CLI flags and recipe keys derive from it) and merges defaults < recipe <
CLI; ``common`` runs the checks and setup both commands share; ``data`` builds lazy datasets; ``model`` loads,
freezes and saves; ``callbacks`` routes logs and runs periodic evaluation; ``rewards`` is the flat reward
registry; ``resampling`` holds the pure group logic; ``grpo_trainer`` the TRL subclass; ``launch`` the
accelerate relaunch. Imports ``core``, ``protocol``, ``models`` and (for periodic evaluation) ``eval.metrics``
and ``predict.backends.hf``.
"""

from differad_cli.core.lazy import lazy_exports

__all__ = ["ColdConfig", "RLConfig", "train_cold", "train_rl"]
__getattr__ = lazy_exports(
    __name__, {"ColdConfig": "configs", "RLConfig": "configs", "train_cold": "sft", "train_rl": "grpo"}
)
