"""The ``differad`` console script: the typer app (``app``) and one thin module per subcommand.

Only this package imports typer; it parses options into each stage's config and calls the stage's entry.
"""
