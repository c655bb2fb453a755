"""Datasets, shapes, pipelines and loaders (chapters 04-05): what a notebook is a poor home for —
command-line tools end to end, bad input, property tests, the loader with real workers, the benchmark smoke run."""
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from PIL import Image

from learndet.data import (ClassBalancedDataset, CocoDataset, Collect, ConcatDataset, CustomDataset, DefaultFormatBundle,
                           LoadAnnotations, LoadImageFromFile, Normalize, Pad, RandomCrop, RandomFlip, RepeatDataset,
                           Resize, ShapesDataset, VOCDataset, build_dataloader, build_dataset, collate, make_shapes)
from learndet.data.loader import DistributedGroupSampler, GroupSampler, browse_dataset_main
from learndet.data.transforms import Compose, bbox_flip

REPO = Path(__file__).resolve().parents[1]
FIX = REPO / 'tests' / 'fixtures'
COCO_JSON = FIX / 'coco' / 'annotations' / 'instances_tiny.json'
NORM = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
TRAIN_PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                  dict(type='Resize', img_scale=(128, 96), keep_ratio=True), dict(type='RandomFlip', flip_ratio=0.5),
                  dict(type='Normalize', **NORM), dict(type='Pad', size_divisor=32), dict(type='DefaultFormatBundle'),
                  dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels'])]


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp('shapes') / 'shapes', num_images=40, img_size=(128, 96), seed=0)


def shapes_ds(root, pipeline=TRAIN_PIPELINE, **kw):
    kw.setdefault('filter_empty_gt', False)
    return ShapesDataset(str(root / 'annotations/instances_train.json'), pipeline, img_prefix=str(root / 'train'), **kw)


# ---------------------------------------------------------------- shapes generator and its script
def test_make_shapes_script_and_determinism(tmp_path):
    out = tmp_path / 'cli'
    r = subprocess.run([sys.executable, str(REPO / 'data_scripts' / 'make_shapes.py'), str(out), '--num-images', '30',
                        '--img-size', '96', '64', '--seed', '3'], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    again = make_shapes(tmp_path / 'api', num_images=30, img_size=(96, 64), seed=3)
    for rel in ('annotations/instances_train.json', 'annotations/instances_val.json', 'train/000001.jpg', 'val/000030.jpg'):
        assert (out / rel).read_bytes() == (again / rel).read_bytes(), rel
    d = json.loads((out / 'annotations/instances_val.json').read_text())
    assert len(d['images']) == 6 and [c['name'] for c in d['categories']] == ['circle', 'square', 'triangle', 'star']
    r = subprocess.run([sys.executable, str(REPO / 'data_scripts' / 'make_shapes.py'), str(out)], capture_output=True, text=True)
    assert r.returncode != 0 and 'exists' in r.stderr


def test_shapes_boxes_match_pixels_many_seeds(tmp_path):
    "The COCO boxes of single objects on flat backgrounds match the pixels that changed (within rasterisation)."
    from learndet.data.shapes import SHAPE_CLASSES, make_background, render_shapes_image
    for seed in range(200):
        img, ann = render_shapes_image(np.random.default_rng(seed), 80, 60, classes=SHAPE_CLASSES, max_objects=1,
                                       empty_prob=0, noise=0)
        bg = make_background(np.random.default_rng(seed), 80, 60)
        ys, xs = np.nonzero(np.any(img != bg, -1))
        if len(xs) == 0:
            continue
        np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], ann['bboxes'][0], atol=1.5)


# ---------------------------------------------------------------- real formats and bad input
def test_coco_fixture_through_pipeline():
    with pytest.warns(UserWarning, match=r'skipped 1 annotation\(s\), as mmdetection 2\.x does: 1 under 1 px wide or high \(id 5\)'):
        ds = CocoDataset(str(COCO_JSON), TRAIN_PIPELINE, img_prefix=str(FIX / 'coco/images'), classes=('person', 'car', 'dog'))
    assert len(ds) == 3   # the empty image is filtered for training
    batch = collate([ds[i] for i in range(len(ds))])
    assert batch['img'].shape[0] == 3 and [len(b) for b in batch['gt_bboxes']] == [2, 2, 1]


def test_voc_fixture_through_pipeline():
    ds = VOCDataset(str(FIX / 'voc/VOC2007/ImageSets/Main/test.txt'), TRAIN_PIPELINE, img_prefix=str(FIX / 'voc/VOC2007'))
    item = ds[0]
    assert item['gt_labels'].tolist() == [14]            # the difficult car is not a training target
    assert ds.get_ann_info(0)['labels_ignore'].tolist() == [6]


def test_missing_image_names_the_file(tmp_path):
    shutil.copytree(FIX / 'coco', tmp_path / 'coco')
    (tmp_path / 'coco/images/img_001.jpg').unlink()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        ds = CocoDataset(str(tmp_path / 'coco/annotations/instances_tiny.json'), TRAIN_PIPELINE,
                         img_prefix=str(tmp_path / 'coco/images'), classes=('person', 'car', 'dog'))
    with pytest.raises(FileNotFoundError, match=r'image file not found: .*img_001\.jpg'):
        ds[0]


def test_boxes_outside_are_skipped_and_clipped(tmp_path):
    "mmdetection 2.x skips boxes outside the image and under 1 px; learndet does too, and says so; the rest are clipped."
    data = json.loads(COCO_JSON.read_text())
    data['annotations'] += [dict(id=50, image_id=3, category_id=1, bbox=[70, 10, 5, 5], area=25, iscrowd=0),    # outside
                            dict(id=51, image_id=3, category_id=1, bbox=[10, 10, 0.5, 5], area=2.5, iscrowd=0),  # < 1 px
                            dict(id=52, image_id=3, category_id=1, bbox=[-10, 40, 30, 30], area=900, iscrowd=0)]  # clipped
    (tmp_path / 'a.json').write_text(json.dumps(data))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        ds = CocoDataset(str(tmp_path / 'a.json'), classes=('person', 'car', 'dog'), test_mode=True)
    messages = ' | '.join(str(x.message) for x in w)
    assert 'skipped 3 annotation(s)' in messages and '1 outside its image (id 50)' in messages
    assert '2 under 1 px wide or high (ids 5, 51)' in messages and 'clipped 2 box(es)' in messages
    np.testing.assert_array_equal(ds.get_ann_info(2)['bboxes'], [[0, 40, 20, 48]])
    data['annotations'][-2]['bbox'] = [10, 10, -4, 5]                       # a negative width is refused, not skipped
    (tmp_path / 'a.json').write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r'a\.json: annotation 51 \(image img_003\.jpg\) has bbox .*negative width'):
        CocoDataset(str(tmp_path / 'a.json'), classes=('person', 'car', 'dog'), test_mode=True)


@pytest.mark.parametrize('mutate,match', [
    (lambda d: d['annotations'].append(dict(id=77, image_id=1, category_id=99, bbox=[1, 1, 2, 2])), 'category_id 99'),
    (lambda d: d.pop('categories'), 'not a COCO instances file'),
    (lambda d: d['images'][0].pop('width'), r"images\[0\] has no \['width'\]"),
])
def test_bad_coco_files(tmp_path, mutate, match):
    data = json.loads(COCO_JSON.read_text())
    mutate(data)
    (tmp_path / 'bad.json').write_text(json.dumps(data))
    with pytest.raises(ValueError, match=match) as e:
        CocoDataset(str(tmp_path / 'bad.json'), classes=('person',))
    assert 'bad.json' in str(e.value)


def test_unreadable_files(tmp_path):
    (tmp_path / 'trunc.json').write_text('{"images": [')
    with pytest.raises(ValueError, match=r'cannot parse annotation file .*trunc\.json'):
        CocoDataset(str(tmp_path / 'trunc.json'))
    (tmp_path / 'x.pkl').write_bytes(b'garbage')
    with pytest.raises(ValueError, match=r'x\.pkl'):
        CustomDataset(str(tmp_path / 'x.pkl'))
    (tmp_path / 'img.jpg').write_bytes(b'\xff\xd8 truncated')
    with pytest.raises(OSError, match=r'cannot read image .*img\.jpg'):
        LoadImageFromFile()(dict(img_info=dict(filename='img.jpg'), img_prefix=str(tmp_path)))
    voc = tmp_path / 'VOC2007'
    shutil.copytree(FIX / 'voc/VOC2007', voc)
    xml = (voc / 'Annotations/000002.xml').read_text().replace('<name>dog</name>', '<name>dgo</name>')
    (voc / 'Annotations/000002.xml').write_text(xml)
    with pytest.raises(ValueError, match=r"000002\.xml: object 'dgo' is not one of the classes"):
        VOCDataset(str(voc / 'ImageSets/Main/test.txt'), img_prefix=str(voc))
    (voc / 'Annotations/000002.xml').write_text(xml.replace('dgo', 'dog').replace('<xmin>10</xmin>', '<xmin>ten</xmin>'))
    with pytest.raises(ValueError, match=r"000002\.xml: <xmin> is not a number: 'ten'"):
        VOCDataset(str(voc / 'ImageSets/Main/test.txt'), img_prefix=str(voc))
    (voc / 'Annotations/000002.xml').unlink()
    with pytest.raises(FileNotFoundError, match=r'annotation file not found: .*000002\.xml \(listed in .*test\.txt\)'):
        VOCDataset(str(voc / 'ImageSets/Main/test.txt'), img_prefix=str(voc))


def test_images_without_objects_flow_through_training(tmp_path):
    root = make_shapes(tmp_path / 'empty', num_images=10, img_size=64, empty_prob=1.0, val_fraction=0)
    ds = shapes_ds(root)
    batch = next(iter(build_dataloader(ds, 4, 0, seed=0)))
    assert [tuple(b.shape) for b in batch['gt_bboxes']] == [(0, 4)] * 4
    assert all(l.dtype == torch.int64 and l.numel() == 0 for l in batch['gt_labels'])
    with pytest.raises(ValueError, match=r'instances_train\.json: all 10 images were filtered out'):
        shapes_ds(root, filter_empty_gt=True)           # nothing left to train on: an error, not an empty loader


# ---------------------------------------------------------------- pipeline properties
boxes_st = st.lists(st.tuples(st.floats(0, 90), st.floats(0, 70), st.floats(1, 60), st.floats(1, 60)), min_size=0, max_size=8)


def _results(boxes, h=80, w=100):
    b = np.array([[x, y, min(x + bw, w), min(y + bh, h)] for x, y, bw, bh in boxes], np.float32).reshape(-1, 4)
    return dict(img=np.random.randint(0, 255, (h, w, 3), np.uint8), img_shape=(h, w, 3), ori_shape=(h, w, 3),
                gt_bboxes=b, gt_labels=np.zeros(len(b), np.int64), bbox_fields=['gt_bboxes'], img_fields=['img'],
                filename='x.jpg', ori_filename='x.jpg')


@settings(max_examples=60, deadline=None)
@given(boxes_st, st.integers(20, 300), st.integers(20, 300), st.booleans(), st.sampled_from(['horizontal', 'vertical', 'diagonal']))
def test_resize_flip_pad_keep_boxes_consistent(boxes, long, short, keep_ratio, direction):
    r = _results(boxes)
    orig = r['gt_bboxes'].copy()
    r = Resize(img_scale=(long, short), keep_ratio=keep_ratio)(r)
    h, w = r['img_shape'][:2]
    assert r['img'].shape[:2] == (h, w)
    np.testing.assert_allclose(r['gt_bboxes'], np.clip(orig * r['scale_factor'], 0, [w, h, w, h]), rtol=1e-5, atol=1e-3)
    if keep_ratio:
        assert max(h, w) <= max(long, short) + 1 and min(h, w) <= min(long, short) + 1
    r = RandomFlip(1., direction)(r)
    r = Pad(size_divisor=16)(r)
    b = r['gt_bboxes']
    assert (b[:, 0] >= 0).all() and (b[:, 2] <= w + 1e-3).all() and (b[:, 1] >= 0).all() and (b[:, 3] <= h + 1e-3).all()
    assert r['pad_shape'][0] % 16 == 0 and r['pad_shape'][1] % 16 == 0
    np.testing.assert_allclose(bbox_flip(b, (h, w), direction), np.clip(orig * r['scale_factor'], 0, [w, h, w, h]),
                               rtol=1e-5, atol=1e-3)


@settings(max_examples=60, deadline=None)
@given(boxes_st, st.integers(0, 10**6))
def test_random_crop_boxes_inside_and_labels_aligned(boxes, seed):
    np.random.seed(seed)
    r = _results(boxes)
    r['gt_labels'] = np.arange(len(r['gt_bboxes']))
    out = RandomCrop((40, 50))(r)
    if out is None:
        assert len(boxes) > 0
        return
    ch, cw = out['img'].shape[:2]
    b = out['gt_bboxes']
    assert (ch, cw) == (40, 50) and len(b) == len(out['gt_labels'])
    assert (b >= 0).all() and (b[:, 2] <= cw).all() and (b[:, 3] <= ch).all() and ((b[:, 2:] - b[:, :2]) > 0).all()


# ---------------------------------------------------------------- samplers and loader
@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 1), min_size=1, max_size=40), st.integers(1, 4), st.integers(1, 4), st.integers(0, 5))
def test_distributed_group_sampler_partitions(flags, spg, replicas, epoch):
    class D:
        flag = np.array(flags, np.uint8)
        def __len__(self): return len(flags)
    parts = []
    for rank in range(replicas):
        s = DistributedGroupSampler(D(), spg, num_replicas=replicas, rank=rank, seed=1)
        s.set_epoch(epoch)
        parts.append(list(s))
        assert len(parts[-1]) == len(s)
    assert len({len(p) for p in parts}) == 1                           # equal share per process
    assert set().union(*map(set, parts)) == set(range(len(flags)))     # every image somewhere
    for p in parts:
        for batch in np.array(p).reshape(-1, spg):
            assert len(set(np.array(flags)[batch])) == 1               # no batch mixes groups
    g = list(GroupSampler(D(), spg, seed=epoch))
    assert set(g) == set(range(len(flags))) and len(g) % spg == 0


def test_loader_workers_reproducible_and_distributed(shapes):
    ds = shapes_ds(shapes, pipeline=TRAIN_PIPELINE[:3] + [dict(type='RandomFlip', flip_ratio=0.5)] + TRAIN_PIPELINE[4:])
    run = lambda seed: [(tuple(b['img'].shape), [m['flip'] for m in b['img_metas']], [t.tolist() for t in b['gt_bboxes']])
                        for b in build_dataloader(ds, 4, 2, seed=seed)]
    a, b = run(0), run(0)
    assert a == b and a != run(1)
    sizes = [len(list(build_dataloader(ds, 2, 0, dist=True, shuffle=False, num_replicas=3, rank=r).sampler)) for r in range(3)]
    assert sizes == [11, 11, 11]   # 32 images over 3 processes: DistributedSampler pads to 33
    with pytest.raises(RuntimeError, match='num_replicas and rank'):
        build_dataloader(ds, 2, 0, dist=True)


def test_wrappers_from_config(shapes):
    base = dict(type='ShapesDataset', ann_file=str(shapes / 'annotations/instances_train.json'),
                img_prefix=str(shapes / 'train'), filter_empty_gt=False, pipeline=TRAIN_PIPELINE)
    rep = build_dataset(dict(type='RepeatDataset', times=2, dataset=base))
    cb = build_dataset(dict(type='ClassBalancedDataset', oversample_thr=0.9, dataset=base))
    cat = build_dataset([base, base])
    assert len(rep) == 64 and len(cat) == 64 and len(cb) >= 32
    assert isinstance(rep, RepeatDataset) and isinstance(cb, ClassBalancedDataset) and isinstance(cat, ConcatDataset)
    assert len(rep.flag) == 64 and rep[40]['img'].shape[0] == 3


# ---------------------------------------------------------------- CLI, configs, evaluation, benchmark
def _write_cfg(tmp_path, shapes):
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(f"_base_ = {str(REPO / 'learndet/configs/_base_/datasets/shapes_detection.py')!r}\n"
                   f"data_root = {str(shapes) + '/'!r}\n"
                   "data = dict(train=dict(ann_file=data_root + 'annotations/instances_train.json', img_prefix=data_root + 'train/',\n"
                   "                                 generate=False))\n")   # the set made by the fixture, as it is
    return cfg


def test_browse_dataset_cli(tmp_path, shapes):
    cfg = _write_cfg(tmp_path, shapes)
    assert browse_dataset_main([str(cfg), '--output-dir', str(tmp_path / 'out'), '--not-show', '--max-images', '4']) == 0
    files = sorted((tmp_path / 'out').glob('*.png'))
    assert len(files) == 4 and Image.open(files[0]).size[0] >= 100
    r = subprocess.run([sys.executable, '-c', 'import sys; from learndet.cli import main; sys.exit(main(sys.argv[1:]))',
                        'browse-dataset', str(cfg), '--output-dir', str(tmp_path / 'out2'), '--not-show',
                        '--max-images', '2'], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / 'out2').glob('*.png'))) == 2


def test_shipped_dataset_configs_parse():
    from learndet.config import Config
    for name in ('shapes_detection', 'coco_detection', 'voc0712'):
        cfg = Config.fromfile(REPO / f'learndet/configs/_base_/datasets/{name}.py')
        assert {'train', 'val', 'test', 'samples_per_gpu', 'workers_per_gpu'} <= set(cfg.data)
        assert cfg.data.train.get('pipeline') or cfg.data.train.dataset.pipeline
        Compose(cfg.data.test.pipeline)


def test_coco_evaluate_backends_agree(shapes):
    ds = ShapesDataset(str(shapes / 'annotations/instances_val.json'), img_prefix=str(shapes / 'val'), test_mode=True)
    rng = np.random.default_rng(0)
    results = []
    for i in range(len(ds)):
        ann = ds.get_ann_info(i)
        per = []
        for c in range(len(ds.CLASSES)):
            b = ann['bboxes'][ann['labels'] == c]
            b = b + rng.normal(0, 3, b.shape)
            fp = rng.uniform(0, 60, (2, 4)); fp[:, 2:] += fp[:, :2] + 5
            per.append(np.hstack([np.vstack([b, fp]), rng.uniform(0, 1, (len(b) + 2, 1))]).astype(np.float32))
        results.append(per)
    a = ds.evaluate(results, logger='silent')
    b = ds.evaluate(results, logger='silent', backend='learndet')
    for k in ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75'):
        assert a[k] == b[k], (k, a[k], b[k])     # coco_eval reproduces pycocotools exactly (chapter 17a)


def test_benchmark_smoke():
    r = subprocess.run([sys.executable, str(REPO / 'benchmarks/bench_dataloading.py'), '--num-images', '8',
                        '--img-size', '96', '--repeats', '1', '--workers', '0', '1'], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert '| workers |' in r.stdout and r.stdout.count('\n|') >= 3


def test_get_shapes_dataset_concurrent_processes(tmp_path):
    "Several processes (DDP ranks) asking for the same cached set at once all get it, generated once and complete."
    code = ('import sys; from learndet.data.shapes import get_shapes_dataset; '
            'print(get_shapes_dataset(sys.argv[1], num_images=60, img_size=64))')
    procs = [subprocess.Popen([sys.executable, '-c', code, str(tmp_path / 'shared')], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=REPO) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    d = json.loads((tmp_path / 'shared/annotations/instances_train.json').read_text())
    assert len(d['images']) == 48 and len(list((tmp_path / 'shared/train').iterdir())) == 48
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.shared.tmp')]   # no temporary folders left


def test_coco_proposal_metric_and_results2json(tmp_path, shapes):
    ds = ShapesDataset(str(shapes / 'annotations/instances_val.json'), img_prefix=str(shapes / 'val'), test_mode=True)
    gt = [np.hstack([ds.get_ann_info(i)['bboxes'], np.ones((len(ds.get_ann_info(i)['bboxes']), 1))]) for i in range(len(ds))]
    m = ds.evaluate(gt, metric='proposal', logger='silent')
    assert m['AR@100'] == 1.0 and m['AR@1000'] == 1.0             # every GT box proposed exactly
    shifted = [g + np.array([40, 40, 40, 40, 0]) for g in gt]    # far off: recall drops
    assert ds.evaluate(shifted, metric='proposal', logger='silent')['AR@100'] < 0.5
    per_class = [[g[ds.get_ann_info(i)['labels'] == c] for c in range(4)] for i, g in enumerate(gt)]
    paths = ds.results2json(per_class, str(tmp_path / 'res'))
    dets = json.loads(Path(paths['bbox']).read_text())
    assert len(dets) == sum(len(g) for g in gt) and {d['category_id'] for d in dets} <= {1, 2, 3, 4}
    a0 = ds.coco.imgToAnns[dets[0]['image_id']]
    assert any(np.allclose(a['bbox'], dets[0]['bbox'], atol=1e-2) for a in a0)   # xyxy -> xywh round trip


def test_image_size_mismatch_warns(tmp_path):
    Image.new('RGB', (50, 40)).save(tmp_path / 'a.jpg')
    with pytest.warns(UserWarning, match=r'a\.jpg: the image is 50x40 but its annotation says 64x48'):
        LoadImageFromFile()(dict(img_info=dict(filename='a.jpg', width=64, height=48), img_prefix=str(tmp_path)))
