"""Built-in category sets of YouTube-VIS 2019, YouTube-VIS 2021 and OVIS (official ids and names; no torch).

Names are the datasets' own spellings (lower-case with underscores for YouTube-VIS; capitalised for
OVIS, including its misspelled ``"Vehical"``), so a results file written with these ids is accepted
by the official evaluation servers.
"""

from __future__ import annotations

from streamvis.errors import StreamvisError

__all__ = [
    "CATEGORY_SETS",
    "OVIS_CATEGORIES",
    "YTVIS_2019_CATEGORIES",
    "YTVIS_2021_CATEGORIES",
    "get_category_set",
]


def _numbered(names: str) -> tuple[dict, ...]:
    """``"a b c"`` -> ``({"id": 1, "name": "a"}, {"id": 2, "name": "b"}, ...)``."""
    return tuple({"id": i, "name": name} for i, name in enumerate(names.split(), start=1))


# official: categories of YouTube-VIS 2019 train.json (ids 1..40 in this order), as listed by the
# detectron2-based VIS code bases (IFC / Mask2Former-VIS `data_video/datasets/ytvis.py`).
YTVIS_2019_CATEGORIES: tuple[dict, ...] = _numbered(
    "person giant_panda lizard parrot skateboard sedan ape dog snake monkey "
    "hand rabbit duck cat cow fish train horse turtle bear "
    "motorbike giraffe leopard fox deer owl surfboard airplane truck zebra "
    "tiger elephant snowboard boat shark mouse frog eagle earless_seal tennis_racket"
)

# official: categories of YouTube-VIS 2021 train.json (alphabetical, ids 1..40), same source.
YTVIS_2021_CATEGORIES: tuple[dict, ...] = _numbered(
    "airplane bear bird boat car cat cow deer dog duck "
    "earless_seal elephant fish flying_disc fox frog giant_panda giraffe horse leopard "
    "lizard monkey motorbike mouse parrot person rabbit shark skateboard snake "
    "snowboard squirrel surfboard tennis_racket tiger train truck turtle whale zebra"
)

# official: categories of OVIS annotations_train.json (ids 1..25), same source (`ovis.py`).
OVIS_CATEGORIES: tuple[dict, ...] = _numbered(
    "Person Bird Cat Dog Horse Sheep Cow Elephant Bear Zebra "
    "Giraffe Poultry Giant_panda Lizard Parrot Monkey Rabbit Tiger Fish Turtle "
    "Bicycle Motorcycle Airplane Boat Vehical"
)

CATEGORY_SETS: dict[str, tuple[dict, ...]] = {
    "ytvis2019": YTVIS_2019_CATEGORIES,
    "ytvis2021": YTVIS_2021_CATEGORIES,
    "ovis": OVIS_CATEGORIES,
}


def get_category_set(name: str) -> list[dict]:
    """Return a fresh copy of a built-in category set.

    Args:
        name: one of ``"ytvis2019"``, ``"ytvis2021"``, ``"ovis"`` (case-insensitive; ``-``/``_`` ignored).

    Returns:
        A list of ``{"id": int, "name": str}`` dicts in id order (safe to modify).

    Raises:
        StreamvisError: for an unknown name, listing the known ones.
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in CATEGORY_SETS:
        known = ", ".join(sorted(CATEGORY_SETS))
        raise StreamvisError(f"unknown category set {name!r}; known sets: {known}")
    return [dict(c) for c in CATEGORY_SETS[key]]
