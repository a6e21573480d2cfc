"""The filter bar over the results: the search runs among the photos taken after a date, under a subfolder or
of some types (so the top k stays full), Clear searches everything again, a bad date is one sentence that
changes nothing, and the filter comes back on the next launch."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from core.library import index_folder
from core.method.engine import load_engine
from core.synthetic.gallery import demo_gallery_dir
from core.synthetic.scenes import generate_scene
from phs_gui.main_window import MainWindow
from tests.gui_driver import WAIT_MS, WindowDriver, first_launch, shown_window

pytestmark = pytest.mark.gui

K = 5


def _photo(path: Path, seed: int, taken: str) -> None:
    """A generated scene with ``taken`` as its EXIF DateTimeOriginal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = taken
    Image.fromarray(generate_scene(91, seed, (128, 96)).image).save(path, exif=exif.tobytes())


def _library(tmp_path: Path) -> Path:
    """7 photos of 2019 and 3 of 2023 at the top, 4 of 2023 under ``trips/``: 7 of 2023 in all (> K)."""
    folder = tmp_path / "photos"
    for i in range(7):
        _photo(folder / f"old{i}.jpg", i, "2019:05:02 10:00:00")
    for i in range(3):
        _photo(folder / f"new{i}.jpg", 10 + i, "2023:07:14 18:02:05")
    for i in range(4):
        _photo(folder / "trips" / f"trip{i}.jpg", 20 + i, "2023:08:01 09:30:00")
    index_folder(folder, load_engine("demo", device="cpu"))  # as `phs index` does; dates stored with it
    return folder


def _search_folder(qtbot, w: MainWindow, folder: Path) -> None:
    """Search ``folder`` alone: the demo gallery unchecked, ``folder`` chosen in the Library list."""
    d = WindowDriver(qtbot, w)
    d.set_searched(demo_gallery_dir(), False)
    d.choose_folder(folder)
    qtbot.waitUntil(lambda: w.session.folder is not None and w.session.folder.name == folder.name
                    and w.settled, timeout=WAIT_MS)  # fmt: skip


def _names(d: WindowDriver) -> list[str]:
    return [Path(p).relative_to(d.w.session.folder).as_posix() for p in d.result_paths()]


def test_filter_bar_searches_among_passing_photos_clears_refuses_bad_dates_and_is_restored(qtbot, tmp_path):
    folder = _library(tmp_path)
    w = first_launch(qtbot, n=8)
    d = WindowDriver(qtbot, w)
    try:
        _search_folder(qtbot, w, folder)
        w.docks.controls.top_k.setValue(K)
        d.settle()
        qtbot.waitUntil(lambda: len(d.result_paths()) == K, timeout=WAIT_MS)
        unfiltered = _names(d)
        assert d.filter_count() == ""

        # After 2022: only 2023 photos, and the top k is still full (7 pass, 5 wanted).
        d.set_filter_field("after", "2022-01-01")
        qtbot.waitUntil(lambda: d.filter_count() == "7 photos pass the filter", timeout=WAIT_MS)
        names = _names(d)
        assert len(names) == K and all(n.startswith(("new", "trips/")) for n in names), names
        assert w.prefs.search.after == "2022-01-01" and w.session.indexed_count == 14  # the folder holds 14

        # Under trips (and after 2022): only the trips photos, all 4 of them.
        assert "trips" in [w.docks.results_panel.filter_bar.under.itemText(i)
                           for i in range(w.docks.results_panel.filter_bar.under.count())]
        d.set_filter_field("under", "trips")
        qtbot.waitUntil(lambda: d.filter_count() == "4 photos pass the filter", timeout=WAIT_MS)
        assert sorted(_names(d)) == [f"trips/trip{i}.jpg" for i in range(4)]

        # A bad date: one sentence in the banner, the filter and the results stay.
        d.set_filter_field("before", "2023-13")
        qtbot.waitUntil(lambda: "no such date" in d.banner(), timeout=WAIT_MS)
        assert d.banner().count(".") == 1
        assert sorted(_names(d)) == [f"trips/trip{i}.jpg" for i in range(4)]
        assert w.prefs.search.before == "" and w.prefs.search.under == "trips"
        d.set_filter_field("before", "")
        qtbot.waitUntil(lambda: "no such date" not in d.banner(), timeout=WAIT_MS)

        # Clear: every photo is searched again, the same results as before the filter.
        d.clear_filter()
        qtbot.waitUntil(lambda: _names(d) == unfiltered and d.filter_count() == "", timeout=WAIT_MS)
        assert d.filter_shown() == {"after": "", "before": "", "under": "", "types": ""}

        # File types: none of these JPEGs is a PNG, so nothing passes and nothing is shown.
        d.set_filter_field("types", "png")
        qtbot.waitUntil(lambda: d.filter_count() == "0 photos pass the filter" and not d.result_paths(),
                        timeout=WAIT_MS)
        d.set_filter_field("types", "jpg, png")
        qtbot.waitUntil(lambda: _names(d) == unfiltered and d.filter_count() == "14 photos pass the filter",
                        timeout=WAIT_MS)
        d.clear_filter()

        # A filter set when the app closes is there on the next launch, and the search runs under it.
        d.set_filter_field("after", "2022")
        qtbot.waitUntil(lambda: d.filter_count() == "7 photos pass the filter", timeout=WAIT_MS)
        w.close()
    finally:
        w.shutdown()
    w2 = shown_window(qtbot, n=8)
    d2 = WindowDriver(qtbot, w2)
    try:
        assert d2.filter_shown()["after"] == "2022"
        w2.start()
        qtbot.waitUntil(lambda: w2.session is not None and w2.session.folder is not None
                        and w2.session.folder.name == folder.name and w2.settled
                        and d2.filter_count() == "7 photos pass the filter", timeout=WAIT_MS)  # fmt: skip
        names = _names(d2)
        assert len(names) == K and all(n.startswith(("new", "trips/")) for n in names), names
    finally:
        w2.shutdown()


def test_a_filter_edited_by_hand_into_no_filter_is_dropped_and_a_good_one_kept(tmp_path):
    from phs_gui.settings import load_preferences

    path = tmp_path / "settings.json"
    path.write_text('{"search": {"after": "2023-13", "under": "trips", "top_k": 7}}', "utf-8")
    bad = load_preferences(path).search
    assert (bad.after, bad.under, bad.top_k) == ("", "", 7)
    path.write_text('{"search": {"after": "2023-02", "before": "2024", "under": "trips", "types": "jpg"}}', "utf-8")
    good = load_preferences(path).search
    assert (good.after, good.before, good.under, good.types) == ("2023-02", "2024", "trips", "jpg")
