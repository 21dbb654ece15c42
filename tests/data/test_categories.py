import pytest

from streamvis.categories import (
    CATEGORY_SETS,
    OVIS_CATEGORIES,
    YTVIS_2019_CATEGORIES,
    YTVIS_2021_CATEGORIES,
    get_category_set,
)
from streamvis.errors import StreamvisError


@pytest.mark.parametrize(
    "name, count",
    [("ytvis2019", 40), ("ytvis2021", 40), ("ovis", 25)],
    ids=["ytvis2019", "ytvis2021", "ovis"],
)
def test_sets_have_official_counts_and_contiguous_unique_ids(name, count):
    cats = CATEGORY_SETS[name]
    assert len(cats) == count
    assert [c["id"] for c in cats] == list(range(1, count + 1))
    assert len({c["name"] for c in cats}) == count
    assert all(set(c) == {"id", "name"} for c in cats)


def test_known_entries():
    by_id = {name: {c["id"]: c["name"] for c in cats} for name, cats in CATEGORY_SETS.items()}
    assert by_id["ytvis2019"][1] == "person"
    assert by_id["ytvis2019"][6] == "sedan"
    assert by_id["ytvis2019"][39] == "earless_seal"
    assert by_id["ytvis2019"][40] == "tennis_racket"
    assert by_id["ytvis2021"][1] == "airplane"
    assert by_id["ytvis2021"][14] == "flying_disc"
    assert by_id["ytvis2021"][26] == "person"
    assert by_id["ytvis2021"][40] == "zebra"
    assert by_id["ovis"][1] == "Person"
    assert by_id["ovis"][12] == "Poultry"
    assert by_id["ovis"][25] == "Vehical"  # the dataset's own spelling


def test_2021_is_alphabetical_and_differs_from_2019():
    names_2021 = [c["name"] for c in YTVIS_2021_CATEGORIES]
    assert names_2021 == sorted(names_2021)
    names_2019 = {c["name"] for c in YTVIS_2019_CATEGORIES}
    assert names_2019 - set(names_2021) == {"sedan", "ape", "hand", "owl", "eagle"}
    assert CATEGORY_SETS["ovis"] is OVIS_CATEGORIES


def test_get_category_set_returns_a_copy_and_normalises_names():
    cats = get_category_set("YTVIS-2019")
    assert cats == list(YTVIS_2019_CATEGORIES)
    cats[0]["name"] = "changed"
    assert YTVIS_2019_CATEGORIES[0]["name"] == "person"
    assert len(get_category_set("ovis")) == 25


def test_unknown_set_is_a_clear_error():
    with pytest.raises(StreamvisError, match="unknown category set 'coco'.*ovis, ytvis2019, ytvis2021"):
        get_category_set("coco")
