"""``phs annotate``: keep labelled marks on the photos of a folder, list, remove, export and import them.

Coordinates are pixels of the photo as displayed (EXIF orientation applied), ``x`` right, ``y`` down; a box
is ``x0,y0,x1,y1`` (XYXY). Annotations live in the data directory, never in the photo folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "annotate"
HELP = "Keep labelled boxes, points and masks on photos; list, remove, export (COCO, labelme, YOLO) and import them."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The actions ``add``, ``list``, ``remove``, ``export``, ``import``, ``labels``."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = sub.add_parser("add", help="save a mark with a label")
    a.add_argument("--folder", type=Path, required=True, help="the photo folder")
    a.add_argument("--image", type=Path, required=True, help="the photo (inside the folder, or relative to it)")
    a.add_argument("--box", metavar="X0,Y0,X1,Y1", help="a box (XYXY pixels)")
    a.add_argument("--point", action="append", default=[], metavar="X,Y", help="a click on the object (repeatable)")
    a.add_argument("--negative-point", action="append", default=[], metavar="X,Y",
                   help="a click on what is not the object (repeatable, with --point)")
    a.add_argument("--mask", type=Path, help="a mask image of the photo's size, white (non-zero) on the object")
    a.add_argument("--label", required=True, help="the label")
    a.add_argument("--json", action="store_true", help="print the saved annotation as JSON")
    ls = sub.add_parser("list", help="list annotations")
    ls.add_argument("--folder", type=Path, required=True)
    ls.add_argument("--image", type=Path, help="only this photo")
    ls.add_argument("--label", help="only this label")
    ls.add_argument("--json", action="store_true", help="print a JSON list")
    rm = sub.add_parser("remove", help="remove annotations by id, or all of a photo and/or label")
    rm.add_argument("--folder", type=Path, required=True)
    rm.add_argument("--id", type=int, action="append", default=[], help="annotation id (repeatable)")
    rm.add_argument("--image", type=Path, help="every annotation of this photo")
    rm.add_argument("--label", help="every annotation with this label")
    ex = sub.add_parser("export", help="export to COCO, labelme or YOLO")
    ex.add_argument("--folder", type=Path, required=True)
    ex.add_argument("--format", choices=("coco", "labelme", "yolo"), required=True)
    ex.add_argument("--out", type=Path, required=True, help="COCO: the JSON file; labelme, YOLO: a folder")
    ex.add_argument("--allow-library-folder", action="store_true",
                    help="allow writing inside a photo folder (refused by default)")
    im = sub.add_parser("import", help="import a COCO file, a labelme file or a folder of labelme files")
    im.add_argument("--folder", type=Path, required=True, help="the photo folder the file's images are in")
    im.add_argument("source", type=Path, metavar="FILE_OR_DIR")
    lb = sub.add_parser("labels", help="list labels with colours and counts; rename or delete one")
    lb.add_argument("--rename", nargs=2, metavar=("OLD", "NEW"))
    lb.add_argument("--delete", metavar="LABEL", help="delete a label and its annotations")
    lb.add_argument("--color", nargs=2, metavar=("LABEL", "#RRGGBB"), help="set a label's colour")
    lb.add_argument("--json", action="store_true")


def _shape(args: argparse.Namespace):
    """The one shape the options describe."""
    import numpy as np

    from core.annotations.shapes import Shape
    from core.cli.commands.search import _numbers
    from core.errors import PromptError

    given = sum(bool(v) for v in (args.box, args.point, args.mask))
    if given != 1 or (args.negative_point and not args.point):
        raise PromptError("Give exactly one of --box, --point (with optional --negative-point) or --mask.")
    if args.box:
        return Shape.from_box(*_numbers(args.box, 4, "--box"))
    if args.point:
        pts = [_numbers(p, 2, "--point") for p in args.point] + [_numbers(p, 2, "--negative-point") for p in args.negative_point]
        signs = [True] * len(args.point) + [False] * len(args.negative_point)
        return Shape("points", points=np.asarray(pts), positive=np.asarray(signs))
    from core.imageio import load_image

    return Shape("mask", mask=np.asarray(load_image(args.mask).convert("L")) > 127)


def _folder(args: argparse.Namespace) -> Path:
    from core.errors import PHSError

    if not args.folder.is_dir():
        raise PHSError(f"The photo folder {args.folder} does not exist (moved, renamed or unplugged?).")
    return args.folder.expanduser().resolve()


def _print(anns: list, as_json: bool) -> None:
    if as_json:
        print(json.dumps([a.to_json() for a in anns], indent=1))
        return
    for a in anns:
        box = ",".join(f"{v:.0f}" for v in a.shape.bbox())
        flag = "  (photo changed)" if a.stale else ""
        print(f"{a.id:6d}  {a.label:<20s} {a.shape.kind:<6s} {box:<20s} {a.origin:<8s} {a.photo.path}{flag}")


def run(args: argparse.Namespace) -> int:
    """Dispatch the action."""
    from core.annotations.store import AnnotationStore, Photo

    with AnnotationStore() as store:
        if args.action == "labels":
            return _labels(store, args)
        folder = _folder(args)
        if args.action == "add":
            shape = _shape(args)
            photo = Photo.open(folder, args.image)
            if shape.kind == "mask" and shape.mask.shape != (photo.size[1], photo.size[0]):
                from core.errors import PromptError

                raise PromptError(f"The mask is {shape.mask.shape[1]}x{shape.mask.shape[0]}, the photo "
                                  f"{photo.size[0]}x{photo.size[1]}; draw it at the photo's size.")  # fmt: skip
            ann = store.add(photo, shape, args.label)
            _print([ann], args.json) if args.json else print(f"saved annotation {ann.id} ({ann.label}) on {photo.path}")
        elif args.action == "list":
            if args.image is not None:
                anns = store.for_photo(Photo.open(folder, args.image))
                anns = [a for a in anns if args.label is None or a.label == args.label]
            else:
                anns = store.list(folder=folder, label=args.label)
            _print(anns, args.json)
        elif args.action == "remove":
            _remove(store, folder, args)
        elif args.action == "export":
            from core.annotations.formats import export

            r = export(store, args.format, args.out, folder=folder, allow_library=args.allow_library_folder)
            skipped = f"; {r['skipped_points']} point marks have no {args.format} form" if r["skipped_points"] else ""
            print(f"exported {r['annotations']} annotations of {r['images']} photos to {r['out']}{skipped}")
        elif args.action == "import":
            from core.annotations.importers import import_file

            added = import_file(store, folder, args.source)
            print(f"imported {len(added)} annotations on {len({a.photo.path for a in added})} photos")
    return 0


def _remove(store, folder: Path, args: argparse.Namespace) -> None:
    from core.annotations.store import Photo
    from core.errors import PHSError

    if not (args.id or args.image or args.label):
        raise PHSError("Say what to remove: --id, --image and/or --label.")
    path = Photo.open(folder, args.image).path if args.image is not None else None
    targets = store.list(folder=folder, path=path, label=args.label)
    if args.id:
        targets = [a for a in targets if a.id in set(args.id)]
        missing = sorted(set(args.id) - {a.id for a in targets})
        if missing:
            raise PHSError(f"No annotation {', '.join(map(str, missing))} in {folder}; see `phs annotate list`.")
    removed = store.remove([a.id for a in targets])
    print(f"removed {len(removed)} annotations")


def _labels(store, args: argparse.Namespace) -> int:
    if args.rename:
        store.rename_label(*args.rename)
    if args.color:
        if args.color[0] not in {lb.name for lb in store.labels()}:
            from core.errors import PHSError

            raise PHSError(f"There is no label named '{args.color[0]}'.")
        store.set_label(*args.color)
    if args.delete:
        removed = store.delete_label(args.delete)
        print(f"deleted label {args.delete} and its {len(removed)} annotations")
    labels = store.labels()
    if args.json:
        print(json.dumps([{"name": lb.name, "color": lb.color, "count": lb.count} for lb in labels], indent=1))
    else:
        for lb in labels:
            print(f"{lb.color}  {lb.count:6d}  {lb.name}")
    return 0
