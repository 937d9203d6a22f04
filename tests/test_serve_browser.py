"""The page of `actionrec serve` in a real browser: Debian's headless Chromium driven by Selenium (the system's
chromium and chromedriver; nothing downloads a browser). The server runs in-process on 127.0.0.1.

* a real clip (../shared/realclips/archery.avi) with the real I3D: the page shows "archery" first;
* a stitched long video with the colour stand-in model: its segments, a click that seeks the player, and a threshold
  slider that relabels in the page (no request reaches the model) exactly as the server's relabelling does;
* a bad file: a clear message on the page.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from test_serve_api import STITCHED, settings_for, start_server
from test_timeline import ColourModel, colour_frames, write_av_video

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WAIT_S = 240  # the real I3D's first clip includes preparing its fast path, on 2 shared cores


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (`apt-get install chromium chromium-driver`; .ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,1400",
                "--autoplay-policy=no-user-gesture-required", "--mute-audio"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)  # no selenium-manager
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def colour_model() -> ColourModel:
    return ColourModel()


@pytest.fixture(scope="module")
def site(tmp_path_factory, i3d_kinetics, colour_model):
    server = start_server(settings_for(tmp_path_factory.mktemp("serve-page")),
                          {"i3d-kinetics400": i3d_kinetics, "colour": colour_model})
    yield server
    server.stop()


def wait(driver, condition, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d))


def open_page(driver, site, model: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.get(site.url + "/")
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f"#model option[value='{model}']"))
    Select(driver.find_element(By.ID, "model")).select_by_value(model)


def upload(driver, path: Path) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "file-input").send_keys(str(path))


def test_a_real_clip_shows_its_action(browser, site, realclips):
    from selenium.webdriver.common.by import By

    open_page(browser, site, "i3d-kinetics400")
    upload(browser, realclips / "archery.avi")
    wait(browser, lambda d: d.find_element(By.ID, "clip-view").is_displayed(), WAIT_S)
    labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#top5 .label")]
    assert labels[0] == "archery" and len(labels) == 5
    assert browser.find_element(By.ID, "result-title").text == "archery.avi"
    assert "done" in browser.find_element(By.CSS_SELECTOR, "#jobs .job.done .status").text


def page_segments(driver) -> list[dict]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#timeline .segment')).map(s => "
        "({label: s.dataset.label, start: Number(s.dataset.start), end: Number(s.dataset.end)}))")


def set_slider(driver, value: float) -> None:
    from selenium.webdriver.common.by import By

    slider = driver.find_element(By.ID, "threshold")
    driver.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'))", slider, value)


def test_a_long_video_timeline_seeks_and_relabels_in_the_page(browser, site, colour_model, tmp_path):
    from selenium.webdriver.common.by import By

    video = write_av_video(tmp_path / "stitched.mp4", colour_frames(STITCHED))
    open_page(browser, site, "colour")
    upload(browser, video)
    wait(browser, lambda d: len(page_segments(d)) == 4, WAIT_S)
    segments = page_segments(browser)
    assert [s["label"] for s in segments] == ["Red", "Green", "Blue", "none"]
    job_id = site.call("GET", "/api/jobs")[1]["jobs"][0]["id"]
    player = browser.find_element(By.ID, "player")
    wait(browser, lambda d: d.execute_script("return arguments[0].readyState", player) >= 1)
    assert browser.execute_script("return arguments[0].duration", player) == pytest.approx(15.0, abs=0.1)

    green = browser.find_elements(By.CSS_SELECTOR, "#timeline .segment")[1]
    green.click()
    assert browser.execute_script("return arguments[0].currentTime", player) == pytest.approx(segments[1]["start"], abs=0.05)
    browser.find_elements(By.CSS_SELECTOR, "#segments .segment-row")[2].click()
    assert browser.execute_script("return arguments[0].currentTime", player) == pytest.approx(segments[2]["start"], abs=0.05)

    seen, calls = len(site.server.paths), colour_model.calls
    in_page = {}
    for threshold in (0.3, 0.6, 0.9, 0.34):
        set_slider(browser, threshold)
        in_page[threshold] = page_segments(browser)
    sent = list(site.server.paths)[seen:]
    # relabelling asks the server for nothing: only thumbnails of new segments, and the player's own range reads
    # of the video after the seeks above (Chromium fetches media when it likes)
    assert colour_model.calls == calls and all("/thumbnail" in p or p.endswith("/video") for p in sent), sent
    assert [s["label"] for s in in_page[0.3]] != [s["label"] for s in segments]  # the grey end gets a colour
    assert browser.find_element(By.ID, "threshold-value").text == "0.34"
    for threshold, shown in in_page.items():
        server = site.call("GET", f"/api/jobs/{job_id}/timeline?threshold={threshold}")[1]["segments"]
        assert [s["label"] for s in shown] == [s["label"] for s in server], threshold
        assert [s["start"] for s in shown] == pytest.approx([s["start"] for s in server], abs=0.01)
        assert [s["end"] for s in shown] == pytest.approx([s["end"] for s in server], abs=0.01)
    link = browser.find_element(By.ID, "dl-srt").get_attribute("href")
    assert link.endswith(f"/api/jobs/{job_id}/download/srt?threshold=0.34")


def test_a_bad_upload_gets_a_clear_message(browser, site, tmp_path):
    from selenium.webdriver.common.by import By

    bad = tmp_path / "holiday.mp4"
    bad.write_bytes(b"this is not a video, only text " * 100)
    open_page(browser, site, "colour")
    upload(browser, bad)
    message = browser.find_element(By.ID, "message")
    wait(browser, lambda d: message.is_displayed())
    assert message.text.startswith("holiday.mp4: cannot be opened as a video") and "ffmpeg" in message.text
    names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#jobs .job .name")]
    assert names and "holiday.mp4" not in names  # the earlier jobs are listed, no job for the bad file


def test_a_job_done_at_once_opens_and_the_training_form_starts_from_the_librarys_defaults(browser, site, tmp_path):
    from selenium.webdriver.common.by import By

    from actionrec.training.trainer import TrainConfig

    video = write_av_video(tmp_path / "again.mp4", colour_frames(STITCHED))
    earlier = site.wait(site.analyse(video, model="colour")["id"])  # the server now has this video's windows cached
    open_page(browser, site, "colour")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f"#jobs .job[data-id='{earlier['id']}'] .open"))
    browser.find_element(By.CSS_SELECTOR, f"#jobs .job[data-id='{earlier['id']}'] .open").click()  # opened by hand
    wait(browser, lambda d: d.execute_script("return state.shown && state.shown.id") == earlier["id"])

    def shown(driver) -> str | None:
        return driver.execute_script("return state.shown && state.shown.id")

    upload(browser, video)  # the same content again: its job is done at once
    wait(browser, lambda d: shown(d) not in (None, earlier["id"]), WAIT_S)
    job = site.call("GET", f"/api/jobs/{shown(browser)}")[1]
    assert job["status"] == "done" and job["name"] == "again.mp4" and job["id"] != earlier["id"]
    wait(browser, lambda d: len(page_segments(d)) == 4)

    browser.find_element(By.CSS_SELECTOR, ".tab[data-tab='runs']").click()
    assert browser.find_element(By.ID, "train-epochs").get_attribute("value") == str(TrainConfig.epochs)
    assert browser.find_element(By.ID, "train-finetune").get_attribute("value") == str(TrainConfig.finetune_epochs)
