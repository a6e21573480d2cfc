"""PHS desktop core: Qt-free library for prompt-guided attention head selection (PHS).

The main entry point is :class:`core.method.engine.PHSEngine` ("encode once, prompt many").
"""

__version__ = "0.1.0"
