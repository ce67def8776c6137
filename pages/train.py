"""Train page (placeholder until it is written)."""

import streamlit as st

from pages.common import choose_dataset

st.title("Train")
choose_dataset()
st.info("The Train page is coming soon.")
