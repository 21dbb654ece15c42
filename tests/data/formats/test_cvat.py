"""CVAT for video 1.1: keyframes, outside flags, polygon interpolation, mask rle, bad tracks, round trip."""

from __future__ import annotations

import numpy as np
import pytest
from tests.data.formats.conftest import masks_by_object

from streamvis.data.formats import cvat
from streamvis.data.masks import decode_rle
from streamvis.data.ytvis import validate_ytvis
from streamvis.errors import DataFormatError

META = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><id>7</id><name>clip</name><size>6</size><mode>interpolation</mode>
    <labels><label><name>car</name></label><label><name>person</name></label></labels>
    <original_size><width>10</width><height>8</height></original_size></task></meta>
"""


def _xml(tmp_path, tracks: str):
    path = tmp_path / "annotations.xml"
    path.write_text(META + tracks + "</annotations>\n")
    return path


# the 3x2 box at left 2, top 1 with runs "0 background, 2 fg, 1 bg, 3 fg" row-major:
# row 0 = [1, 1, 0], row 1 = [1, 1, 1]
MASK_TRACK = """
  <track id="0" label="car" source="manual">
    <mask frame="1" keyframe="1" outside="0" occluded="0" rle="0, 2, 1, 3"
      left="2" top="1" width="3" height="2" z_order="0"></mask>
    <mask frame="3" keyframe="1" outside="1" occluded="0" rle="1" left="0" top="0" width="1" height="1"
      z_order="0">
    </mask>
  </track>
"""

POLYGON_TRACK = """
  <track id="4" label="person" source="manual">
    <polygon frame="0" keyframe="1" outside="0" occluded="0" points="0.0,0.0;4.0,0.0;4.0,2.0;0.0,2.0"
      z_order="0">
    </polygon>
    <polygon frame="2" keyframe="1" outside="0" occluded="0" points="4.0,0.0;8.0,0.0;8.0,2.0;4.0,2.0"
      z_order="0">
    </polygon>
    <box frame="2" keyframe="1" outside="0" occluded="0" xtl="0" ytl="0" xbr="1" ybr="1" z_order="0"></box>
  </track>
"""


def test_mask_rle_keyframes_and_outside(tmp_path):
    data = cvat.read_gt(_xml(tmp_path, MASK_TRACK))
    validate_ytvis(data)
    video = data["videos"][0]
    assert (video["name"], video["length"], video["height"], video["width"]) == ("clip", 6, 8, 10)
    assert video["file_names"][0] == "clip/frame_000000.png"
    ann = data["annotations"][0]
    assert ann["track_id"] == 1 and ann["category_id"] == 1
    segs = ann["segmentations"]
    assert segs[0] is None and segs[3] is None and segs[5] is None  # before it starts, and after outside
    expected = np.zeros((8, 10), np.uint8)
    expected[1, 2:4] = 1
    expected[2, 2:5] = 1
    assert np.array_equal(decode_rle(segs[1]), expected)
    assert np.array_equal(decode_rle(segs[2]), expected)  # the state holds until the next element


def test_polygon_interpolation_and_lasting_to_the_end(tmp_path):
    data = cvat.read_gt(_xml(tmp_path, POLYGON_TRACK))
    ann = data["annotations"][0]
    assert ann["track_id"] == 5 and ann["category_id"] == 2
    x_of = [None if b is None else b[0] for b in ann["bboxes"]]
    assert x_of == [0.0, 2.0, 4.0, 4.0, 4.0, 4.0]  # frame 1 is halfway; no outside: lasts to frame 5
    assert ann["areas"][1] == ann["areas"][0] == 8


def test_track_without_frames_is_refused(tmp_path):
    path = _xml(tmp_path, '  <track id="3" label="car" source="manual"></track>\n')
    with pytest.raises(
        DataFormatError,
        match=r"annotations\.xml: <track id='3' label='car'> \(track 0\): the track has no frames",
    ):
        cvat.read_gt(path)


def test_two_shapes_in_one_frame_and_unknown_label_are_refused(tmp_path):
    twice = MASK_TRACK.replace('frame="3" keyframe="1" outside="1"', 'frame="1" keyframe="1" outside="1"')
    with pytest.raises(DataFormatError, match="field 'frame': two shapes at frame 1"):
        cvat.read_gt(_xml(tmp_path, twice))
    with pytest.raises(DataFormatError, match="label 'truck' is not among the task labels"):
        cvat.read_gt(_xml(tmp_path, MASK_TRACK.replace('label="car"', 'label="truck"')))
    bad_runs = MASK_TRACK.replace('rle="0, 2, 1, 3"', 'rle="0, 2, 1, 2"')
    with pytest.raises(DataFormatError, match="field 'rle': the rle runs sum to 5, not width\\*height = 6"):
        cvat.read_gt(_xml(tmp_path, bad_runs))


def test_malformed_xml_names_the_line(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text("<annotations><meta>\n</annotations>")
    with pytest.raises(DataFormatError, match=r"a\.xml: malformed XML: mismatched tag: line 2"):
        cvat.read_gt(path)


def test_round_trip_through_written_xml(dataset, tmp_path):
    cvat.write_gt(dataset, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["road.xml", "walk.xml"]
    text = (tmp_path / "out" / "road.xml").read_text()
    assert '<track id="0" label="car"' in text and 'frame="1" keyframe="1" outside="1"' in text
    back = cvat.read_gt(tmp_path / "out")
    assert masks_by_object(back) == masks_by_object(dataset)
    one = cvat.read_gt(_xml(tmp_path, MASK_TRACK + POLYGON_TRACK))
    cvat.write_gt(one, tmp_path / "one.xml")
    assert masks_by_object(cvat.read_gt(tmp_path / "one.xml")) == masks_by_object(one)


def test_reads_the_export_zip(tmp_path):
    import zipfile

    xml = _xml(tmp_path, MASK_TRACK)
    with zipfile.ZipFile(tmp_path / "task.zip", "w") as archive:
        archive.write(xml, "annotations.xml")
    assert masks_by_object(cvat.read_gt(tmp_path / "task.zip")) == masks_by_object(cvat.read_gt(xml))
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as archive:
        archive.writestr("other.txt", "x")
    with pytest.raises(DataFormatError, match=r"empty\.zip: the zip has no annotations\.xml"):
        cvat.read_gt(tmp_path / "empty.zip")
