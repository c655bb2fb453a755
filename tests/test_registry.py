"""The registry's rule for a class defined again (chapter 02).

A class registered again under its name with the same `__module__` and `__qualname__` replaces the old one (a cell
run twice). A notebook's copy of a library class (`__module__ == '__main__'`) is used while that notebook is
`sys.modules['__main__']` only: nbdev_test runs many notebooks in one worker process, one CaptureShell after
another (each installs its own `__main__`), and a chapter's copy must not leak into the next. A different class
under a taken name is an error unless `force=True`.
"""
import pytest
from execnb.shell import CaptureShell

import learndet  # noqa: F401
from learndet.models.necks import FPN
from learndet.registry import NECKS, Registry, build_from_cfg

NOTEBOOK_COPY = """
from learndet.registry import NECKS
@NECKS.register_module()
class FPN:                      # the chapter's own definition of the library's FPN
    pass
seen_here = NECKS.get('FPN')
"""


def test_notebook_copy_stays_in_its_notebook():
    first = CaptureShell()
    first.run_cell(NOTEBOOK_COPY)
    assert first.exc is None, first.exc
    copy = first.user_ns['FPN']
    assert copy is not FPN and copy.__module__ == '__main__'
    assert first.user_ns['seen_here'] is copy                  # inside its notebook, configs build the copy
    first.run_cell(NOTEBOOK_COPY)                              # the cell run again: the new copy replaces the old
    assert first.exc is None, first.exc
    assert first.user_ns['seen_here'] is first.user_ns['FPN'] is not copy
    second = CaptureShell()                                    # the next notebook in the same process
    second.run_cell("from learndet.registry import NECKS\nseen_next = NECKS.get('FPN')")
    assert second.exc is None, second.exc
    assert second.user_ns['seen_next'] is FPN                  # ... gets the library's class back
    assert NECKS.module_dict['FPN'] is FPN


def test_plain_registration_and_force_still_replace():
    shell = CaptureShell()
    shell.run_cell("""
from learndet.registry import NECKS
class Mine: pass
NECKS.register_module(name='FPN', force=True, module=Mine)   # deliberate replacement: global
got = NECKS.get('FPN')
""")
    try:
        assert shell.exc is None, shell.exc
        assert shell.user_ns['got'] is shell.user_ns['Mine'] and NECKS.module_dict['FPN'] is shell.user_ns['Mine']
    finally:
        NECKS.register_module(name='FPN', force=True, module=FPN)
    assert NECKS.get('FPN') is FPN


def test_same_module_and_qualname_replaces_a_different_class_is_refused():
    reg = Registry('t')

    def define(module):                      # a class `Thing` as a module named `module` would define it
        return type('Thing', (), {'__module__': module})

    first, again = define('pkg.a'), define('pkg.a')
    reg.register_module(module=first)
    reg.register_module(module=again)                          # the same definition run again
    assert reg.get('Thing') is again and len(reg) == 1
    with pytest.raises(KeyError, match="'Thing' is already registered in the t registry"):
        reg.register_module(module=define('pkg.b'))            # same name, another module: a different class
    forced = define('pkg.b')
    reg.register_module(module=forced, force=True)
    assert reg.get('Thing') is forced


def test_unknown_type_suggests_the_closest_names():
    reg = Registry('t')
    for name in ['FocalLoss', 'GHMC', 'SmoothL1Loss']:
        reg.register_module(name=name, module=dict)
    with pytest.raises(KeyError, match="'FocalLos' is not in the t registry. Did you mean 'FocalLoss'"):
        build_from_cfg(dict(type='FocalLos'), reg)
