"""item2vec on real MovieLens data (read in place from ../shared/data), through the store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import MOVIELENS
from embstore.inputs import InputSpec

pytestmark = pytest.mark.skipif(not (MOVIELENS / "ratings.csv").exists(), reason=f"MovieLens not at {MOVIELENS}")


def test_item2vec_neighbours_share_genres(store):
    spec = InputSpec("interactions", MOVIELENS / "ratings.csv", {"user_id": "userId", "item_id": "movieId"})
    v = store.run("item2vec", "movies", {"interactions": spec},
                  {"min_rating": 3.5, "min_count": 10, "epochs": 5, "dim": 32, "seed": 1}, promote="prod")
    assert v.status == "published" and v.id_type == "int64" and v.count > 500
    genres = pd.read_csv(MOVIELENS / "movies.csv").set_index("movieId").genres.str.split("|").map(set).to_dict()
    ids = [i for i in store.load(v).ids.tolist()][:200]
    results = store.recall("movies@prod", ids=ids, k=10)
    overlap = np.mean([np.mean([bool(genres[q.query] & genres[n]) for n in q.ids]) for q in results])
    rng = np.random.default_rng(0)
    all_ids = store.load(v).ids
    random = np.mean([bool(genres[a] & genres[b]) for a, b in rng.choice(all_ids, size=(2000, 2))])
    assert overlap > random + 0.1, (overlap, random)
    toy_story = store.recall("movies@prod", ids=[1], k=10)[0]
    assert len(toy_story.ids) == 10 and 1 not in toy_story.ids
