"""The documentation site in a real browser: headless Chromium from the distribution, driven by Selenium.

The site (built from a copy of the tree with a planted plot, see ``conftest.py``) is served on loopback.
The test opens the home page, finds clause HSER-4.2 with the search box, opens it, follows its
traceability row to its implementation, its conformance cases and its proof certificate, and checks that
every image of the benchmarks pages loaded. Screenshots go to a temporary directory (their paths are
printed; ``LITE_LLM_SCREENSHOTS=DIR`` keeps them in DIR).

Needs Chromium and its driver from the distribution (``apt-get install chromium chromium-driver``):
Selenium is pointed at ``/usr/bin/chromedriver``, so Selenium Manager never runs and nothing is downloaded.
"""
from __future__ import annotations

import functools
import http.server
import os
import shutil
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).is_file()), None)
CHROMEDRIVER = "/usr/bin/chromedriver"
CLAUSE = "HSER-4.2"
HOW = "install them with: apt-get update && apt-get install -y chromium chromium-driver"

if CHROMIUM is None or not Path(CHROMEDRIVER).is_file():
    pytest.skip(f"Chromium or chromedriver is not installed ({CHROMIUM or '/usr/bin/chromium'}, {CHROMEDRIVER}); "
                f"{HOW}", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (the docs extra)")

from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.selenium_manager import SeleniumManager  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def served(planted_site):
    root, site, proc = planted_site
    assert proc.returncode == 0, proc.stderr[-5000:]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", site
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(monkeypatch_module):
    def no_manager(*args, **kwargs):
        raise AssertionError("Selenium Manager must not run: the driver is /usr/bin/chromedriver")

    monkeypatch_module.setattr(SeleniumManager, "binary_paths", no_manager)
    monkeypatch_module.setenv("SE_OFFLINE", "true")
    profile = tempfile.mkdtemp(prefix="lite-llm-chromium-")
    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1400,1000"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    keep = os.environ.get("LITE_LLM_SCREENSHOTS")
    folder = Path(keep) if keep else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    taken = []

    def shoot(driver, name):
        path = folder / f"{len(taken) + 1:02d}-{name}.png"
        assert driver.save_screenshot(str(path)), path
        taken.append(path)
        print(f"screenshot: {path}")
        return path

    yield shoot
    print("screenshots:\n" + "\n".join(f"  {p}" for p in taken))


def wait(driver, seconds=15):
    return WebDriverWait(driver, seconds)


def is_clause(url: str) -> bool:
    """A URL of the clause's anchor on its chapter page (Material adds ``?h=...`` to search results)."""
    parts = urlsplit(url)
    return parts.path.endswith("/spec/02-hser/") and parts.fragment == CLAUSE


def target_in_view(driver, anchor: str):
    """The element the URL's fragment names exists on the page."""
    return driver.execute_script("return document.getElementById(arguments[0]) !== null", anchor)


def test_find_a_clause_by_search_and_follow_its_traceability(served, browser, shots):
    base, _ = served
    d = browser
    d.get(base + "/")
    assert "Lite LLM" in d.title
    shots(d, "home")

    # the search box: type the clause id, wait for the results, click the one for the clause itself
    box = wait(d).until(EC.element_to_be_clickable((By.CSS_SELECTOR, "input.md-search__input")))
    box.click()                                  # opens the search overlay, as a user's click does
    box.send_keys(CLAUSE)
    hrefs = "return Array.from(document.querySelectorAll('a.md-search-result__link')).map(a => a.href)"
    wait(d, 30).until(lambda drv: any(is_clause(h) for h in drv.execute_script(hrefs)))
    wait(d).until(EC.visibility_of_element_located((By.CSS_SELECTOR, ".md-search-result__item")))
    shots(d, "search-results")
    sections = [h for h in d.execute_script(hrefs) if urlsplit(h).fragment]
    assert is_clause(sections[0]), f"the clause is not the first section found: {sections[:5]}"
    d.execute_script("Array.from(document.querySelectorAll('a.md-search-result__link'))"
                     ".find(a => a.href === arguments[0]).click();", sections[0])
    wait(d).until(lambda drv: is_clause(drv.current_url))
    heading = wait(d).until(EC.presence_of_element_located((By.ID, CLAUSE)))
    assert heading.tag_name == "h4" and CLAUSE in heading.text
    shots(d, "clause")

    # the clause -> its row of the traceability matrix
    trace = d.find_element(By.CSS_SELECTOR, f"a[href$='traceability/#{CLAUSE}']")
    d.execute_script("arguments[0].click();", trace)
    wait(d).until(lambda drv: drv.current_url.endswith(f"/traceability/#{CLAUSE}"))
    row = wait(d).until(EC.presence_of_element_located((By.XPATH, f"//tr[.//a[@id='{CLAUSE}']]")))
    d.execute_script("arguments[0].scrollIntoView({block: 'center'});", row)
    shots(d, "traceability")
    impl = row.find_element(By.CSS_SELECTOR, "a[href*='api/lite_llm.reference/#lite_llm.reference.']")
    cases = row.find_element(By.CSS_SELECTOR, f"a[href$='conformance/cases/#{CLAUSE}']")
    proofs = row.find_elements(By.CSS_SELECTOR, "a[href*='/proofs/']")
    assert proofs, "no proof certificate cites the clause"
    proofs = [p for p in proofs if "planted" not in p.get_attribute("href")] or proofs   # a real certificate
    links = {"implementation": impl.get_attribute("href"), "cases": cases.get_attribute("href"),
             "proof": proofs[0].get_attribute("href")}
    proof_href = proofs[0].get_dom_attribute("href")
    print(links)

    # -> its implementation (the module's API reference)
    d.execute_script("arguments[0].click();", impl)
    anchor = links["implementation"].split("#", 1)[1]
    wait(d).until(lambda drv: drv.current_url == links["implementation"])
    assert target_in_view(d, anchor)
    assert d.find_element(By.ID, anchor).text.strip(), "the module heading is empty"
    shots(d, "implementation")
    d.back()

    # -> its conformance cases
    row = wait(d).until(EC.presence_of_element_located((By.XPATH, f"//tr[.//a[@id='{CLAUSE}']]")))
    d.execute_script("arguments[0].click();", row.find_element(By.CSS_SELECTOR,
                                                               f"a[href$='conformance/cases/#{CLAUSE}']"))
    wait(d).until(lambda drv: drv.current_url == links["cases"])
    assert target_in_view(d, CLAUSE)
    case_rows = d.find_elements(By.XPATH, f"//p[@id='{CLAUSE}']/following-sibling::*[1]//tbody/tr")
    assert case_rows, "no case listed under the clause"
    shots(d, "cases")
    d.back()

    # -> its proof certificate
    row = wait(d).until(EC.presence_of_element_located((By.XPATH, f"//tr[.//a[@id='{CLAUSE}']]")))
    d.execute_script("arguments[0].click();", row.find_element(By.CSS_SELECTOR, f"a[href='{proof_href}']"))
    wait(d).until(lambda drv: drv.current_url == links["proof"])
    body = d.find_element(By.CSS_SELECTOR, "article").text
    assert "Status:" in body and "Claims" in body and CLAUSE in body
    shots(d, "proof")


def test_every_plot_of_the_benchmarks_pages_loads(served, browser, shots):
    base, site = served
    d = browser
    pages = sorted(p.parent.relative_to(site).as_posix() for p in (site / "benchmarks").rglob("index.html"))
    assert "benchmarks" in pages
    seen = 0
    for rel in pages:
        d.get(f"{base}/{rel}/")
        imgs = d.find_elements(By.CSS_SELECTOR, "article img")
        for img in imgs:
            d.execute_script("arguments[0].scrollIntoView({block: 'center'});", img)
            wait(d).until(lambda drv, el=img: drv.execute_script("return arguments[0].complete", el))
            width = d.execute_script("return arguments[0].naturalWidth", img)
            assert width > 0, f"{rel}: image {img.get_attribute('src')} did not load"
        seen += len(imgs)
        if imgs:
            shots(d, "plots-" + rel.replace("/", "-"))
    assert seen >= 2, "the planted plot should appear on the benchmarks page and on its report page"
    print(f"{seen} image(s) on {len(pages)} benchmarks page(s), all loaded")
