"""KITTI-MOTS txt (GT and results) to and from the YouTube-VIS dict.

Layout (TrackEval's ``KittiMOTS`` dataset class; ``shared/golden/mots_eval/README.md``)::

    GT folder/evaluate_mots.seqmap.<split>   "<seq> empty 000000 <last frame>" per sequence
    GT folder/label_02/<seq>.txt             GT lines (see `streamvis.data.formats._mots_text`);
                                             ``instances_txt/`` (the official download) works too
    results folder/<seq>.txt                 tracker lines (TrackEval: tracker/<name>/data/)

Frames are numbered from 0 to the seqmap's last frame; sequence names are 4-digit numbers. Classes:
1 car, 2 pedestrian, 10 ignore region (GT). Without a seqmap, the sequences are the ``label_02``
files and each is as long as its last frame + 1. A seqmap with a single row is accepted (TrackEval's
csv sniffer fails on it). Example::

    from streamvis.data.formats import kitti_mots
    gt = kitti_mots.read_gt("kitti_mots/gt")                     # YouTube-VIS dict
    results = kitti_mots.read_results("tracker/data", dataset=gt)  # YouTube-VIS results entries
    kitti_mots.write_results(results, gt, "out/data")

No torch.
"""

from __future__ import annotations

from pathlib import Path

from streamvis.data.formats import _mots_text as mots
from streamvis.data.formats import _mots_write as mots_write
from streamvis.errors import DataFormatError, StreamvisError
from streamvis.utils.io import atomic_open

__all__ = [
    "CLASSES",
    "EVAL_CLASSES",
    "read_evaluation_inputs",
    "read_gt",
    "read_results",
    "read_seqmap",
    "write_gt",
    "write_results",
]

FIRST_FRAME = 0
EVAL_CLASSES = (1, 2)  # TrackEval KittiMOTS: car, pedestrian
CLASSES = (1, 2, mots.IGNORE_CLASS)
FILE_PATTERN = "{seq}/{frame:06d}.png"  # KITTI's image_02/<seq>/<frame>.png


def seqmap_path(gt_folder, split: str = "val") -> Path:
    """TrackEval's default seqmap location inside a GT folder."""
    return Path(gt_folder) / f"evaluate_mots.seqmap.{split}"


def read_seqmap(path) -> dict[str, int]:
    """``{sequence name: number of frames}`` of a KITTI-MOTS seqmap ("<seq> empty 000000 <last>" rows).

    Raises:
        DataFormatError: a row with fewer than 4 fields or non-integer sequence / last frame.
    """
    path = Path(path)
    if not path.is_file():
        raise StreamvisError(f"{path}: seqmap not found")
    sequences = {}
    for number, raw in enumerate(path.read_text(encoding="ascii", errors="replace").splitlines(), start=1):
        fields = raw.split()
        if not fields:
            continue
        if len(fields) < 4:
            raise DataFormatError(
                f"a seqmap row has 4 fields '<seq> empty 000000 <last frame>', this one has {len(fields)}",
                path=path,
                where=f"line {number}",
            )
        try:
            name, last = f"{int(fields[0]):04d}", int(fields[3])
        except ValueError as e:
            raise DataFormatError(
                "the sequence and the last frame must be integers", path=path, where=f"line {number}"
            ) from e
        if last < 0:
            raise DataFormatError(f"last frame {last} is negative", path=path, where=f"line {number}")
        sequences[name] = last + 1
    if not sequences:
        raise DataFormatError("the seqmap lists no sequence", path=path)
    return sequences


def _label_folder(gt_folder: Path) -> Path:
    """TrackEval's ``label_02``, the official download's ``instances_txt``, or the folder itself."""
    for name in ("label_02", "instances_txt"):
        if (gt_folder / name).is_dir():
            return gt_folder / name
    return gt_folder


def _sequences(gt_folder: Path, split: str, seqmap) -> dict[str, int | None]:
    path = Path(seqmap) if seqmap is not None else seqmap_path(gt_folder, split)
    if seqmap is not None or path.is_file():
        return read_seqmap(path)
    files = sorted(_label_folder(gt_folder).glob("*.txt"))
    if not files:
        raise StreamvisError(f"{gt_folder}: neither a seqmap ({path.name}) nor label_02/<seq>.txt files")
    return {f.stem: None for f in files}


def _read_sequence(path: Path, length: int | None, size=None, *, is_gt: bool) -> list:
    lines = mots.read_lines(path, first_frame=FIRST_FRAME, num_frames=length, classes=CLASSES, size=size)
    mots.check_frames(lines, path, is_gt=is_gt, first_frame=FIRST_FRAME)
    return lines


def _length(lines: list, length: int | None) -> int:
    return length if length is not None else max((x.frame for x in lines), default=-1) + 1


def _size(lines: list, fallback: tuple[int, int] | None, name: str, path) -> tuple[int, int]:
    if lines:
        return lines[0].height, lines[0].width
    if fallback is not None:
        return fallback
    raise DataFormatError(
        f"sequence {name} has no lines, so its image size is unknown; pass "
        "image_sizes={name: (height, width)}",
        path=path,
    )


def read_gt(path, *, split: str = "val", seqmap=None, image_sizes: dict | None = None) -> dict:
    """Read a KITTI-MOTS GT folder into a YouTube-VIS dict.

    Args:
        path: the GT folder (``label_02/`` and the seqmap; or a folder of ``<seq>.txt`` files).
        split: picks ``evaluate_mots.seqmap.<split>``; seqmap: an explicit seqmap file instead.
        image_sizes: ``{sequence: (height, width)}`` for sequences whose GT file has no lines.

    Returns:
        The dict (categories car 1, pedestrian 2, ignore 10; ignore regions as crowd annotations).
    """
    gt_folder = Path(path)
    sequences = []
    for name, length in _sequences(gt_folder, split, seqmap).items():
        file = _label_folder(gt_folder) / f"{name}.txt"
        lines = _read_sequence(file, length, is_gt=True)
        size = _size(lines, (image_sizes or {}).get(name), name, file)
        sequences.append((name, _length(lines, length), size, lines))
    return mots.gt_dict(sequences, list(CLASSES), FILE_PATTERN)


def _video_sequences(dataset: dict) -> list[tuple[str, dict]]:
    """``[(4-digit sequence name, video)]``: numeric video names are kept, others numbered 0, 1, ..."""
    from streamvis.evaluation.tracking import video_name

    names = [video_name(v) for v in dataset["videos"]]
    if all(n.isdigit() for n in names) and len({int(n) for n in names}) == len(names):
        return [(f"{int(n):04d}", v) for n, v in zip(names, dataset["videos"])]
    return [(f"{i:04d}", v) for i, v in enumerate(dataset["videos"])]


def read_results(path, *, dataset: dict) -> list[dict]:
    """Read a KITTI-MOTS results folder (``<seq>.txt`` per sequence of `dataset`) into results entries.

    Args:
        path: the folder holding one txt file per sequence (every sequence needs one, maybe empty).
        dataset: the GT YouTube-VIS dict (from `read_gt`), naming the sequences and their sizes.

    Returns:
        ``[{video_id, category_id, score: 1.0, segmentations, track_id}]``, one per (id, class).
    """
    folder = Path(path)
    sequences = []
    for name, video in _video_sequences(dataset):
        lines = _read_sequence(
            folder / f"{name}.txt", video["length"], (video["height"], video["width"]), is_gt=False
        )
        sequences.append((video["id"], video["length"], lines))
    return mots.results_list(sequences)


def read_evaluation_inputs(gt_path, results_path, *, split: str = "val", seqmap=None) -> tuple[dict, list]:
    """GT dict and results of a KITTI-MOTS evaluation, each file read once.

    The image size of a sequence whose GT file has no lines comes from its results file.
    """
    gt_folder, folder = Path(gt_path), Path(results_path)
    tracker_lines, sizes = {}, {}
    for name, length in _sequences(gt_folder, split, seqmap).items():
        lines = _read_sequence(folder / f"{name}.txt", length, is_gt=False)
        tracker_lines[name] = lines
        sizes[name] = (lines[0].height, lines[0].width) if lines else (1, 1)  # (1, 1): no mask at all
    dataset = read_gt(gt_folder, split=split, seqmap=seqmap, image_sizes=sizes)
    sequences = []
    for name, video in _video_sequences(dataset):
        lines = tracker_lines[name]
        mots.check_against_video(lines, video, folder / f"{name}.txt", first_frame=FIRST_FRAME)
        sequences.append((video["id"], video["length"], lines))
    return dataset, mots.results_list(sequences)


def _write(path: Path, text: str) -> None:
    with atomic_open(path, "w", encoding="ascii") as f:
        f.write(text)


def write_gt(dataset: dict, out_path, *, split: str = "val", class_map: dict | None = None) -> None:
    """Write a YouTube-VIS dict as a KITTI-MOTS GT folder (``label_02/`` and the seqmap).

    Args:
        dataset: the GT dict; crowd annotations become ignore lines (class 10, id 10000).
        out_path: the GT folder to create.
        class_map: ``{category id or name: KITTI class}`` for categories not named car / pedestrian
            (or person) / ignore, which map by name.

    Raises:
        DataFormatError: a class outside 1/2/10, overlapping masks or duplicate ids (nothing written).
    """
    out = Path(out_path)
    classes = mots_write.class_table(dataset, class_map)
    texts, seqmap = {}, []
    for name, video in _video_sequences(dataset):
        where = f"video {video['id']} (sequence {name})"
        tracks = mots_write.gt_tracks_of_video(dataset, video["id"], classes)
        mots_write.check_classes(tracks, CLASSES, where)
        texts[name] = mots_write.render_lines(tracks, video, first_frame=FIRST_FRAME, where=where, is_gt=True)
        seqmap.append(f"{name} empty 000000 {max(video['length'] - 1, 0):06d}\n")
    for name, text in texts.items():
        _write(out / "label_02" / f"{name}.txt", text)
    _write(seqmap_path(out, split), "".join(seqmap))


def write_results(
    results: list[dict],
    dataset: dict,
    out_path,
    *,
    class_map: dict | None = None,
    resolve_overlaps: bool = False,
) -> None:
    """Write results entries as KITTI-MOTS tracker files (``<seq>.txt`` for every video of `dataset`).

    Args:
        results: YouTube-VIS results entries; the object id is ``track_id`` when present, else the
            entry's position + 1.
        dataset: the GT dict naming the videos.
        out_path: the folder to write.
        class_map: ``{category id or name: KITTI class}`` (car / pedestrian / ignore map by name;
            classes must be 1, 2 or 10).
        resolve_overlaps: give pixels shared by two masks of a frame to the higher score (else an error).
    """
    texts = mots_write.results_texts(results, dataset, _video_sequences(dataset), allowed=CLASSES,
                                     first_frame=FIRST_FRAME, class_map=class_map,
                                     resolve_overlaps=resolve_overlaps)
    for name, text in texts.items():  # every sequence checked before the first file is written
        _write(Path(out_path) / f"{name}.txt", text)
