"""The explorer in a real headless Chromium: look up a MovieLens movie, see neighbours, scores, histogram; sign in with the token.

Needs Debian's ``chromium`` and ``chromium-driver`` (/usr/bin/chromium, /usr/bin/chromedriver) and
selenium. Without them the test skips, except under ``CI=true``, where it fails. The screenshot is
saved as ``artifacts/explorer.png`` at the repository root.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from conftest import MOVIELENS

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-sync", "--hide-scrollbars")

pytestmark = pytest.mark.slow


def _missing_prerequisite() -> str | None:
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        return f"{CHROMIUM} or {CHROMEDRIVER} is missing (apt-get install -y chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install 'selenium>=4.11')"
    if not (MOVIELENS / "ratings.csv").exists():
        return f"MovieLens is not at {MOVIELENS}"
    return None


@pytest.fixture(scope="module")
def prerequisites():
    reason = _missing_prerequisite()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser test cannot run under CI: {reason}")
        pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def movies_home(prerequisites, tmp_path_factory):
    """item2vec on MovieLens as movies@1 (prod), a perturbed copy as movies@2, and movies@3: movies@1's
    vectors behind a coarse IVF index (one list probed of 64) that misses neighbours."""
    from embstore.embeddings import Embeddings
    from embstore.inputs import InputSpec
    from embstore.store import EmbeddingStore

    root = tmp_path_factory.mktemp("browser")
    home = root / "home"
    store = EmbeddingStore.init(home, progress=False)
    spec = InputSpec("interactions", MOVIELENS / "ratings.csv", {"user_id": "userId", "item_id": "movieId"})
    first = store.run("item2vec", "movies", {"interactions": spec}, {"epochs": 3, "dim": 32, "min_rating": 3.5},
                      promote="prod")
    import pyarrow.parquet as pq

    table = pq.read_table(store.export(first.ref, root / "v1.parquet"))
    ids = table.column("id").to_numpy()
    vecs = np.stack(table.column("vector").to_numpy(zero_copy_only=False)).astype(np.float32)
    noise = np.random.default_rng(5).normal(scale=0.2 * vecs.std(), size=vecs.shape).astype(np.float32)
    store.publish("movies", Embeddings(ids=ids, vectors=vecs + noise), producer="item2vec-perturbed")
    store.publish("movies", Embeddings(ids=ids, vectors=vecs), producer="item2vec-ivf",
                  retriever_config={"index": "ivf", "nlist": 64, "nprobe": 1})
    store.close()
    return home


def _serve(home: Path, log_path: Path, *extra: str, env: dict | None = None):
    """`embstore serve` of ``home`` with movies.csv as metadata on a free port: (process, base URL, log)."""
    port = _free_port()
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "embstore.cli", "--home", str(home), "serve", "--port", str(port),
         "--metadata", f"movies={MOVIELENS / 'movies.csv'}:movieId", "--log-level", "warning", *extra],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            try:
                with urllib.request.urlopen(base + "/api/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"embstore serve did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
    except BaseException:
        _stop(proc, log)
        raise
    return proc, base, log


def _stop(proc, log) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def server(movies_home):
    proc, base, log = _serve(movies_home, movies_home.parent / "server.log")
    yield base
    _stop(proc, log)


TOKEN = "browser-test-token-7f3a9c1e5b"


@pytest.fixture(scope="module")
def guarded_server(movies_home):
    """The same home served on every address (0.0.0.0), so with a token (from EMBSTORE_TOKEN)."""
    env = dict(os.environ, EMBSTORE_TOKEN=TOKEN)
    proc, base, log = _serve(movies_home, movies_home.parent / "guarded.log", "--host", "0.0.0.0", env=env)
    yield base
    _stop(proc, log)


@pytest.fixture(scope="module")
def browser(prerequisites, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_argument("--window-size=1400,1200")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_look_up_a_movie_and_see_neighbours_scores_and_histogram(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 30)
    browser.get(server + "/explorer?ref=movies@prod")
    assert "embstore explorer" in browser.title
    box = wait.until(ec.element_to_be_clickable((By.ID, "q")))
    box.send_keys("Toy Story")
    suggestion = wait.until(ec.element_to_be_clickable(
        (By.XPATH, "//ul[@id='suggestions']//a[starts-with(normalize-space(.), 'Toy Story (1995)')]")))
    suggestion.click()
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#item .item-label"), "Toy Story (1995)"))

    rows = browser.find_elements(By.CSS_SELECTOR, "#neighbour-table tbody tr")
    assert len(rows) == 10
    titles = [r.find_element(By.CSS_SELECTOR, "td.label").text for r in rows]
    scores = [float(r.find_element(By.CSS_SELECTOR, "td.score").text) for r in rows]
    assert all(titles) and "Toy Story (1995)" not in titles
    assert all(-1.0 <= s <= 1.0 + 1e-6 for s in scores) and scores == sorted(scores, reverse=True)
    genres = [r.find_elements(By.CSS_SELECTOR, "td.col")[0].text for r in rows]
    assert any(genres)  # metadata columns reach the table

    bars = browser.find_elements(By.CSS_SELECTOR, "#hist-svg rect.bar")
    assert len(bars) == 30
    heights = [float(b.get_attribute("height")) for b in bars]
    assert sum(h > 0 for h in heights) >= 3
    assert "Scores of the nearest 500" in browser.find_element(By.ID, "histogram").text  # the default depth

    marks = browser.find_elements(By.CSS_SELECTOR, "#map-svg circle.mark-neighbour")
    assert len(marks) == 10 and len(browser.find_elements(By.CSS_SELECTOR, "#map-svg circle.pt")) > 1000

    # compare with the second version: choosing it submits the form
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element(By.ID, "compare")).select_by_value("movies@2")
    overlap = wait.until(ec.visibility_of_element_located((By.ID, "overlap")))
    assert " of 10" in overlap.text and "Jaccard" in overlap.text
    assert browser.find_element(By.CSS_SELECTOR, "#item .item-label").text == "Toy Story (1995)"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#compare-b tbody tr")) == 10

    # typing a title and pressing Enter works too (the server picks the best match)
    box = browser.find_element(By.ID, "q")
    box.clear()
    box.send_keys("Jumanji", Keys.ENTER)
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#item .item-label"), "Jumanji (1995)"))

    # the screenshot, Toy Story with the comparison, whole page
    browser.get(server + "/explorer?ref=movies@prod&id=1&compare=movies@2")
    wait.until(ec.visibility_of_element_located((By.ID, "map-svg")))
    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
    })
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "explorer.png").write_bytes(base64.b64decode(shot["data"]))
    assert (ARTIFACTS / "explorer.png").stat().st_size > 20_000
    assert not [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]


FILLS = "return Array.from(document.querySelectorAll('#map-svg circle.pt'), c => c.getAttribute('fill'))"


def _wait(browser):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, 30)


def _submit_and_wait(browser, click):
    """Run ``click`` (which submits the form) and wait until the new page has loaded."""
    from selenium.webdriver.support import expected_conditions as ec

    old = browser.find_element("tag name", "html")
    click()
    _wait(browser).until(ec.staleness_of(old))
    _wait(browser).until(lambda b: b.execute_script("return document.readyState") == "complete")


def _similar(server, ref: str, item: int, k: int) -> list:
    with urllib.request.urlopen(f"{server}/api/sets/{ref}/similar?id={item}&k={k}", timeout=30) as r:
        return json.load(r)["ids"]


def test_number_of_results_and_histogram_depth_are_set_in_the_form(server, browser):
    from selenium.webdriver.common.by import By

    browser.get(server + "/explorer?ref=movies@prod&id=1")
    for name, value in (("k", "25"), ("n", "200")):
        box = browser.find_element(By.ID, name)
        box.clear()
        box.send_keys(value)
    _submit_and_wait(browser, browser.find_element(By.ID, "go").click)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#neighbour-table tbody tr")) == 25
    assert "Scores of the nearest 200" in browser.find_element(By.ID, "histogram").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#hist-svg rect.bar")) == 30
    assert browser.find_element(By.ID, "k").get_attribute("value") == "25"  # the form keeps what was asked
    assert browser.find_element(By.ID, "k").get_attribute("max") == "500"
    assert "k=25" in browser.find_element(By.CSS_SELECTOR, "#neighbour-table tbody tr a").get_attribute("href")

    # values out of range or malformed (a hand-edited URL) give the page with a message, not JSON
    browser.get(server + "/explorer?ref=movies@prod&id=1&k=900&n=lots")
    alerts = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "p.error")]
    assert alerts == ["number of results (k) must be from 1 to 500, got 900; showing 500",
                      "histogram depth (n) must be a whole number from 10 to 5000, got 'lots'; showing 500"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#neighbour-table tbody tr")) == 500
    assert browser.find_element(By.CSS_SELECTOR, "#item .item-label").text == "Toy Story (1995)"
    assert not browser.find_element(By.TAG_NAME, "body").text.lstrip().startswith("{")


def test_index_is_chosen_in_the_form_with_the_overlap_of_exact_and_approximate(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(server + "/explorer?ref=movies@3&id=1&k=20")
    heading = browser.find_element(By.CSS_SELECTOR, "#neighbours h2").text
    assert "by its index, faiss ivf (approximate" in heading
    shown = [int(r.get_attribute("data-id")) for r in browser.find_elements(By.CSS_SELECTOR, "#neighbour-table tbody tr")]
    approx = _similar(server, "movies@3", 1, 20)
    exact = _similar(server, "movies@1", 1, 20)  # the same vectors behind an exact index
    assert shown == approx and len(set(approx) & set(exact)) < 20
    overlap = browser.find_element(By.ID, "index-overlap").text
    shared = len(set(approx) & set(exact))
    assert f"Exact search shares {shared} of 20 of these (recall@20 of the index {shared / 20:.2f})" in overlap
    assert "Missed by the index:" in overlap

    _submit_and_wait(browser, lambda: Select(browser.find_element(By.ID, "index")).select_by_value("exact"))
    assert "by exact search" in browser.find_element(By.CSS_SELECTOR, "#neighbours h2").text
    shown = [int(r.get_attribute("data-id")) for r in browser.find_elements(By.CSS_SELECTOR, "#neighbour-table tbody tr")]
    assert shown == exact
    assert f"shares {shared} of 20 of these" in browser.find_element(By.ID, "index-overlap").text
    assert "index=exact" in browser.current_url and "k=20" in browser.current_url


def test_title_search_by_words_in_any_order_and_case(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec

    wait = _wait(browser)
    browser.get(server + "/explorer?ref=movies@prod")
    box = wait.until(ec.element_to_be_clickable((By.ID, "q")))
    first = "//ul[@id='suggestions']/li[1]/a"
    box.send_keys("the matrix")
    wait.until(ec.text_to_be_present_in_element((By.XPATH, first), "Matrix, The (1999)"))
    box.clear()
    box.send_keys("star wars EMPIRE")
    wait.until(ec.text_to_be_present_in_element(
        (By.XPATH, first), "Star Wars: Episode V - The Empire Strikes Back (1980)"))
    _submit_and_wait(browser, lambda: box.send_keys(Keys.ARROW_DOWN, Keys.ENTER))
    assert browser.find_element(By.CSS_SELECTOR, "#item .item-label").text == \
        "Star Wars: Episode V - The Empire Strikes Back (1980)"
    box = browser.find_element(By.ID, "q")  # typed and submitted without picking a suggestion
    box.clear()
    _submit_and_wait(browser, lambda: box.send_keys("matrix THE", Keys.ENTER))
    assert browser.find_element(By.CSS_SELECTOR, "#item .item-label").text == "Matrix, The (1999)"


def test_map_is_coloured_by_a_chosen_metadata_value(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(server + "/explorer?ref=movies@prod&id=1")
    note = browser.find_element(By.ID, "legend-note").text
    assert note.startswith("Colour: first listed value of genres (") and " counts as " in note
    names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#map .legend li .name")]
    assert len(names) >= 5 and "Comedy|Drama" not in names and all("|" not in n for n in names)
    fills = set(browser.execute_script(FILLS))
    assert len(fills) >= 5

    _submit_and_wait(browser, lambda: Select(browser.find_element(By.ID, "color-value")).select_by_value("Comedy"))
    assert "coloured by genres: Comedy vs the rest" in browser.find_element(By.CSS_SELECTOR, "#map h2").text
    assert browser.find_element(By.ID, "legend-note").text == "Colour: genres containing 'Comedy' against the rest."
    names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#map .legend li .name")]
    assert names[:2] == ["Comedy", "not Comedy"] and set(names) <= {"Comedy", "not Comedy", "no metadata"}
    fills = set(browser.execute_script(FILLS))
    assert len(fills) == 2  # Comedy, and grey for the rest
    item = browser.find_element(By.CSS_SELECTOR, "#map-svg circle.mark-item")
    swatches = {e.find_element(By.CSS_SELECTOR, ".name").text: e.find_element(By.CSS_SELECTOR, ".swatch")
                .value_of_css_property("background-color") for e in browser.find_elements(By.CSS_SELECTOR, "#map .legend li")
                if e.find_elements(By.CSS_SELECTOR, ".name")}
    assert item.get_attribute("fill") != "#c8c8c8" and swatches["Comedy"] != swatches["not Comedy"]  # Toy Story is a comedy
    links = browser.find_elements(By.CSS_SELECTOR, "#neighbour-table tbody tr a")
    assert "color_value=Comedy" in links[0].get_attribute("href")  # following a neighbour keeps the colouring
    assert not [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]


def test_the_explorer_asks_for_the_token_once(guarded_server, browser):
    """Off loopback the server needs its token: the explorer sends the browser to a sign-in form once,
    then a cookie carries it (the page, its type-ahead calls, other pages, the API docs)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    wait = _wait(browser)
    browser.delete_all_cookies()
    browser.get(guarded_server + "/explorer?ref=movies@prod&id=1")
    token_box = wait.until(ec.element_to_be_clickable((By.ID, "token")))
    assert "/login?next=" in browser.current_url and "sign in" in browser.title
    token_box.send_keys("not-this-servers-token")
    _submit_and_wait(browser, browser.find_element(By.ID, "sign-in").click)
    assert browser.find_element(By.CSS_SELECTOR, "p.message").text == "That is not this server's token."
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    _submit_and_wait(browser, browser.find_element(By.ID, "sign-in").click)
    assert browser.current_url == guarded_server + "/explorer?ref=movies@prod&id=1"  # back where it was going
    assert browser.find_element(By.CSS_SELECTOR, "#item .item-label").text == "Toy Story (1995)"
    assert browser.execute_script("return document.cookie") == ""  # HttpOnly: no script reads the session

    box = browser.find_element(By.ID, "q")  # the page's own calls (type-ahead) carry the cookie
    box.clear()
    box.send_keys("Jumanji")
    wait.until(ec.text_to_be_present_in_element((By.XPATH, "//ul[@id='suggestions']/li[1]/a"), "Jumanji (1995)"))

    browser.get(guarded_server + "/explorer?ref=movies@2&id=2")  # asked once: another page needs nothing more
    assert "/login" not in browser.current_url
    assert browser.find_element(By.CSS_SELECTOR, "#item .item-label").text == "Jumanji (1995)"
    browser.get(guarded_server + "/docs")  # Swagger UI reads the schema with the cookie too
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".opblock-summary-path")))
    assert "/api/sets/{ref}/similar" in browser.find_element(By.TAG_NAME, "body").text

    try:  # without the cookie the API answers 401 in the app's JSON format
        urllib.request.urlopen(guarded_server + "/api/sets", timeout=10)
        raise AssertionError("no 401 without the token")
    except urllib.error.HTTPError as exc:
        assert exc.code == 401 and json.load(exc)["error"] == "unauthorized"
    request = urllib.request.Request(guarded_server + "/api/sets", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        assert "movies" in {s["name"] for s in json.load(r)["sets"]}

    browser.get(guarded_server + "/logout")
    browser.get(guarded_server + "/explorer?ref=movies@prod&id=1")
    assert "/login?next=" in browser.current_url  # signed out: asked again
    assert not [e for e in browser.get_log("browser") if e.get("level") == "SEVERE" and "401" not in e.get("message", "")]
