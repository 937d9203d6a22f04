"""The Label tab in a real browser (Debian's headless Chromium through Selenium, as test_serve_browser): a person
uploads a long real video (stitched here from real UCF101 clips), labels three of its actions with the keys and the
buttons, drags an edge, deletes and undoes, trains a round with the real I3D, and sees the new model's timeline beside
the labels and a suggestion, which one key accepts. With ACTIONREC_DOCS_SCREENSHOT=1 the page's picture is saved as
docs/label.png (the README's)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from test_serve_api import settings_for, start_server
from test_serve_browser import browser, wait  # noqa: F401  (the browser fixture)
from test_serve_label import stitched_real_video

DOCS = Path(__file__).resolve().parents[1] / "docs"


def strip(driver, which: str = "lb-strip") -> list[dict]:
    return driver.execute_script(
        f"return Array.from(document.querySelectorAll('#{which} .segment')).map(s => "
        "({label: s.dataset.label, start: Number(s.dataset.start), end: Number(s.dataset.end)}))")


def seek(driver, seconds: float) -> None:
    driver.execute_script("const p = document.getElementById('lb-player'); p.currentTime = arguments[0];", seconds)
    wait(driver, lambda d: abs(d.execute_script("return document.getElementById('lb-player').currentTime") - seconds) < 0.05)


def player_ready(driver, timeout: float = 120) -> None:
    """Wait until the player has the uploaded video's metadata; on a timeout, fail with what the page said and the
    player's state (network state, error code, source), so a failure says where the upload or the load stopped."""
    from selenium.common.exceptions import TimeoutException

    try:
        wait(driver, lambda d: d.execute_script("return document.getElementById('lb-player').readyState") >= 1, timeout)
    except TimeoutException:
        state = driver.execute_script(
            "const p = document.getElementById('lb-player'), m = document.getElementById('message');"
            "return {message: m.hidden ? '' : m.textContent, src: p.currentSrc, networkState: p.networkState,"
            "readyState: p.readyState, error: p.error && p.error.code};")
        raise AssertionError(f"the uploaded video never loaded in the player: {state}") from None


def keys(driver, text: str, modifier: str | None = None) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    driver.execute_script("document.activeElement && document.activeElement.blur()")
    chain = ActionChains(driver)
    if modifier:
        chain = chain.key_down(modifier)
    chain = chain.send_keys(text)
    if modifier:
        chain = chain.key_up(modifier)
    chain.perform()


def test_label_train_and_review_a_long_real_video(browser, tmp_path, i3d_kinetics):  # noqa: F811
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    root = tmp_path / "data"
    root.mkdir()
    truth = stitched_real_video(tmp_path / "match.mp4")
    site = start_server(settings_for(tmp_path, data_root=root, features=tmp_path / "features"),
                        {"i3d-kinetics400": i3d_kinetics})
    try:
        browser.get(site.url + "/")
        browser.find_element(By.ID, "tab-label").click()
        wait(browser, lambda d: d.find_element(By.ID, "lb-create").is_displayed())
        assert not browser.find_element(By.ID, "lb-sources").is_displayed()  # no upload before a dataset is open
        browser.find_element(By.ID, "lb-new").send_keys("mine")
        browser.find_element(By.ID, "lb-create").click()
        wait(browser, lambda d: d.find_element(By.ID, "lb-sources").is_displayed())
        browser.find_element(By.ID, "lb-file").send_keys(str(tmp_path / "match.mp4"))
        player_ready(browser)
        assert browser.find_element(By.ID, "lb-video").get_attribute("value") == "videos/match.mp4"

        marked = []
        for k, (label, start, end) in enumerate(truth[:3]):  # the fourth clip is left for the model
            a, b = round(start + 0.4, 1), round(end - 0.4, 1)
            seek(browser, a)
            keys(browser, "i") if k % 2 == 0 else browser.find_element(By.ID, "lb-start").click()
            seek(browser, b)
            keys(browser, "o") if k % 2 == 0 else browser.find_element(By.ID, "lb-end").click()
            box = browser.find_element(By.ID, "lb-label")
            box.clear()
            box.send_keys(label, Keys.ENTER)
            wait(browser, lambda d, n=k + 1: len(strip(d)) == n)
            marked.append((label, a, b))
        assert sorted((s["label"], s["start"], s["end"]) for s in strip(browser)) == sorted(marked)
        assert [o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#lb-labels option")] == \
            ["ApplyEyeMakeup", "BabyCrawling"]  # offered as you type

        first = browser.find_elements(By.CSS_SELECTOR, "#lb-strip .segment")[0]
        ActionChains(browser).click_and_hold(first.find_element(By.CSS_SELECTOR, ".edge.right")) \
            .move_by_offset(-15, 0).release().perform()  # drag the right edge back a little
        wait(browser, lambda d: min(s["end"] for s in strip(d)) < marked[0][2] - 0.1)
        saved = site.call("GET", "/api/datasets/mine")[1]["segments"]
        assert len(saved) == 3 and min(s["end"] for s in saved) < marked[0][2] - 0.1

        browser.find_elements(By.CSS_SELECTOR, "#lb-strip .segment")[1].click()
        keys(browser, Keys.DELETE)
        wait(browser, lambda d: len(strip(d)) == 2)
        assert len(site.call("GET", "/api/datasets/mine")[1]["segments"]) == 2
        keys(browser, "z", Keys.CONTROL)
        wait(browser, lambda d: len(strip(d)) == 3)
        assert sorted(s["label"] for s in site.call("GET", "/api/datasets/mine")[1]["segments"]) == \
            sorted(label for label, _, _ in marked)

        for field, value in (("lb-epochs", "5"), ("lb-finetune", "0")):
            box = browser.find_element(By.ID, field)
            box.clear()
            box.send_keys(value)
        browser.find_element(By.ID, "lb-train").click()
        wait(browser, lambda d: d.find_element(By.ID, "lb-model-strip").is_displayed(), 400)
        model = strip(browser, "lb-model-strip")
        assert {s["label"] for s in model} & {"BabyCrawling", "ApplyEyeMakeup"}
        assert model[-1]["end"] > truth[3][1]  # the model's timeline covers the unlabelled fourth clip too
        rounds = browser.find_elements(By.CSS_SELECTOR, "#lb-rounds tbody tr")
        assert len(rounds) == 1 and rounds[0].text.startswith("1 mine-1 3")
        suggestions = browser.find_elements(By.CSS_SELECTOR, "#lb-suggestions li")
        assert suggestions
        if os.environ.get("ACTIONREC_DOCS_SCREENSHOT"):
            browser.set_window_size(1200, 1800)  # the whole tab, header to suggestions
            browser.execute_script("window.scrollTo(0, 0)")
            DOCS.mkdir(exist_ok=True)
            browser.save_screenshot(str(tmp_path / "label.png"))
            shutil.copy(tmp_path / "label.png", DOCS / "label.png")

        suggestion = site.call("GET", "/api/datasets/mine/review")[1]["review"]["suggestions"][0]
        suggestions[0].click()
        wait(browser, lambda d: abs(d.execute_script("return document.getElementById('lb-player').currentTime")
                                    - suggestion["start"]) < 0.05)
        keys(browser, "a")  # accept: the model's label over that stretch becomes a segment
        expected = {"video": "videos/match.mp4", "label": suggestion["label"]}
        wait(browser, lambda d: any(s["label"] == expected["label"] and s["start"] <= suggestion["start"] + 0.01
                                    and s["end"] >= suggestion["end"] - 0.01 for s in strip(d)))
        saved = site.call("GET", "/api/datasets/mine")[1]["segments"]
        assert any(s["label"] == suggestion["label"] and s["start"] <= suggestion["start"] + 0.01 for s in saved)
    finally:
        site.stop()
