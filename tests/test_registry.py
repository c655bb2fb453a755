"""A notebook's copy of a library class is registered for that notebook's IPython session only: nbdev_test runs
many notebooks in one worker process, one CaptureShell after another, and a chapter's copy must not leak."""
from execnb.shell import CaptureShell

import learndet  # noqa: F401
from learndet.models.necks import FPN
from learndet.registry import NECKS

NOTEBOOK_COPY = """
from learndet.registry import NECKS
@NECKS.register_module()
class FPN:                      # the chapter's own definition of the library's FPN
    pass
seen_here = NECKS.get('FPN')
"""


def test_notebook_copy_stays_in_its_session():
    first = CaptureShell()
    first.run_cell(NOTEBOOK_COPY)
    assert first.exc is None, first.exc
    copy = first.user_ns['FPN']
    assert copy is not FPN and copy.__module__ == '__main__'
    assert first.user_ns['seen_here'] is copy                  # inside its notebook, configs build the copy
    second = CaptureShell()                                    # the next notebook in the same process
    second.run_cell("from learndet.registry import NECKS\nseen_next = NECKS.get('FPN')")
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
