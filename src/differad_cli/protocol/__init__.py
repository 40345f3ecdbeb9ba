"""The model-facing text: prompt templates, the one answer parser, difference descriptions.

Imports only ``core``; training, prediction and evaluation all speak to models through this package.
"""
