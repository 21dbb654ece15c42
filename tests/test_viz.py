"""Overlays, colours, contact sheets and the AP plot."""

from __future__ import annotations

import numpy as np
import pytest

from streamvis.viz import (
    color_for_id,
    contact_sheet,
    instance_id_map,
    mask_contour,
    overlay_instances,
    plot_per_class_ap,
)


def test_colors_are_stable_and_distinct():
    colors = [color_for_id(i) for i in range(1, 31)]
    assert colors == [color_for_id(i) for i in range(1, 31)]
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in colors)
    assert len(set(colors)) == 30
    dists = [np.abs(np.subtract(colors[i], colors[i + 1])).sum() for i in range(29)]
    assert min(dists) > 60  # neighbouring ids are clearly different


def test_mask_contour_of_square():
    mask = np.zeros((7, 7), bool)
    mask[1:6, 1:6] = True
    contour = mask_contour(mask)
    assert contour.sum() == 16 and not contour[2:5, 2:5].any() and contour[1, 1]


def test_overlay_fills_contours_and_labels():
    image = np.full((60, 80, 3), 100, np.uint8)
    masks = np.zeros((2, 60, 80), bool)
    masks[0, 30:50, 10:30] = True
    masks[1, 30:50, 50:75] = True
    out = overlay_instances(image, masks, [1, 2], ["cat", "dog"], [0.9, 0.5], alpha=0.5)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(image, np.full((60, 80, 3), 100, np.uint8))  # input untouched
    expected_fill = np.round(100 * 0.5 + np.array(color_for_id(1)) * 0.5)
    assert np.abs(out[48, 20].astype(int) - expected_fill).max() <= 1  # below the (moved) labels
    assert tuple(out[40, 10]) == color_for_id(1)  # contour pixel in the full colour
    assert tuple(out[55, 40]) == (100, 100, 100)  # background far from masks and labels
    label_area = out[:30, 10:50]  # labels sit above the masks' top edge
    assert (label_area != 100).any()


def test_overlay_without_instances_and_length_check():
    image = np.zeros((10, 12, 3), np.uint8)
    assert np.array_equal(overlay_instances(image, np.zeros((0, 10, 12), bool), [], []), image)
    with pytest.raises(ValueError):
        overlay_instances(image, np.zeros((1, 10, 12), bool), [1, 2], ["a"])


def test_instance_id_map():
    masks = np.zeros((2, 4, 4), bool)
    masks[0, :2] = True
    masks[1, 1:3] = True
    id_map = instance_id_map(masks, [5, 9], (4, 4))
    assert id_map.dtype == np.uint16
    assert id_map[:, 0].tolist() == [5, 9, 9, 0]


def test_contact_sheet_layout():
    images = [np.full((4, 6, 3), v, np.uint8) for v in (10, 20, 30)]
    sheet = contact_sheet(images, 2, gap=2)
    assert sheet.shape == (10, 14, 3)
    assert sheet[0, 0, 0] == 10 and sheet[0, 8, 0] == 20 and sheet[6, 0, 0] == 30 and sheet[6, 8, 0] == 32


def test_plot_per_class_ap(tmp_path):
    path = plot_per_class_ap({1: 0.5, 2: float("nan"), 3: 0.9}, {1: "person", 2: "dog"}, tmp_path / "ap.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["ap.png"]


def test_labels_do_not_overlap():
    from streamvis.viz import _free_spot

    placed = [(0, 10, 50, 12)]
    assert _free_spot(0, 10, (50, 12), placed, (100, 100)) == 22  # moved below the earlier label
    assert _free_spot(60, 10, (30, 12), placed, (100, 100)) == 10  # beside it: stays
    assert _free_spot(0, 88, (50, 12), [(0, 88, 50, 12)], (100, 100)) == 76  # no room below: moves up


def test_suppress_overlapping_keeps_one_label_per_object():
    from streamvis.viz import suppress_overlapping

    masks = np.zeros((5, 20, 20), dtype=bool)
    masks[0, 2:12, 2:12] = True  # object A, class hypothesis 1
    masks[1, 2:12, 3:12] = True  # object A again (overlap 1.0), scored higher
    masks[2, 14:18, 14:18] = True  # object B, far away
    masks[3, 2:5, 2:12] = True  # a fragment of A: all of it lies inside A
    masks[4, 10:14, 10:20] = True  # touches A: 4 of its 40 pixels (overlap 0.1)
    assert suppress_overlapping(masks, [0.5, 0.9, 0.1, 0.3, 0.2], 0.5) == [1, 2, 4]
    assert suppress_overlapping(masks, [0.9, 0.5, 0.1, 0.3, 0.2], 0.5) == [0, 2, 4]
    assert suppress_overlapping(masks, [0.1, 0.2, 0.3, 0.9, 0.4], 0.5) == [2, 3, 4]  # the fragment first
    assert suppress_overlapping(masks, None, 0.5) == [0, 2, 4]  # input order is the priority
    assert suppress_overlapping(masks, [0.5, 0.9, 0.1, 0.3, 0.2], 1.0) == [0, 1, 2, 3, 4]
    assert suppress_overlapping(masks[:0], [], 0.5) == []


def test_overlay_writer_draws_one_of_two_duplicates_but_keeps_both_ids(tmp_path):
    from PIL import Image

    from streamvis.viz import OverlayWriter, color_for_id

    frame = np.zeros((96, 128, 3), dtype=np.uint8)
    masks = np.zeros((2, 96, 128), dtype=bool)
    masks[0, 40:80, 40:80] = True
    masks[1, 40:80, 41:80] = True
    with OverlayWriter(tmp_path, fps=5) as writer:
        drawn = writer.write(frame, masks, [1, 2], ["a", "b"], [0.4, 0.8])
    center = drawn[70, 60].astype(int)  # inside both masks, below the label
    own = 0.5 * np.array(color_for_id(2))  # the higher-scored track's colour at alpha 0.5
    other = 0.5 * np.array(color_for_id(1))
    assert np.abs(center - own).max() <= 1 and np.abs(center - other).max() > 1
    ids = np.asarray(Image.open(tmp_path / "instance_ids" / "00000.png"))
    assert set(np.unique(ids)) == {0, 1, 2}  # the id PNG keeps both instances


def test_label_text_keeps_id_and_score_apart():
    from streamvis.viz import label_text

    assert label_text("rounded_box", 1, 0.684) == "rounded_box \u00b7 id 1 \u00b7 0.68"
    assert label_text("cat", 10, None) == "cat \u00b7 id 10"


def test_select_tracks_to_draw_keeps_one_track_per_object():
    from streamvis.data.masks import encode_mask
    from streamvis.viz import select_tracks_to_draw

    def track(score, x0, x1, frames=(0, 1, 2)):
        segs = []
        for t in range(3):
            mask = np.zeros((20, 30), bool)
            mask[5:15, x0:x1] = True
            segs.append(encode_mask(mask) if t in frames else None)
        return {"score": score, "segmentations": segs}

    entries = [
        track(0.4, 2, 12),  # a second class hypothesis of the object below: same masks
        track(0.9, 2, 12),
        track(0.3, 18, 28),  # another object
        track(0.8, 3, 8, frames=(1,)),  # a fragment inside the first object in one frame
    ]
    assert select_tracks_to_draw(entries) == [1, 2]
    assert select_tracks_to_draw(entries, max_overlap=1.0) == [0, 1, 2, 3]
    assert select_tracks_to_draw(entries[2:3]) == [0]
