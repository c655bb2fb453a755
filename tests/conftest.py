from browser import browser  # noqa: F401  (a session fixture shared by the browser tests)


def pytest_configure(config):
    config.addinivalue_line('markers', 'browser: drives headless Chromium (skipped where chromium is not installed)')
    config.addinivalue_line('markers', 'slow: long-running; run on demand with -m slow')
