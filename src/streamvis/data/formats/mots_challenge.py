"""MOTSChallenge txt (GT and results) to and from the YouTube-VIS dict.

Layout (TrackEval's ``MOTSChallenge`` dataset class; ``shared/golden/mots_eval/README.md``)::

    GT folder/seqmaps/<benchmark>-<split>.txt          header "name", then one sequence per line
    GT folder/<benchmark>-<split>/<seq>/gt/gt.txt      GT lines (see `_mots_text`)
    GT folder/<benchmark>-<split>/<seq>/seqinfo.ini    [Sequence] seqLength, imWidth, imHeight
    results folder/<seq>.txt                           tracker lines (TrackEval: .../<name>/data/)

Frames are numbered from 1 to ``seqLength``. Classes: 2 pedestrian, 10 ignore region (GT). Without
a seqmap, the sequences are the folders holding ``gt/gt.txt``. Example::

    from streamvis.data.formats import mots_challenge
    gt = mots_challenge.read_gt("motschallenge/gt")
    results = mots_challenge.read_results("tracker/MOTS-train/mine/data", dataset=gt)

No torch.
"""

from __future__ import annotations

import configparser
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

FIRST_FRAME = 1
EVAL_CLASSES = (2,)  # TrackEval MOTSChallenge: pedestrian
CLASSES = (2, mots.IGNORE_CLASS)
FILE_PATTERN = "{seq}/img1/{frame:06d}.jpg"  # MOTChallenge image layout (frames from 000001)


def read_seqmap(path) -> list[str]:
    """Sequence names of a MOTSChallenge seqmap (a header line, then one name per non-empty line)."""
    path = Path(path)
    if not path.is_file():
        raise StreamvisError(f"{path}: seqmap not found")
    rows = [
        r.split()[0] for r in path.read_text(encoding="utf-8", errors="replace").splitlines() if r.strip()
    ]
    if not rows[1:]:
        raise DataFormatError("the seqmap lists no sequence after its header line", path=path)
    return rows[1:]


def read_seqinfo(path) -> tuple[int, tuple[int, int]]:
    """(seqLength, (imHeight, imWidth)) of a ``seqinfo.ini``.

    Raises:
        DataFormatError: a missing section/key or a non-positive integer.
    """
    path = Path(path)
    if not path.is_file():
        raise StreamvisError(f"{path}: file not found")
    parser = configparser.ConfigParser()
    try:
        parser.read(path, encoding="utf-8")
        section = parser["Sequence"]
        values = {k: int(section[k]) for k in ("seqLength", "imHeight", "imWidth")}
    except (configparser.Error, KeyError, ValueError) as e:
        raise DataFormatError(
            f"needs a [Sequence] section with integer seqLength, imHeight, imWidth ({e})", path=path
        ) from e
    if values["seqLength"] < 0 or values["imHeight"] <= 0 or values["imWidth"] <= 0:
        raise DataFormatError(f"seqLength must be >= 0 and the image size positive, got {values}", path=path)
    return values["seqLength"], (values["imHeight"], values["imWidth"])


def _split_folder(gt_folder: Path, benchmark: str, split: str) -> Path:
    return gt_folder / f"{benchmark}-{split}"


def _sequences(gt_folder: Path, benchmark: str, split: str, seqmap) -> list[str]:
    path = Path(seqmap) if seqmap is not None else gt_folder / "seqmaps" / f"{benchmark}-{split}.txt"
    if seqmap is not None or path.is_file():
        return read_seqmap(path)
    folder = _split_folder(gt_folder, benchmark, split)
    names = sorted(p.parent.parent.name for p in folder.glob("*/gt/gt.txt"))
    if not names:
        raise StreamvisError(
            f"{gt_folder}: neither a seqmap ({path}) nor {folder.name}/<seq>/gt/gt.txt files"
        )
    return names


def _read_sequence(path: Path, length: int, size, *, is_gt: bool) -> list:
    lines = mots.read_lines(path, first_frame=FIRST_FRAME, num_frames=length, classes=CLASSES, size=size)
    mots.check_frames(lines, path, is_gt=is_gt, first_frame=FIRST_FRAME)
    return lines


def read_gt(path, *, split: str = "train", benchmark: str = "MOTS", seqmap=None) -> dict:
    """Read a MOTSChallenge GT folder into a YouTube-VIS dict.

    Args:
        path: the GT folder (``seqmaps/`` and ``<benchmark>-<split>/``).
        split, benchmark: pick ``<benchmark>-<split>``; seqmap: an explicit seqmap file.

    Returns:
        The dict (categories pedestrian 2 and ignore 10; ignore regions as crowd annotations).
    """
    gt_folder = Path(path)
    sequences = []
    for name in _sequences(gt_folder, benchmark, split, seqmap):
        folder = _split_folder(gt_folder, benchmark, split) / name
        length, size = read_seqinfo(folder / "seqinfo.ini")
        lines = _read_sequence(folder / "gt" / "gt.txt", length, size, is_gt=True)
        sequences.append((name, length, size, lines))
    return mots.gt_dict(sequences, list(CLASSES), FILE_PATTERN)


def _video_sequences(dataset: dict) -> list[tuple[str, dict]]:
    from streamvis.evaluation.tracking import video_name

    return [(video_name(v), v) for v in dataset["videos"]]


def read_results(path, *, dataset: dict) -> list[dict]:
    """Read a MOTSChallenge results folder (``<seq>.txt`` per sequence of `dataset`) into results entries.

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


def read_evaluation_inputs(
    gt_path, results_path, *, split: str = "train", benchmark: str = "MOTS", seqmap=None
) -> tuple[dict, list]:
    """GT dict and results of a MOTSChallenge evaluation."""
    dataset = read_gt(gt_path, split=split, benchmark=benchmark, seqmap=seqmap)
    return dataset, read_results(results_path, dataset=dataset)


def _write(path: Path, text: str) -> None:
    with atomic_open(path, "w", encoding="ascii") as f:
        f.write(text)


def write_gt(
    dataset: dict, out_path, *, split: str = "train", benchmark: str = "MOTS", class_map: dict | None = None
) -> None:
    """Write a YouTube-VIS dict as a MOTSChallenge GT folder (gt.txt, seqinfo.ini, seqmap).

    Args:
        dataset: the GT dict; crowd annotations become ignore lines (class 10, id 10000).
        out_path: the GT folder to create.
        class_map: ``{category id or name: class}`` for categories not named pedestrian (or person) /
            ignore, which map by name.

    Raises:
        DataFormatError: a class outside 2/10, overlapping masks or duplicate ids (nothing written).
    """
    out = Path(out_path)
    classes = mots_write.class_table(dataset, class_map)
    files = {}
    names = []
    for name, video in _video_sequences(dataset):
        where = f"video {video['id']} (sequence {name})"
        tracks = mots_write.gt_tracks_of_video(dataset, video["id"], classes)
        mots_write.check_classes(tracks, CLASSES, where)
        folder = _split_folder(out, benchmark, split) / name
        files[folder / "gt" / "gt.txt"] = mots_write.render_lines(
            tracks, video, first_frame=FIRST_FRAME, where=where, is_gt=True
        )
        files[folder / "seqinfo.ini"] = (
            f"[Sequence]\nname={name}\nimDir=img1\nframeRate=30\nseqLength={video['length']}\n"
            f"imWidth={video['width']}\nimHeight={video['height']}\nimExt=.jpg\n"
        )
        names.append(name)
    files[out / "seqmaps" / f"{benchmark}-{split}.txt"] = "name\n" + "".join(f"{n}\n" for n in names)
    for path, text in files.items():
        _write(path, text)


def write_results(
    results: list[dict],
    dataset: dict,
    out_path,
    *,
    class_map: dict | None = None,
    resolve_overlaps: bool = False,
) -> None:
    """Write results entries as MOTSChallenge tracker files (``<seq>.txt`` for every video of `dataset`).

    Args:
        results: YouTube-VIS results entries; the object id is ``track_id`` when present, else the
            entry's position + 1.
        dataset: the GT dict naming the videos.
        out_path: the folder to write.
        class_map: ``{category id or name: class}`` (pedestrian / ignore map by name; classes must be
            2 or 10).
        resolve_overlaps: give pixels shared by two masks of a frame to the higher score (else an error).
    """
    texts = mots_write.results_texts(results, dataset, _video_sequences(dataset), allowed=CLASSES,
                                     first_frame=FIRST_FRAME, class_map=class_map,
                                     resolve_overlaps=resolve_overlaps)
    for name, text in texts.items():  # every sequence checked before the first file is written
        _write(Path(out_path) / f"{name}.txt", text)
