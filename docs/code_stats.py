"""How the exported code is laid out, measured from the sources: module sizes, the import graph, cell lengths.

    python docs/code_stats.py            # the three tables
    python docs/code_stats.py --check    # exit 1 if an import runs against the course order or closes a circle

The course order is the order of the notebooks (`nbs/NN*.ipynb`): a module may import the modules of its own
chapter and of earlier ones, at the top of the file or inside a function, and never a later chapter's. Every
module names its notebook in its "File to edit" line, which is how a module is put in the order.
"""
from __future__ import annotations

import argparse
import ast
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIB, NBS = ROOT / 'learndet', ROOT / 'nbs'
SKIP = {'_modidx.py', '__init__.py'}   # learndet/__init__.py imports everything to fill the registries


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def lib_modules() -> dict[str, Path]:
    "Every exported module: dotted name -> path (package `__init__`s included, `learndet/__init__.py` not)."
    mods = {}
    for p in sorted(LIB.rglob('*.py')):
        if 'configs' in p.relative_to(LIB).parts or p.name == '_modidx.py' or p == LIB / '__init__.py':
            continue
        mods[module_name(p)] = p
    return mods


def notebook_of(path: Path) -> str | None:
    m = re.search(r'File to edit: [./]*nbs/(\S+\.ipynb)', path.read_text())
    return m.group(1) if m else None


def chapter_key(nb: str) -> tuple:
    "'12_dense_heads.ipynb' -> (12, '') ; '12a_fcos_head.ipynb' -> (12, 'a'): the course order."
    m = re.match(r'(\d+)([a-z]*)_', nb)
    return (int(m.group(1)), m.group(2)) if m else (10**6, nb)


def resolve(mod: str, node: ast.ImportFrom | ast.Import, is_pkg: bool) -> list[str]:
    "The learndet modules an import statement names."
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split('.')[0] == 'learndet']
    if node.level:
        base = mod.split('.') if is_pkg else mod.split('.')[:-1]
        base = base[:len(base) - (node.level - 1)]
        target = '.'.join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ''
    if target.split('.')[0] != 'learndet':
        return []
    # `from .pkg import name` may import a submodule called name
    return [target] + [f'{target}.{a.name}' for a in node.names]


def import_edges(mods: dict[str, Path]) -> list[tuple[str, str, int, bool]]:
    "(importer, imported, line, at top level) for every import between learndet modules."
    edges = []
    for mod, path in mods.items():
        tree = ast.parse(path.read_text())
        top = set(map(id, tree.body))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in resolve(mod, node, path.name == '__init__.py'):
                    if target in mods and target != mod:
                        edges.append((mod, target, node.lineno, id(node) in top))
    return edges


def find_cycle(edges) -> list[str] | None:
    graph = {}
    for a, b, *_ in edges:
        graph.setdefault(a, set()).add(b)
    state, stack = {}, []
    def visit(n):
        state[n] = 1; stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        state[n] = 2; stack.pop()
    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def order_violations(mods, edges) -> list[str]:
    "Imports of a later chapter's module (top level or inside a function)."
    chapter = {m: notebook_of(p) for m, p in mods.items()}
    bad = []
    for a, b, line, top in edges:
        ca, cb = chapter[a], chapter[b]
        if ca and cb and chapter_key(cb) > chapter_key(ca):
            where = 'top level' if top else 'inside a function'
            bad.append(f'{mods[a].relative_to(ROOT)}:{line} ({ca}) imports {b} ({cb}), a later chapter, at {where}')
    return bad


def exported_cell_lengths(nb: Path) -> list[int]:
    cells = json.loads(nb.read_text())['cells']
    lengths = []
    for c in cells:
        src = ''.join(c['source']) if c['cell_type'] == 'code' else ''
        first = src.lstrip().splitlines()[0] if src.strip() else ''
        if re.match(r'#\|\s*export', first):
            body = [l for l in src.splitlines() if l.strip() and not l.lstrip().startswith('#|')]
            lengths.append(len(body))
    return lengths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--check', action='store_true', help='only check the import graph; exit 1 on a problem')
    args = ap.parse_args(argv)
    mods = lib_modules()
    edges = import_edges(mods)
    cycle = find_cycle([e for e in edges if e[3]])
    bad = order_violations(mods, edges)
    if not args.check:
        print('## Modules (lines)\n')
        for m, p in mods.items():
            print(f'{len(p.read_text().splitlines()):6d}  {p.relative_to(ROOT)}  ({notebook_of(p)})')
        print('\n## Imports between modules (top level)\n')
        graph = {}
        for a, b, _, top in edges:
            if top:
                graph.setdefault(a, set()).add(b)
        for a in sorted(graph):
            print(f'{a} -> {", ".join(sorted(graph[a]))}')
        print('\n## Exported cells per chapter: count, median and largest length (non-blank, non-directive lines)\n')
        for nb in sorted(NBS.glob('[0-9]*.ipynb'), key=lambda p: chapter_key(p.name)):
            ls = exported_cell_lengths(nb)
            if ls:
                print(f'{nb.name:34s} {len(ls):3d} cells  median {statistics.median(ls):5.1f}  max {max(ls):3d}')
        print()
    print('import circle:', ' -> '.join(cycle) if cycle else 'none')
    print(f'imports against the course order: {len(bad)}')
    for b in bad:
        print('  ' + b)
    return 1 if (cycle or bad) else 0


if __name__ == '__main__':
    sys.exit(main())
