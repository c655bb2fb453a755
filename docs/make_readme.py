"""Write README.md from nbs/index.ipynb, so the README and the docs' front page agree.

`nbdev_readme` does this through Quarto; this script does the same without it (Quarto cannot be installed
everywhere): markdown cells as they are, code cells as fenced Python, their saved text outputs as fenced
text. Cells marked `#| hide` are left out, `#|` directive lines are dropped, `#| echo: false` keeps only the
output and `#| output: false` only the code.

    python docs/make_readme.py            # rewrite README.md
    python docs/make_readme.py --check    # exit 1 if README.md is out of date
"""
import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
DIRECTIVE = re.compile(r'^\s*#\|\s*(.*)$')


def _directives(source: str) -> tuple[set[str], str]:
    "The cell's `#|` directives (normalised like 'echo: false') and its source without them."
    found, kept = set(), []
    for line in source.splitlines():
        m = DIRECTIVE.match(line)
        if m:
            found.add(re.sub(r'\s+', ' ', m.group(1).strip().lower()))
        else:
            kept.append(line)
    return found, '\n'.join(kept).strip('\n')


def _outputs(cell) -> list[str]:
    texts = []
    for out in cell.get('outputs', []):
        if out.get('output_type') == 'stream' and out.get('name') == 'stdout':
            texts.append(out.get('text', ''))
        elif out.get('output_type') in ('execute_result', 'display_data'):
            plain = out.get('data', {}).get('text/plain')
            if plain and 'text/html' not in out.get('data', {}):
                texts.append(plain if isinstance(plain, str) else ''.join(plain))
    return [t.rstrip('\n') for t in texts if t.strip()]


def render(nb_path: Path) -> str:
    nb = nbformat.read(nb_path, as_version=4)
    parts = [f'<!-- Generated from {nb_path.relative_to(ROOT).as_posix()} by docs/make_readme.py: edit the notebook, not this file. -->']
    for cell in nb.cells:
        if cell.cell_type == 'markdown':
            parts.append(cell.source.strip('\n'))
        elif cell.cell_type == 'code':
            flags, code = _directives(cell.source)
            if 'hide' in flags or 'include: false' in flags:
                continue
            if code and 'echo: false' not in flags:
                parts.append(f'```python\n{code}\n```')
            if 'output: false' not in flags:
                parts += [f'```\n{t}\n```' for t in _outputs(cell)]
    return '\n\n'.join(parts) + '\n'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true', help='only check that README.md is up to date')
    args = parser.parse_args(argv)
    text = render(ROOT / 'nbs' / 'index.ipynb')
    readme = ROOT / 'README.md'
    if args.check:
        if not readme.exists() or readme.read_text(encoding='utf-8') != text:
            print('README.md is out of date with nbs/index.ipynb: run python docs/make_readme.py', file=sys.stderr)
            return 1
        return 0
    readme.write_text(text, encoding='utf-8')
    print(f'wrote {readme}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
