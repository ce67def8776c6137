"""Compare page (placeholder until it is written)."""

import streamlit as st

from pages.common import choose_dataset

st.title("Compare")
choose_dataset()
st.info("The Compare page is coming soon.")
