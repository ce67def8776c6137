"""Portrait Lab: `streamlit run app.py` (or `make app`).

The entry point only sets the page up and routes; each page lives in pages/ and draws its own
sidebar data-set chooser (pages/common.py). TensorFlow is imported only by pages that need it,
so the Dataset page appears fast;
Predict's models are warmed up in a background thread meanwhile.
"""

from __future__ import annotations

import streamlit as st

from pages.model_cache import warm_up

st.set_page_config(page_title="Portrait Lab", layout="wide")
warm_up()  # loads Predict's models in the background, once per server (pages/model_cache.py)

DATASET = st.Page(
    "pages/dataset.py", title="Dataset", icon=":material/bar_chart:", url_path="dataset"
)
PAGES = [
    DATASET,
    st.Page("pages/train.py", title="Train", icon=":material/model_training:", url_path="train"),
    st.Page("pages/compare.py", title="Compare", icon=":material/leaderboard:", url_path="compare"),
    st.Page(
        "pages/predict.py", title="Predict", icon=":material/image_search:", url_path="predict"
    ),
]


def _home() -> None:
    # Streamlit serves its default page at "/" whatever its url_path says; a hidden default
    # that forwards to Dataset gives every page, Dataset included, its own URL.
    st.switch_page(DATASET)


st.navigation([st.Page(_home, title="Home", default=True, visibility="hidden"), *PAGES]).run()
