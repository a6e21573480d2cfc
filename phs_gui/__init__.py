"""PHS desktop's window (PySide6): the query canvas, the heads panel, controls, results and the library.

Everything here is display and interaction; the method, the index and the errors come from :mod:`core`.
"""
