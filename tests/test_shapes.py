"""The shapes set is safe to share: two processes generating the same set at once (started together at a barrier)
end with one complete, valid set, drawn once; concurrent `make_shapes` never replace each other's folder; and a
`generate=dict(...)` that disagrees with the set on disk is an error naming the parameters, never ignored."""
import contextlib
import io
import json
import multiprocessing as mp
from pathlib import Path

import pytest
from PIL import Image
from pycocotools.coco import COCO

import learndet  # noqa: F401
from learndet.data import shapes
from learndet.data.datasets import build_dataset
from learndet.data.shapes import ShapesDataset, ShapesMismatchError, get_shapes_dataset, make_shapes, shapes_params

TINY = dict(num_images=16, img_size=48, seed=3)


def _count_writes(calls_file):
    "Make this process's `_write_shapes` append a line to `calls_file` each time it draws a set."
    write = shapes._write_shapes
    def counted(*args, **kwargs):
        with open(calls_file, 'a') as f:
            f.write('write\n')
        return write(*args, **kwargs)
    shapes._write_shapes = counted


def _get_worker(barrier, root, calls_file, queue):
    _count_writes(calls_file)
    barrier.wait()                                   # both processes are imported and start here together
    try:
        queue.put(('ok', str(get_shapes_dataset(root, **TINY))))
    except Exception as e:                           # pragma: no cover (reported by the test)
        queue.put(('error', repr(e)))


def _make_worker(barrier, root, calls_file, queue):
    _count_writes(calls_file)
    barrier.wait()
    try:
        queue.put(('ok', str(make_shapes(root, **TINY))))
    except FileExistsError as e:
        queue.put(('exists', str(e)))
    except Exception as e:                           # pragma: no cover
        queue.put(('error', repr(e)))


def _run_two(target, root, calls_file):
    # fork (where there is one): the children start at once with learndet already imported; spawn elsewhere
    ctx = mp.get_context('fork' if 'fork' in mp.get_all_start_methods() else 'spawn')
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=target, args=(barrier, str(root), str(calls_file), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return results


def check_complete_and_valid(root: Path):
    "The set in `root` is whole: the COCO files load, every image listed exists, opens and has its size, the record matches."
    assert json.loads((root / 'shapes_meta.json').read_text()) == shapes_params(**TINY)
    for split, n in (('train', 13), ('val', 3)):                  # val_fraction 0.2 of 16 -> 3
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(root / 'annotations' / f'instances_{split}.json'))
        assert len(coco.imgs) == n and len(list((root / split).iterdir())) == n
        for img in coco.imgs.values():
            with Image.open(root / split / img['file_name']) as im:
                im.load()
                assert im.size == (img['width'], img['height']) == (48, 48)
    assert not [p.name for p in root.parent.iterdir() if '.tmp-' in p.name or '.old-' in p.name]   # no leftovers


def test_two_processes_generating_the_same_set_at_once(tmp_path):
    root, calls = tmp_path / 'shared' / 'shapes', tmp_path / 'calls.txt'
    results = _run_two(_get_worker, root, calls)
    assert results == [('ok', str(root))] * 2, results
    check_complete_and_valid(root)
    assert calls.read_text().count('write') == 1                  # drawn once: the loser waited and reused it
    before = (root / 'train' / '000001.jpg').stat().st_mtime_ns
    assert get_shapes_dataset(root, **TINY) == root                # a later call reuses it, rewriting nothing
    assert (root / 'train' / '000001.jpg').stat().st_mtime_ns == before


def test_two_make_shapes_at_once_never_replace_each_other(tmp_path):
    root, calls = tmp_path / 'made', tmp_path / 'calls.txt'
    results = sorted(_run_two(_make_worker, root, calls))
    assert [r[0] for r in results] == ['exists', 'ok'], results    # one wrote it, the other was refused ...
    assert 'exists; pass overwrite=True' in results[0][1]
    assert calls.read_text().count('write') == 1                  # ... before drawing anything
    check_complete_and_valid(root)


def test_generate_that_disagrees_with_the_set_on_disk_is_an_error(tmp_path):
    root = get_shapes_dataset(tmp_path / 'data' / 'shapes', **TINY)
    before = (root / 'shapes_meta.json').read_text()
    cfg = dict(type='ShapesDataset', ann_file=str(root / 'annotations' / 'instances_train.json'),
               img_prefix=str(root / 'train'), pipeline=[], filter_empty_gt=False)
    assert len(build_dataset(dict(cfg, generate=dict(TINY)))) == 13                      # agrees: used
    with pytest.raises(ShapesMismatchError) as e:
        build_dataset(dict(cfg, generate=dict(num_images=500, img_size=256, seed=3)))
    msg = str(e.value)
    assert 'num_images: 16 on disk, 500 asked' in msg and 'img_size: [48, 48] on disk, [256, 256] asked' in msg
    assert 'seed' not in msg and str(root) in msg                 # only what differs, and where
    with pytest.raises(ShapesMismatchError, match=r'empty_prob: 0.1 on disk, 0.0 asked'):   # a default counts too
        ShapesDataset(cfg['ann_file'], [], generate=dict(TINY, empty_prob=0.0))
    assert (root / 'shapes_meta.json').read_text() == before      # nothing was regenerated or replaced
    assert len(ShapesDataset(cfg['ann_file'], [], generate=False, filter_empty_gt=False)) == 13   # False: as it is
    with pytest.raises(TypeError, match='generate must be a dict'):
        ShapesDataset(cfg['ann_file'], [], generate='yes')


def test_a_folder_that_is_not_a_shapes_set_is_never_touched(tmp_path):
    (tmp_path / 'mine' / 'annotations').mkdir(parents=True)
    (tmp_path / 'mine' / 'annotations' / 'instances_train.json').write_text('{}')
    with pytest.raises(FileExistsError, match='is not a shapes dataset'):
        ShapesDataset(str(tmp_path / 'mine' / 'annotations' / 'instances_train.json'), [], generate=dict(TINY))
    assert (tmp_path / 'mine' / 'annotations' / 'instances_train.json').read_text() == '{}'
