"""The page at ``/`` in a real headless Chromium (selenium): pick a model, type texts, click Run, and read what
it renders: the embeddings' cosine similarity matrix equals the in-process vectors' cosines to the shown
precision; the classifier's labels are the pipeline's."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _deps import in_ci, require
from _serve_util import real_texts, thread_server

import edgebert

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    webdriver = require("selenium.webdriver", "the browser test of the serve page")
    from selenium.webdriver.chrome.service import Service

    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (os.path.exists(p) or shutil.which(Path(p).name))]
    if missing:
        message = f"{', '.join(missing)} not found (apt-get install chromium chromium-driver)"
        if in_ci():
            pytest.fail(f"CI installs Chromium, but {message}", pytrace=False)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,900"):
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def page(minilm_bundle: Path, tiny_bundle: Callable[..., Path]) -> Iterator[tuple[str, dict[str, Path]]]:
    require("starlette", "edgebert serve")
    from edgebert.serve import ServeConfig, create_app

    bundles = {"minilm": minilm_bundle, "sentiment": tiny_bundle("bert", "sequence-classification")}
    with thread_server(create_app(bundles, ServeConfig(threads=1))) as url:
        yield url, bundles


def run_page(driver: Any, url: str, model: str, lines: list[str]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver.get(url + "/")
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    Select(driver.find_element(By.ID, "model")).select_by_value(model)
    box = driver.find_element(By.ID, "texts")
    box.clear()
    box.send_keys("\n".join(lines))
    old = driver.find_element(By.ID, "result").get_attribute("innerHTML")
    driver.find_element(By.ID, "run").click()
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "result").get_attribute("innerHTML") != old
                                    or d.find_element(By.ID, "error").text)
    assert driver.find_element(By.ID, "error").text == ""
    WebDriverWait(driver, 5).until(ec.presence_of_element_located((By.CSS_SELECTOR, "#result table")))


def test_similarity_matrix_matches_the_in_process_cosines(browser: Any, page: tuple[str, dict[str, Path]]) -> None:
    from selenium.webdriver.common.by import By

    url, bundles = page
    texts = [*real_texts()[:4], "naïve café in Zürich 🙂"]
    run_page(browser, url, "minilm", texts)
    v = edgebert.load(bundles["minilm"], threads=1)(texts).astype(np.float64)
    want = (v @ v.T) / np.outer(np.linalg.norm(v, axis=1), np.linalg.norm(v, axis=1))
    cells = browser.find_elements(By.CSS_SELECTOR, "#matrix td[data-i]")
    assert len(cells) == len(texts) ** 2
    for cell in cells:
        i, j = int(cell.get_attribute("data-i")), int(cell.get_attribute("data-j"))
        shown = cell.text
        assert len(shown.split(".")[1]) == 4  # four decimals
        assert abs(float(shown) - want[i, j]) <= 0.5e-4 + 1e-9, (i, j, shown, want[i, j])
    assert "tokens" in browser.find_element(By.ID, "meta").text


def test_classifier_labels_are_the_pipelines(browser: Any, page: tuple[str, dict[str, Path]]) -> None:
    from selenium.webdriver.common.by import By

    url, bundles = page
    texts = ["a wonderful film", "an awful ending", "it was fine"]
    run_page(browser, url, "sentiment", texts)
    rows = browser.find_elements(By.CSS_SELECTOR, "#result table tr")[1:]
    want = edgebert.load(bundles["sentiment"], threads=1)(texts)
    shown = [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in rows]
    assert [(s[0], s[1]) for s in shown] == [(t, w["label"]) for t, w in zip(texts, want, strict=True)]
    assert [float(s[2]) for s in shown] == pytest.approx([w["score"] for w in want], abs=0.5e-4)


def test_errors_are_shown_not_swallowed(browser: Any, page: tuple[str, dict[str, Path]]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = page
    browser.get(url + "/")
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    browser.find_element(By.ID, "texts").clear()
    browser.find_element(By.ID, "run").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "error").text)
    assert "at least one text" in browser.find_element(By.ID, "error").text
