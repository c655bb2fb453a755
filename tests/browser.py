"""Shared helpers for the browser tests: Debian's Chromium driven by Playwright, and tiny local servers."""
from __future__ import annotations

import functools
import http.server
import os
import shutil
import socket
import threading
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).parent / 'artifacts'
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
# Chromium flags for a closed network and a root user: no sandbox, no background calls home.
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage']

if CHROMIUM is None and os.environ.get('LEARNDET_REQUIRE_BROWSER'):
    raise RuntimeError('LEARNDET_REQUIRE_BROWSER is set but no chromium is installed (apt-get install chromium)')
needs_browser = pytest.mark.skipif(CHROMIUM is None, reason='no chromium installed (apt-get install chromium)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class StaticServer:
    "Serve a folder on 127.0.0.1 from a background thread."
    def __init__(self, root: Path):
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}'
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope='session')
def browser():
    playwright = pytest.importorskip('playwright.sync_api')
    if CHROMIUM is None:
        pytest.skip('no chromium installed')
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f'{name}.png'
    page.screenshot(path=str(path))
    return path
