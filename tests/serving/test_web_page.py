"""The page at `/` in a real headless Chromium, against a real server and index on 127.0.0.1: search,
cards with thumbnails, playing a moment from its start to its end, the grouped view, all moments of a
video, search by an uploaded file, keys, a wrong token, and HTML in names shown as text."""

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from vidsearch.serving import SearchServer

from ..runtime.models import SCENE_S, Repository
from .browser import chromium
from .conftest import CLIPS_PER_VIDEO, VIDEOS, Media, Running, settings_for

pytestmark = pytest.mark.slow

FRAME_S = 0.1  # the test videos run at 10 frames per second
HOSTILE = '<img src=x onerror="window.hacked=1">.mp4'
TOKEN = "page-s3cret"
WAIT_S = 30


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def page(running: Running) -> str:
    """The page's address; the index also holds a video whose id and tag are HTML."""
    assert running.server.http is not None
    url = running.server.http.url
    body = {"items": [{"path": VIDEOS[0], "video_id": HOSTILE, "tags": ["<b>bold</b>"]}]}
    assert httpx.post(url + "v1/ingest", json=body, timeout=60).json()["clips_added"] == CLIPS_PER_VIDEO
    return url


def _wait(driver: webdriver.Chrome, script: str, *args: Any) -> Any:
    """Wait until the script returns something truthy, and return it."""
    return WebDriverWait(driver, WAIT_S).until(lambda d: d.execute_script(script, *args))


def _search(driver: webdriver.Chrome, url: str, query: str, *, merge: bool = False, group: bool = False,
            top_k: int = 20) -> list[dict[str, Any]]:
    driver.get(url)
    _wait(driver, "return document.getElementById('status').textContent.includes('clips of')")
    driver.execute_script("""
        document.getElementById('filters').open = true;
        document.getElementById('merge').checked = arguments[0];
        document.getElementById('group').checked = arguments[1];
        document.getElementById('top-k').value = arguments[2];""", merge, group, top_k)
    box = driver.find_element(By.ID, "query")
    box.send_keys(query, Keys.ENTER)
    return _cards(driver)


def _cards(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """The hits of the cards shown, once every thumbnail has loaded."""
    return list(_wait(driver, """
        const cards = Array.from(document.querySelectorAll('.card'));
        const done = cards.length && cards.every((c) => c.querySelector('img').complete
                                                  && c.querySelector('img').naturalWidth > 0);
        return done && cards.map((c) => c.hit);"""))


def test_cards_show_thumbnails_and_a_click_plays_the_moment_from_start_to_end(browser: webdriver.Chrome,
                                                                             page: str) -> None:
    hits = _search(browser, page, "a red circle moves to the left")
    assert len(hits) == (len(VIDEOS) + 1) * CLIPS_PER_VIDEO  # top 20 of 12 clips: all of them
    names = [c.text for c in browser.find_elements(By.CSS_SELECTOR, ".card .name")]
    assert names == [h["video_id"] for h in hits]
    widths = browser.execute_script("return Array.from(document.querySelectorAll('.card img'))"
                                    ".map((i) => i.naturalWidth)")
    assert set(widths) == {4 * 90}  # each card shows its four-frame strip
    number = next(i for i, h in enumerate(hits) if h["start_s"] > 0)
    hit = hits[number]
    browser.execute_script("""
        const video = document.getElementById('video');
        window.seekedAt = null;
        video.addEventListener('seeked', () => {
            if (window.seekedAt === null) window.seekedAt = video.currentTime;
        });
    """)
    browser.find_elements(By.CSS_SELECTOR, ".card")[number].click()
    seeked = _wait(browser, "return window.seekedAt !== null && [window.seekedAt]")[0]
    assert abs(seeked - hit["start_s"]) <= FRAME_S  # it starts at the moment's start
    stopped = _wait(browser, """const v = document.getElementById('video');
                                return v.paused && v.currentTime > arguments[0] && [v.currentTime];""",
                    hit["start_s"] + FRAME_S)[0]
    assert hit["end_s"] <= stopped <= hit["end_s"] + 2 * FRAME_S  # … and pauses at its end
    assert hit["end_s"] - hit["start_s"] == pytest.approx(SCENE_S)


def test_grouped_view_and_all_moments_of_one_video(browser: webdriver.Chrome, page: str) -> None:
    _search(browser, page, "a ball", group=True, top_k=4)
    groups = browser.execute_script("""
        return Array.from(document.querySelectorAll('.group')).map((g) => [
            g.querySelector('h2').textContent,
            Array.from(g.querySelectorAll('.card')).map((c) => c.hit.video_id)]);""")
    assert groups
    for title, videos in groups:
        assert videos
        assert set(videos) == {title.split(" — ")[0]}
    browser.find_element(By.CSS_SELECTOR, ".card .moments").click()
    video = groups[0][1][0]
    _wait(browser, "return document.getElementById('status').textContent.includes('for all moments in')")
    moments = _cards(browser)
    assert [(m["video_id"], m["start_s"], m["end_s"], len(m["clip_ids"])) for m in moments] == [
        (video, 0.0, CLIPS_PER_VIDEO * SCENE_S, CLIPS_PER_VIDEO)]  # its three touching clips: one moment
    assert f"{CLIPS_PER_VIDEO} clips" in browser.find_element(By.CSS_SELECTOR, ".card .meta").text


def test_search_by_an_uploaded_file_and_find_similar(browser: webdriver.Chrome, page: str,
                                                     media: Media) -> None:
    _search(browser, page, "a ball")
    browser.find_element(By.ID, "file").send_keys(str(media.videos[2]))
    _wait(browser, "return document.getElementById('status').textContent.includes("
                   "'results for like the file clip-2.mp4')")
    assert len(_cards(browser)) == (len(VIDEOS) + 1) * CLIPS_PER_VIDEO
    browser.find_elements(By.CSS_SELECTOR, ".card .similar")[0].click()
    _wait(browser, "return document.getElementById('status').textContent.startsWith('12 results for like ')")


def test_keys_move_between_cards_and_play(browser: webdriver.Chrome, page: str) -> None:
    _search(browser, page, "a ball")
    assert browser.execute_script("return document.activeElement.hit") == _cards(browser)[0]
    ActionChains(browser).send_keys("j").send_keys(Keys.ARROW_DOWN).send_keys("k").send_keys("j").perform()
    third = browser.execute_script("return document.activeElement.hit")
    assert third == _cards(browser)[2]
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    _wait(browser, "return !document.getElementById('player').hidden")
    assert browser.find_element(By.ID, "now-playing").text.startswith(third["video_id"])
    ActionChains(browser).send_keys(Keys.ESCAPE).perform()
    assert browser.execute_script("return document.getElementById('player').hidden")
    ActionChains(browser).send_keys("/").perform()
    assert browser.execute_script("return document.activeElement.id") == "query"


def test_html_in_names_and_tags_is_shown_as_text(browser: webdriver.Chrome, page: str) -> None:
    hits = _search(browser, page, "a red circle", top_k=20)
    assert HOSTILE in [h["video_id"] for h in hits]
    assert HOSTILE in [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".card .name")]
    assert "<b>bold</b>" in [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".card .tag")]
    assert browser.execute_script("return document.querySelectorAll('#results img:not([src^=\"/v1/\"]), "
                                  "#results b').length") == 0
    assert browser.execute_script("return window.hacked") is None


@pytest.fixture(scope="module")
def guarded_page(repository: Repository, media: Media,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    index = tmp_path_factory.mktemp("page") / "index"
    settings = settings_for(repository, media, index, auth={"tokens": [TOKEN]})
    with SearchServer(settings) as server:
        assert server.http is not None
        yield server.http.url


def test_the_page_asks_for_the_token_and_says_clearly_when_it_is_wrong(browser: webdriver.Chrome,
                                                                       guarded_page: str) -> None:
    browser.get(guarded_page)
    _wait(browser, "return document.getElementById('token-dialog').open")
    assert "needs an access token" in browser.find_element(By.ID, "token-message").text
    browser.find_element(By.ID, "token").send_keys("wrong", Keys.ENTER)
    _wait(browser, "return document.getElementById('token-message').textContent.includes('refused')")
    assert "refused this token" in browser.find_element(By.ID, "status").text
    browser.find_element(By.ID, "token").send_keys(TOKEN, Keys.ENTER)
    _wait(browser, "return document.getElementById('status').textContent.includes('0 clips of 0 videos')")
    assert browser.execute_script("return sessionStorage.getItem('vidsearch-token')") == TOKEN
    browser.refresh()  # kept for the tab: not asked again
    _wait(browser, "return document.getElementById('status').textContent.includes('0 clips of 0 videos')")
    assert not browser.execute_script("return document.getElementById('token-dialog').open")
