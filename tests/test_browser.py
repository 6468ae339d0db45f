"""The web page in Debian's Chromium (headless, through playwright): look a fact up, edit it, forget it.

Screenshots are saved to tests/artifacts/ (or $LMLM_ARTIFACTS)."""

import os
from pathlib import Path

import pytest
from live_server import serving, tiny_lmlm_copy

from lmlm.engine import LMLM
from lmlm.kb import SqliteKB
from lmlm.serve import ServeConfig, create_app

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("LMLM_ARTIFACTS", Path(__file__).parent / "artifacts"))
PROMPT = "Juno Yarnlowe was born in"

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: .ci/run installs it with apt-get install chromium")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)


KEY = "s3cret"


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    model, kb = tiny_lmlm_copy(tmp_path_factory)
    with serving(create_app(LMLM.from_pretrained(model, kb=SqliteKB(kb)))) as base:
        yield base


@pytest.fixture(scope="module")
def keyed_url(tmp_path_factory):
    """A server whose key guards everything, generation too."""
    model, kb = tiny_lmlm_copy(tmp_path_factory)
    with serving(create_app(LMLM.from_pretrained(model, kb=SqliteKB(kb)), ServeConfig(api_key=KEY, protect="all"))) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(url, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    page.goto(url)
    return page


def generation(page) -> int:
    return int(page.locator("#output").get_attribute("data-generation") or 0)


def wait_for_new_result(page, after: int) -> None:
    page.wait_for_function(f"Number(document.querySelector('#output').dataset.generation || 0) > {after}")


def generate(page, prompt: str) -> None:
    before = generation(page)
    page.fill("#prompt", prompt)
    page.press("#prompt", "Control+Enter")  # the keyboard shortcut
    wait_for_new_result(page, before)


def test_look_up_edit_and_forget_a_fact_in_the_page(page):
    generate(page, PROMPT)
    fact = page.locator("#output .fact").first
    fact.wait_for()
    city = fact.inner_text()
    assert city and page.locator("#output .fact").count() >= 1
    fact.hover()
    tooltip = page.locator("#tooltip")
    assert "Juno Yarnlowe" in tooltip.inner_text() and "Birth City" in tooltip.inner_text() and "exact" in tooltip.inner_text()
    page.screenshot(path=str(ARTIFACTS / "1-fact-highlighted.png"))

    # edit with the keyboard: focus the fact, Enter opens it, type the new value, save
    fact.focus()
    page.keyboard.press("Enter")
    page.locator("#fact-dialog[open]").wait_for()
    page.fill("#fact-value", "Port Zembla")
    page.screenshot(path=str(ARTIFACTS / "2-editing.png"))
    before = generation(page)
    page.click("#fact-save")
    wait_for_new_result(page, before)
    assert "Port Zembla" in [f.inner_text() for f in page.locator("#output .fact").all()]
    assert city not in [f.inner_text() for f in page.locator("#output .fact").all()]
    page.screenshot(path=str(ARTIFACTS / "3-edited-and-regenerated.png"))

    # forget the entity: its facts no longer come back
    page.locator("#output .fact").first.click()
    page.locator("#fact-dialog[open]").wait_for()
    before = generation(page)
    page.click("#fact-forget")
    wait_for_new_result(page, before)
    shown = [f.inner_text() for f in page.locator("#output .fact").all()]
    assert "Port Zembla" not in shown and city not in shown
    page.hover("#output")
    for chip in page.locator("#output .fact").all():
        chip.hover()
        assert "exact" not in page.locator("#tooltip").inner_text()
    page.screenshot(path=str(ARTIFACTS / "4-forgotten.png"))


def test_kb_browser_search_and_add(page):
    page.fill("#search", "Amara")
    page.press("#search", "Enter")
    page.locator("#facts tbody tr").first.wait_for()
    assert "Amara Lindworth" in page.locator("#facts").inner_text()
    page.fill("#add-entity", "Amara Lindworth")
    page.fill("#add-relation", "Favourite Colour")
    page.fill("#add-value", "teal")
    page.click("#add-form button")
    page.wait_for_function("document.querySelector('#facts').textContent.includes('Favourite Colour')")
    page.screenshot(path=str(ARTIFACTS / "5-kb-browser.png"), full_page=True)


def test_all_facts_of_an_entity_whose_name_holds_a_slash(page):
    page.fill("#add-entity", "AC/DC Band")
    page.fill("#add-relation", "Genre")
    page.fill("#add-value", "hard rock")
    page.click("#add-form button")  # then the page lists all facts of the new fact's entity
    page.wait_for_function("document.querySelector('#facts').textContent.includes('hard rock')")
    with page.expect_response(lambda reply: "/v1/kb/entity/" in reply.url) as listed:
        page.click("button[title='All facts of AC/DC Band']")
    assert listed.value.status == 200 and listed.value.url.endswith("/v1/kb/entity/AC%2FDC%20Band")
    assert "error" not in (page.locator("#status").get_attribute("class") or "")
    assert page.locator("#facts tbody tr").count() == 1


def test_the_page_sends_the_api_key_it_is_given_and_keeps_it_for_the_session(keyed_url, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    page.goto(keyed_url)
    page.fill("#prompt", PROMPT)
    page.click("#generate")  # without the key: refused, and the page says where the key goes
    page.wait_for_function("document.querySelector('#status').classList.contains('error')")
    assert "bearer token" in page.locator("#status").inner_text() and "API key" in page.locator("#status").inner_text()

    page.fill("#api-key", KEY)
    generate(page, PROMPT)
    page.locator("#output .fact").first.click()
    page.locator("#fact-dialog[open]").wait_for()
    page.fill("#fact-value", "Port Zembla")
    before = generation(page)
    page.click("#fact-save")
    wait_for_new_result(page, before)
    assert "Port Zembla" in [f.inner_text() for f in page.locator("#output .fact").all()]
    assert "error" not in (page.locator("#status").get_attribute("class") or "")
    page.screenshot(path=str(ARTIFACTS / "6-api-key.png"))

    page.reload()  # sessionStorage: the key stays for the tab's session
    assert page.input_value("#api-key") == KEY
    page.fill("#add-entity", "Amara Lindworth")
    page.fill("#add-relation", "Favourite Colour")
    page.fill("#add-value", "teal")
    page.click("#add-form button")
    page.wait_for_function("document.querySelector('#facts').textContent.includes('Favourite Colour')")
    page.close()
