"""Stage ``synth``: synthetic reference/target pairs from defect-free images (paper III-C, Algorithm 1).

Entry: :func:`synthesize` with a :class:`SynthConfig`. ``sample`` is Algorithm 1 for one sample (``geometry``,
``perlin``, ``augment`` and ``procedural`` are its parts); ``run`` schedules samples over workers, resumes
and writes the manifest. Imports ``core`` only.
"""

from differad_cli.core.lazy import lazy_exports

__all__ = ["SynthConfig", "synthesize"]
__getattr__ = lazy_exports(__name__, {"SynthConfig": "config", "synthesize": "run"})
