"""Qwen-VL checkpoints: ``load`` (models, LoRA adapters and processors, with or without torchvision) and
``tiny`` (the offline tiny models built for CPUs and tests). Imports ``core`` only."""
