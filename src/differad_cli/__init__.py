"""differad: reference-guided industrial anomaly localization with vision-language models."""

__version__ = "0.1.0"
