"""README.md is generated from nbs/index.ipynb; the two must agree, and the README's set-up block is what CI runs."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_is_generated_from_index():
    r = subprocess.run([sys.executable, str(ROOT / 'docs' / 'make_readme.py'), '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_readme_setup_block_has_install_and_test_commands():
    text = (ROOT / 'README.md').read_text()
    block = re.search(r'^```sh\n(.*?)^```', text, flags=re.S | re.M).group(1).strip().splitlines()
    assert len(block) == 2, block
    install, test = block
    assert install.startswith('pip install -e ".[dev]"') and '-c constraints.txt' in install
    assert 'nbdev_test' in test and 'pytest tests' in test
    assert 'jupyter lab nbs' in text
    # the README's block sits near the top, before any other code
    assert text.index('```sh') < text.index('```python')
