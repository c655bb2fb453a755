from browser import browser  # noqa: F401  (a session fixture shared by the browser tests)


def pytest_configure(config):
    config.addinivalue_line('markers', 'browser: drives headless Chromium (skipped where chromium is not installed)')
    config.addinivalue_line('markers', 'slow: long-running; run on demand with -m slow')


def pytest_collection_modifyitems(config, items):
    "Tests marked slow run only when asked for (`pytest -m slow`, or LEARNDET_SLOW=1): the README's command stays short."
    import os
    import pytest
    if 'slow' in (config.getoption('markexpr') or '') or os.environ.get('LEARNDET_SLOW'):
        return
    skip = pytest.mark.skip(reason='slow: run with -m slow (or LEARNDET_SLOW=1)')
    for item in items:
        if 'slow' in item.keywords:
            item.add_marker(skip)
