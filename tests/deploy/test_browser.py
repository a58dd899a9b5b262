"""The upload page in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by Playwright,
against the `medattn serve` process of conftest: choose a file, press Predict, wait for the answer, and
check the probabilities shown, the predicted class and that the overlay image loaded."""
import json
import shutil

import httpx
import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (pip install playwright)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian: apt-get install chromium)")

# As the report test: no sandbox (root), no GPU, no background traffic on a machine without network.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def page():
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        context = browser.new_context(viewport={"width": 1100, "height": 1200})
        tab = context.new_page()
        tab.set_default_timeout(60_000)
        yield tab
        browser.close()


def test_upload_shows_the_prediction_and_the_overlay(page, server, exported, test_images, tmp_path):
    side = json.loads(exported.with_suffix(".json").read_text())
    path = test_images[3]
    expected = httpx.post(server.url + "/predict", files={"file": (path.name, path.read_bytes())}, timeout=30).json()
    page.goto(server.url + "/")
    page.wait_for_function("document.getElementById('model').textContent.includes('version')")
    assert side["version"] in page.text_content("#model")
    page.set_input_files("#file", str(path))
    page.click("#submit")
    page.wait_for_selector("#result", state="visible")
    page.wait_for_function("document.getElementById('overlay').complete && "
                           "document.getElementById('overlay').naturalWidth > 0")
    assert page.text_content("#predicted") == expected["predicted"]
    shown = {row.get_attribute("data-class"): float(row.query_selector_all("td")[1].text_content())
             for row in page.query_selector_all("#probabilities tbody tr")}
    assert set(shown) == set(side["class_names"])
    for name, p in expected["probabilities"].items():
        assert shown[name] == pytest.approx(p, abs=5e-4), name
    assert page.eval_on_selector("#overlay", "im => [im.naturalWidth, im.naturalHeight]") == [256, 256]
    assert page.eval_on_selector("#input-image", "im => im.naturalWidth") == 128  # the upload itself, 128 px
    assert "cam" in page.text_content("#overlay-caption")
    assert page.is_visible("#metrics-section") and "test_shifted" in page.text_content("#metrics")
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    from PIL import Image

    with Image.open(shot) as im:
        assert np.asarray(im.convert("RGB")).std() > 20  # something is drawn


def test_a_bad_upload_shows_the_servers_message(page, server, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image\n")
    page.goto(server.url + "/")
    page.set_input_files("#file", str(bad))
    page.click("#submit")
    page.wait_for_selector("#error", state="visible")
    assert page.text_content("#error").startswith("not_an_image: the upload is not an image file")
    assert page.is_hidden("#result")
