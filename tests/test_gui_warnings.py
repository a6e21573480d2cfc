"""What a search learns about its index reaches the window: Query-DB cache rows that fail their checksums are
left out of the re-rank, and the banner says how many and why, as ``phs search`` does on stderr; a search
that leaves nothing out withdraws the sentence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.library import PhotoIndex, index_folder
from core.library import store as st
from core.method.engine import load_engine
from core.synthetic.gallery import demo_gallery_dir
from core.synthetic.scenes import generate_scene
from tests.gui_driver import WAIT_MS, WindowDriver, first_launch

pytestmark = pytest.mark.gui


def test_scrambled_query_db_rows_are_said_in_the_banner(qtbot, tmp_path):
    folder = tmp_path / "holiday"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(generate_scene(51, i, (128, 96)).image).save(folder / f"h{i}.jpg")
    engine = load_engine("demo", device="cpu")
    report = index_folder(folder, engine)
    with PhotoIndex.open(folder, engine) as idx:
        rows, row_bytes = {r.rel: r for r in idx.db.records()}, idx.qd.row_bytes
    engine.close()
    victims = ["h1.jpg", "h4.jpg"]
    with open(report.index_dir / st.QD_FILE, "r+b") as fh:  # finite values, not the photos' own
        for i, rel in enumerate(victims):
            fh.seek(rows[rel].slot * row_bytes)
            fh.write(np.random.default_rng(i).normal(size=row_bytes // 2).astype(np.float16).tobytes())

    w = first_launch(qtbot, n=8)
    d = WindowDriver(qtbot, w)
    try:
        d.set_searched(demo_gallery_dir(), False)
        qtbot.waitUntil(lambda: d.searched_line() == "6 photos in 1 folder", timeout=WAIT_MS)
        w.docks.controls.top_k.setValue(12)
        d.draw_box([10, 10, 90, 70])
        w.docks.controls.qd.click()
        d.settle()
        assert w.outcome.spec.mode == "qd" and w.outcome.selection is not None
        qtbot.waitUntil(lambda: "2 photos left out of the Query-DB re-rank" in d.banner(), timeout=WAIT_MS)
        shown = {Path(p).name for p in d.result_paths()}
        assert shown == {"h0.jpg", "h2.jpg", "h3.jpg", "h5.jpg"}  # the two are not ranked on bad rows
        # Query-Only reads no cache rows: nothing is left out, and the sentence goes.
        w.docks.controls.qo.click()
        d.settle()
        qtbot.waitUntil(lambda: "left out" not in d.banner() and len(d.result_paths()) == 6, timeout=WAIT_MS)
    finally:
        w.shutdown()
