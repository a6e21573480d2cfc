"""Annotations: labelled marks on photos, kept in the data directory, exported to COCO, labelme and YOLO.

:mod:`core.annotations.shapes` (boxes, signed points, masks), :mod:`core.annotations.store` (the SQLite store),
:mod:`core.annotations.formats` (export) and :mod:`core.annotations.importers` (COCO and labelme import).
"""
