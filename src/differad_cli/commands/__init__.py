"""Subcommands: thin wrappers that parse options and call the stage modules."""
