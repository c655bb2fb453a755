"""The course as a person uses it: JupyterLab in headless Chromium, a chapter run, a widget slider moved.

Each case opens a chapter in JupyterLab (served on loopback with a token, from a copy of nbs/ so autosave
cannot touch the sources), runs all its cells, finds the widget (an ipywidgets box with a slider and an
Output holding a figure), drags the slider, and checks that the figure the person sees has changed.
"""
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from browser import free_port, needs_browser, screenshot

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.browser, needs_browser]

# (chapter, the text that marks the cell displaying the widget)
WIDGET_CHAPTERS = [
    ('06_anchors.ipynb', 'anchor_widget('),
    ('08_assigners.ipynb', 'assignment_widget('),
    ('17a_coco_eval.ipynb', 'pr_widget('),
]


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp('lab')
    shutil.copytree(ROOT / 'nbs', root / 'nbs')
    home = root / 'home'
    env = {**os.environ, 'HOME': str(home), 'JUPYTER_CONFIG_DIR': str(home / 'config'),
           'JUPYTERLAB_SETTINGS_DIR': str(home / 'settings'), 'JUPYTERLAB_WORKSPACES_DIR': str(home / 'workspaces'),
           'JUPYTER_RUNTIME_DIR': str(home / 'runtime'), 'MPLBACKEND': 'module://matplotlib_inline.backend_inline'}
    port, token = free_port(), secrets.token_hex(16)
    proc = subprocess.Popen(
        [sys.executable, '-m', 'jupyter', 'lab', '--no-browser', '--ip=127.0.0.1', f'--port={port}',
         f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={root / "nbs"}',
         '--LabApp.expose_app_in_browser=True', '--LabApp.news_url=', '--ServerApp.open_browser=False', '--allow-root'],
        env=env, stdout=subprocess.DEVNULL, stderr=open(root / 'lab.log', 'w'))
    url = f'http://127.0.0.1:{port}'
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f'{url}/api/status?token={token}', timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail('JupyterLab did not start:\n' + (root / 'lab.log').read_text()[-3000:])
            time.sleep(0.5)
    yield url, token
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def _widget_output_image(page):
    "The active cell (the widget's) and the <img> of the figure in its widget output."
    cell = page.locator('.jp-NotebookPanel:visible .jp-CodeCell.jp-mod-active').first   # the open tab's notebook
    img = cell.locator('.widget-output img').first
    return cell, img


@pytest.mark.parametrize('chapter, marker', WIDGET_CHAPTERS)
def test_widget_responds_to_slider(lab, browser, chapter, marker):
    if not (ROOT / 'nbs' / chapter).exists():
        pytest.fail(f'{chapter} is missing')
    url, token = lab
    page = browser.new_page(viewport={'width': 1400, 'height': 1000})
    page.set_default_timeout(240_000)
    page.goto(f'{url}/lab/tree/{chapter}?reset&token={token}')   # reset: no tabs restored from the last test
    page.wait_for_function('() => window.jupyterapp && window.jupyterapp.shell.currentWidget '
                           '&& window.jupyterapp.shell.currentWidget.sessionContext '
                           '&& window.jupyterapp.shell.currentWidget.sessionContext.session '
                           '&& window.jupyterapp.shell.currentWidget.sessionContext.session.kernel')
    # run the chapter up to and including the widget cell, as a reader would (the chapter's last cell, the
    # nbdev export, is for authors and is not run)
    found = page.evaluate("""async (marker) => {
        const app = window.jupyterapp, nb = app.shell.currentWidget.content;
        const src = c => c.model.sharedModel.getSource();
        const idx = nb.widgets.findIndex(c => c.model.type === 'code' && !src(c).includes('#| export')
                                              && src(c).includes(marker));
        if (idx < 0) return false;
        nb.activeCellIndex = idx;
        await app.commands.execute('notebook:run-all-above');
        nb.activeCellIndex = idx;
        await app.commands.execute('notebook:run-cell');
        nb.activeCellIndex = idx;
        await nb.scrollToItem(idx);
        return true; }""", marker)
    assert found, f'no cell in {chapter} contains {marker!r}'
    # wait until the kernel has finished every cell
    page.wait_for_timeout(2000)
    page.wait_for_function("() => { const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;"
                           " return k.status === 'idle'; }", polling=1000)
    errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]:has-text("Traceback")')
    assert errors.count() == 0, errors.first.inner_text()[:2000]
    cell, img = _widget_output_image(page)
    img.wait_for(state='visible')
    page.wait_for_function("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'",
                           polling=1000)
    cell.scroll_into_view_if_needed()
    before = img.get_attribute('src')
    shot_before = screenshot(cell, f'lab_{Path(chapter).stem}_before')
    handle = cell.locator('.widget-slider .noUi-handle').first
    handle.scroll_into_view_if_needed()
    box = handle.bounding_box()
    track = cell.locator('.widget-slider .noUi-target').first.bounding_box()
    page.mouse.move(box['x'] + box['width'] / 2, box['y'] + box['height'] / 2)
    page.mouse.down()
    page.mouse.move(track['x'] + track['width'] * 0.75, box['y'] + box['height'] / 2, steps=8)
    page.mouse.up()
    deadline = time.time() + 60
    while img.get_attribute('src') == before and time.time() < deadline:   # the Output re-renders its <img>
        page.wait_for_timeout(500)
    after = img.get_attribute('src')
    screenshot(cell, f'lab_{Path(chapter).stem}_after')
    assert after != before, 'the figure did not change when the slider moved'
    assert shot_before.exists()
    page.close()
