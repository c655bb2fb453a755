"""The docs site: built offline from the notebooks by docs/build_docs.py, then looked at in headless Chromium."""
import html
import subprocess
import sys
import urllib.request
from pathlib import Path

import nbformat

import pytest

from browser import StaticServer, needs_browser, screenshot

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.browser, needs_browser]


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp('site')
    r = subprocess.run([sys.executable, str(ROOT / 'docs' / 'build_docs.py'), '--out', str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    with StaticServer(out) as server:
        yield server


def _title(nb_path: Path) -> str:
    for cell in nbformat.read(nb_path, as_version=4).cells:
        if cell.cell_type == 'markdown' and cell.source.startswith('# '):
            return cell.source.splitlines()[0][2:].strip()
    raise AssertionError(f'{nb_path.name} has no "# Title" cell')


def test_every_chapter_in_the_sidebar_in_order(site):
    nav = urllib.request.urlopen(site.url + '/index.html').read().decode()
    chapters = sorted((ROOT / 'nbs').glob('[0-9]*.ipynb'))
    assert chapters
    positions = []
    for nb in chapters:
        title = html.escape(_title(nb), quote=False)
        assert title in nav, f'chapter {nb.name} ({title!r}) is missing from the sidebar'
        positions.append(nav.index(title))
    assert positions == sorted(positions), 'chapters are not in course order in the sidebar'


def test_home_page(site, browser):
    page = browser.new_page(viewport={'width': 1280, 'height': 900})
    page.goto(site.url + '/index.html')
    assert 'learndet' in page.title()
    assert 'pip install -e ".[dev]" -c constraints.txt' in page.inner_text('body')
    screenshot(page, 'docs_home')
    page.close()


def test_anchors_chapter_figure_loads(site, browser):
    page = browser.new_page(viewport={'width': 1280, 'height': 900})
    page.goto(site.url + '/anchors.html')
    page.wait_for_load_state('load')
    sizes = page.eval_on_selector_all('img', 'imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight])')
    plots = [s for s in sizes if s[0] > 100 and s[1] > 100]
    assert plots, f'no loaded figure on the anchors page (image sizes: {sizes})'
    page.locator('img').nth(0).scroll_into_view_if_needed()
    screenshot(page, 'docs_anchors')
    page.close()


def test_api_entry(site, browser):
    page = browser.new_page(viewport={'width': 1280, 'height': 900})
    page.goto(site.url + '/api.html')
    text = page.inner_text('body')
    assert 'AnchorGenerator(strides' in text
    assert 'build_from_cfg(cfg' in text
    page.get_by_text('AnchorGenerator(strides').first.scroll_into_view_if_needed()
    screenshot(page, 'docs_api')
    page.close()


def test_search_finds_maxiouassigner(site, browser):
    page = browser.new_page(viewport={'width': 1280, 'height': 900})
    page.goto(site.url + '/index.html')
    page.locator('label.md-search__icon, .md-search__input').first.click()
    page.fill('input.md-search__input', 'MaxIoUAssigner')
    results = page.locator('.md-search-result__item')
    results.first.wait_for(timeout=30000)
    assert results.count() > 0
    assert 'MaxIoUAssigner' in page.inner_text('.md-search-result')
    screenshot(page, 'docs_search')
    page.close()
