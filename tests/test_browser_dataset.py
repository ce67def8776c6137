"""The app in a real browser: every page opens by URL without an exception; Dataset draws its charts.

Screenshots land in tests/screenshots/ (git-ignored): look at them after a change to a page.
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("browser")

from browser import assert_no_exception, open_page, screenshot  # noqa: E402

# The fixtures (app_server, page, ...) live in tests/browser.py. It is imported as `browser`
# (pytest puts tests/ on sys.path) because `tests` itself names a package in site-packages.
pytest_plugins = ("browser",)

# URL path -> page title, in the order of the app's navigation
PAGES = {"dataset": "Dataset", "train": "Train", "compare": "Compare", "predict": "Predict"}
DRAWN_CHART = "[data-testid='stPlotlyChart'] .main-svg"  # present once plotly has drawn it
NAV_LINKS = "[data-testid='stSidebarNav'] a"


def check_page(page, path: str) -> None:
    """The page's title heading, app.py's navigation (not a listing of pages/), no error."""
    page.get_by_role("heading", name=PAGES[path], level=1).wait_for()
    assert_no_exception(page)
    nav = [text.split()[-1] for text in page.locator(NAV_LINKS).all_inner_texts()]
    assert nav == list(PAGES.values())
    assert page.title() == "Portrait Lab"
    assert page.url.endswith(f"/{path}")
    assert not page.get_by_text("Page not found").count()


# Defined first so that it runs first: a deep link on a server no page has been asked of yet,
# which is where Streamlit would treat pages/ as an old-style pages folder (see pages/common.py).
def test_dataset_page_draws_its_charts_and_pictures(app_server, page):
    open_page(page, app_server, "dataset")
    check_page(page, "dataset")
    # four attributes by split and the cross-tab heat map, each drawn by plotly
    page.locator(DRAWN_CHART).nth(4).wait_for()
    assert page.locator("[data-testid='stPlotlyChart']").count() == 5
    metrics = page.locator("[data-testid='stMetric']")
    assert metrics.count() == 5
    assert "150" in metrics.nth(0).inner_text() and "aihub" in metrics.nth(1).inner_text()
    assert page.locator("[data-testid='stImage']").count() == 12
    screenshot(page, "dataset")

    # turning balancing on adds the before/after chart (hairstyle by default)
    page.get_by_text("Show the effect of balancing").click()
    page.locator(DRAWN_CHART).nth(5).wait_for()
    assert "per epoch" in page.locator("[data-testid='stMetric']").nth(5).inner_text()
    assert_no_exception(page)
    screenshot(page, "dataset-balancing")


@pytest.mark.parametrize("path", ["train", "compare", "predict"])
def test_every_other_page_opens_by_url(app_server, page, path):
    open_page(page, app_server, path)
    check_page(page, path)
    screenshot(page, path)


def test_the_root_url_opens_the_dataset_page(app_server, page):
    page.goto(app_server)
    page.wait_for_url("**/dataset")  # forwarded, not drawn under "/"
    check_page(page, "dataset")
