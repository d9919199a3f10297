"""The web page against a service that requires keys, in headless Chromium: it asks for a key on the first 401,
says so when a key is refused or lacks the scope, keeps the key for the tab only (sessionStorage: a reload keeps
it, a new tab asks again, nothing in localStorage or cookies) and sends it with every call."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.service.rest.test_ui import Console, browser, png, screenshot, upload, wait_for_answers
from tests.support.access import INFER, METRICS, UNKNOWN, keys_volume
from tests.support.onnx_models import write_test_repository
from tests.support.server import ServiceProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

__all__ = ["browser"]  # the module-scoped Chromium fixture of test_ui.py


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    root = write_test_repository(tmp_path_factory.mktemp("models"))
    volume = keys_volume(tmp_path_factory.mktemp("keys"))
    env = {"CATDOG_MODEL_DIR": str(root), "CATDOG_API_KEYS_FILE": str(volume.path("keys.json"))}
    with ServiceProcess(env) as service:
        yield service


def enter_key(page: Page, key: str) -> None:
    page.fill("#api-key", key)
    page.click("#key-submit")


def test_the_page_asks_for_a_key_and_keeps_it_for_the_tab(browser: Browser, keyed: ServiceProcess) -> None:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    console = Console(page)
    page.goto(keyed.base_url + "/")
    page.wait_for_selector("#key-form:not([hidden])")
    assert page.evaluate("document.activeElement.id") == "api-key"
    assert page.get_attribute("#api-key", "type") == "password"
    page.wait_for_function("() => document.getElementById('models-loading').textContent.includes('API key')")
    assert page.query_selector_all(".card") == []
    screenshot(page, "key-asked.png")

    enter_key(page, UNKNOWN)  # a wrong key: asked again, with why
    page.wait_for_selector("#key-error:not([hidden])")
    assert "not accepted" in page.inner_text("#key-error")
    assert page.evaluate("sessionStorage.getItem('catdog.apiKey')") is None

    enter_key(page, INFER)
    page.wait_for_selector(".card .model-status.status-ready >> nth=1")
    assert page.is_hidden("#key-form")
    upload(page, "red.png", png((230, 20, 20)), "image/png")
    answers = wait_for_answers(page)
    assert {n: a["label"] for n, a in answers.items()} == {"pretrained": "cat", "scratch": "cat"}
    assert page.evaluate("sessionStorage.getItem('catdog.apiKey')") == INFER
    assert page.evaluate("localStorage.length") == 0
    assert context.cookies() == []
    screenshot(page, "key-answers.png")

    page.reload()  # the same tab keeps its key
    page.wait_for_selector(".card .model-status.status-ready >> nth=1")
    assert page.is_hidden("#key-form")
    other = context.new_page()  # a new tab does not have it
    other.goto(keyed.base_url + "/")
    other.wait_for_selector("#key-form:not([hidden])")
    assert other.evaluate("sessionStorage.getItem('catdog.apiKey')") is None
    assert console.unexpected(401) == []
    context.close()


def test_a_key_without_the_infer_scope_is_explained(page: Page, keyed: ServiceProcess) -> None:
    page.goto(keyed.base_url + "/")
    page.wait_for_selector("#key-form:not([hidden])")
    enter_key(page, METRICS)
    page.wait_for_selector("#key-error:not([hidden])")
    assert "infer scope" in page.inner_text("#key-error")


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


def test_without_keys_the_page_never_asks(page: Page, service: ServiceProcess, tmp_path: Path) -> None:
    page.goto(service.base_url + "/")
    page.wait_for_selector(".card .model-status.status-ready >> nth=1")
    assert page.is_hidden("#key-form")
