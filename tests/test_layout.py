"The exported modules import one way, in the course order, with no circle (measured by docs/code_stats.py)."
import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location('code_stats', Path(__file__).parents[1] / 'docs' / 'code_stats.py')
code_stats = importlib.util.module_from_spec(spec)
spec.loader.exec_module(code_stats)


def test_every_module_names_its_notebook():
    mods = code_stats.lib_modules()
    assert len(mods) > 20
    missing = [str(p) for p in mods.values() if code_stats.notebook_of(p) is None]
    assert missing == []


def test_imports_follow_the_course_order():
    mods = code_stats.lib_modules()
    assert code_stats.order_violations(mods, code_stats.import_edges(mods)) == []


def test_no_import_circle():
    mods = code_stats.lib_modules()
    edges = code_stats.import_edges(mods)
    assert code_stats.find_cycle(edges) is None


def test_the_checks_can_fail():
    # a made-up graph: boxes (03) importing the runner (15) breaks the order, and a -> b -> a is a circle
    assert code_stats.find_cycle([('a', 'b', 1, True), ('b', 'a', 2, False)]) == ['a', 'b', 'a']
    mods = code_stats.lib_modules()
    fake = [('learndet.boxes', 'learndet.runner', 1, False)]
    assert len(code_stats.order_violations(mods, fake)) == 1
