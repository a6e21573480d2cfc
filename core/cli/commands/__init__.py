"""Sub-commands of the ``phs`` CLI.

Each module in this package defines ``NAME`` (the sub-command), ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. :mod:`core.cli` discovers them, so adding a command
is adding a module.
"""
