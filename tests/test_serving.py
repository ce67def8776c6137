"""Safe by default: the server listens on this machine only, Folder path reads only below the
allowed data roots, uploads are capped, and an unexpected error shows no traceback or path."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from portrait_core import paths
from portrait_core.data.roots import ROOTS_ENV, PathNotAllowed, check_allowed
from portrait_core.synth import generate

pytest.register_assert_rewrite("browser")

from browser import (  # noqa: E402
    EXCEPTION,
    free_port,
    open_page,
    screenshot,
    wait_healthy,
    wait_idle,
)

pytest_plugins = ("browser",)

APP = str(paths.PROJECT / "app.py")


# --- the bound address ---------------------------------------------------------------------------
def _listening(port: int) -> list[str]:
    """Local addresses (hex, as /proc/net/tcp{,6} write them) listening on port."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.rpartition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.append(address)
    return found


def _is_loopback(hex_address: str) -> bool:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:  # IPv4, stored little-endian: 127.x.x.x has 0x7F in its last byte
        return raw[3] == 127
    # IPv6 ::1 (four 32-bit words, each little-endian), or an IPv4-mapped 127.x address
    return raw == bytes(12) + (1).to_bytes(4, "little") or (
        raw[:8] == bytes(8) and raw[8:12] == b"\0\0\xff\xff" and raw[15] == 127
    )


def _outside_address() -> str | None:
    """This machine's address as other machines see it (None when it has only loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # TEST-NET: no packet is sent for a UDP connect
        except OSError:
            return None
        address = sock.getsockname()[0]
    return None if address.startswith("127.") else address


def test_make_app_listens_on_this_machine_only(tmp_path):
    """`streamlit run app.py` as `make app` starts it (no address flag): .streamlit/config.toml
    keeps it on loopback, and no "Network URL" is offered."""
    port = free_port()
    log = tmp_path / "streamlit.log"
    env = {**os.environ, "PORTRAIT_LAB_WARM_UP": "0"}
    command = [sys.executable, "-m", "streamlit", "run", APP, "--server.port", str(port)]
    command += ["--server.headless", "true"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=paths.PROJECT, env=env, stdout=out, stderr=out)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process, log, 60)
        listening = _listening(port)
        assert listening, f"nothing listens on {port}"
        assert all(_is_loopback(a) for a in listening), listening
        outside = _outside_address()
        if outside is not None:  # the machine's own network address is refused
            with pytest.raises(OSError), socket.create_connection((outside, port), timeout=2):
                pass
        text = log.read_text()
        assert "Network URL" not in text and "External URL" not in text, text
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_the_served_config_caps_uploads_and_hides_errors_and_deploy():
    import tomllib

    config = tomllib.loads((paths.PROJECT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "localhost"
    assert 10 <= config["server"]["maxUploadSize"] <= 64  # a few tens of MB, not Streamlit's 200
    assert config["client"]["showErrorDetails"] == "none"
    assert config["client"]["toolbarMode"] == "viewer"


# --- data roots -----------------------------------------------------------------------------------
@pytest.fixture
def roots(tmp_path, monkeypatch):
    """allowed/ (a small data set inside) is the one extra root; outside/ holds another set."""
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    generate(allowed / "set", 12, seed=1, size=32, progress=False, workers=1)
    generate(outside / "set", 12, seed=2, size=32, progress=False, workers=1)
    monkeypatch.setenv(ROOTS_ENV, str(allowed))
    return allowed, outside


def _folder_path(path: Path, monkeypatch, tmp_path) -> AppTest:
    monkeypatch.setattr(paths, "DEFAULT_DATA", tmp_path / "no-default")
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.sidebar.radio(key="data_source").set_value("Folder path").run()
    at.sidebar.text_input(key="data_path").input(str(path)).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_folder_path_below_an_allowed_root_loads(roots, monkeypatch, tmp_path):
    allowed, _ = roots
    at = _folder_path(allowed / "set", monkeypatch, tmp_path)
    assert not at.sidebar.error
    assert at.session_state["data_path_resolved"] == str(allowed / "set")


@pytest.mark.parametrize("how", ["outside", "symlink", "manifest", "dotdot"])
def test_folder_path_outside_the_roots_is_refused_with_the_way_to_allow_it(
    roots, monkeypatch, tmp_path, how
):
    allowed, outside = roots
    if how == "outside":
        path = outside / "set"
    elif how == "symlink":  # a link inside the root that leads outside it
        path = allowed / "link"
        path.symlink_to(outside / "set", target_is_directory=True)
    elif how == "dotdot":
        path = allowed / ".." / "outside" / "set"
    else:  # a manifest inside the root whose rows point outside it
        path = allowed / "manifest"
        path.mkdir()
        (path / "labels.csv").write_text("path,gender\n../../outside/set/1.png,male\n")
    at = _folder_path(path, monkeypatch, tmp_path)
    assert len(at.sidebar.error) == 1
    message = at.sidebar.error[0].value
    assert "Not a folder this app may read" in message
    assert str(allowed) in message and ROOTS_ENV in message  # the roots, and how to add one
    assert at.session_state["data_path_resolved"] is None
    assert "No data set is loaded" in at.info[0].value


def test_check_allowed_resolves_links_and_names_the_roots(roots):
    allowed, outside = roots
    assert check_allowed(allowed / "set") == (allowed / "set").resolve()
    (allowed / "inner").symlink_to(allowed / "set")  # a link that stays inside is fine
    assert check_allowed(allowed / "inner") == (allowed / "set").resolve()
    with pytest.raises(PathNotAllowed, match="which leads to"):
        (allowed / "away").symlink_to(outside)
        check_allowed(allowed / "away")


# --- in the browser: the upload cap, and no traceback --------------------------------------------
def test_an_upload_over_the_cap_is_refused_and_the_page_says_why(app_server, page, tmp_path):
    big = tmp_path / "huge.jpg"
    big.write_bytes(os.urandom(33 * 1024 * 1024))  # over the 32 MB cap
    open_page(page, app_server, "predict")
    page.locator("input[type=file]").set_input_files(str(big))
    page.get_by_text("File must be 32").first.wait_for(timeout=30_000)
    wait_idle(page)
    assert not page.locator(EXCEPTION).count()
    assert page.get_by_text("Hairstyle:").count() == 0  # nothing was labelled
    assert page.get_by_text("Up to 32 MB per file").count() == 1  # the page gives the limits
    screenshot(page, "predict-upload-over-cap")


BOOM = """
import streamlit as st
st.title("boom")
raise RuntimeError("secret detail /srv/internal/path.py")
"""


def test_an_unexpected_error_shows_no_traceback_or_path_and_no_deploy_button(chromium, tmp_path):
    """A page that raises, served with the project's .streamlit/config.toml (the working
    folder's): the browser gets a generic message, not the exception, its path or traceback."""
    script = tmp_path / "boom.py"
    script.write_text(BOOM)
    port = free_port()
    log = tmp_path / "streamlit.log"
    command = [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port)]
    command += ["--server.headless", "true"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=paths.PROJECT, stdout=out, stderr=out)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, process, log, 60)
        page = chromium.new_page()
        try:
            page.goto(url)
            page.locator(EXCEPTION).first.wait_for(timeout=30_000)
            wait_idle(page)
            shown = page.locator("[data-testid='stApp']").inner_text()
            assert "secret detail" not in shown and "/srv/internal" not in shown, shown
            assert "Traceback" not in shown and str(script) not in shown, shown
            assert 'File "' not in shown, shown
            assert page.locator("[data-testid='stAppDeployButton']").count() == 0
            screenshot(page, "unexpected-error")
        finally:
            page.close()
        deadline = time.monotonic() + 10  # the details go to the server's terminal instead
        while "secret detail" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "secret detail" in log.read_text()
    finally:
        process.terminate()
        process.wait(timeout=20)
