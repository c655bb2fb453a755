"""Detectors end to end (chapters 10-13, 18): an mmdetection 2.x checkpoint layout loads strictly, the tiny shapes
RetinaNet trains from the command line and its checkpoint is tested and used for inference."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import learndet  # noqa: F401  (registers every component)
from layouts import head_towers_layout, r50_fpn_layout, random_state
from learndet.apis import init_detector, inference_detector
from learndet.cli import load_config
from learndet.models.detectors import build_detector
from learndet.runner import load_checkpoint

TINY = 'retinanet/retinanet_tiny_r18_fpn_shapes.py'


def mmdet_retinanet_r50_layout(num_classes=80):
    """The state-dict keys and shapes of mmdetection 2.x's retinanet_r50_fpn_1x_coco checkpoint, written from its
    architecture (not from learndet's code): torchvision's ResNet-50 names for the backbone (mmdetection uses the
    same), mmcv ConvModule names (`.conv.`) for the FPN and the head's stacked convs, and the head's two output
    convs `retina_cls` (9 anchors x 80 classes = 720 channels) and `retina_reg` (9 x 4 = 36)."""
    layout = {**r50_fpn_layout(p6_in_channels=2048), **head_towers_layout(gn=False, conv_bias=True)}
    layout['bbox_head.retina_cls.weight'] = (9 * num_classes, 256, 3, 3)
    layout['bbox_head.retina_cls.bias'] = (9 * num_classes,)
    layout['bbox_head.retina_reg.weight'] = (36, 256, 3, 3)
    layout['bbox_head.retina_reg.bias'] = (36,)
    return layout


@pytest.fixture(scope='module')
def mmdet_checkpoint(tmp_path_factory):
    "A file in mmdetection 2.x's checkpoint format (meta + state_dict) with that layout and random values."
    state = random_state(mmdet_retinanet_r50_layout(), std=0.01)
    from learndet.data.datasets import COCO_CLASSES
    path = tmp_path_factory.mktemp('ckpt') / 'retinanet_r50_fpn_1x_coco.pth'
    torch.save(dict(meta=dict(mmdet_version='2.28.2', CLASSES=COCO_CLASSES, epoch=12, iter=87960),
                    state_dict=state), path)
    return path, state


def test_r50_retinanet_has_mmdetection_layout():
    cfg = load_config('retinanet/retinanet_r50_fpn_1x_coco.py')
    model = build_detector(cfg.model)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == mmdet_retinanet_r50_layout()


def test_mmdetection_checkpoint_loads_strictly_and_runs(mmdet_checkpoint, tmp_path):
    path, state = mmdet_checkpoint
    model = init_detector('retinanet/retinanet_r50_fpn_1x_coco.py', str(path), device='cpu')
    for k in ('bbox_head.retina_cls.bias', 'neck.fpn_convs.3.conv.weight', 'backbone.layer4.2.bn3.running_var'):
        assert torch.equal(model.state_dict()[k], state[k]), k
    assert len(model.CLASSES) == 80 and model.CLASSES[0] == 'person'
    img = (np.random.default_rng(0).random((200, 300, 3)) * 255).astype(np.uint8)
    result = inference_detector(model, img)
    assert len(result) == 80 and all(r.shape[1] == 5 for r in result)
    boxes = np.concatenate(result)
    assert len(boxes) > 0                                        # random weights score ~0.5: there are boxes to check
    assert (boxes[:, [0, 2]] <= 300 + 1e-3).all() and (boxes[:, [1, 3]] <= 200 + 1e-3).all()  # original-image pixels


def test_checkpoint_with_missing_keys_is_refused(mmdet_checkpoint, tmp_path):
    path, state = mmdet_checkpoint
    broken = {k: v for k, v in state.items() if not k.startswith('bbox_head.retina_reg')}
    bad = tmp_path / 'bad.pth'
    torch.save(dict(state_dict=broken), bad)
    with pytest.raises(RuntimeError, match='retina_reg'):
        init_detector('retinanet/retinanet_r50_fpn_1x_coco.py', str(bad), device='cpu')


def learndet_cmd(*args, cwd):
    exe = shutil.which('learndet')
    assert exe, 'the learndet console script is not installed (pip install -e ".[dev]")'
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_train_then_test_then_infer_from_the_command_line(tmp_path):
    small = ['data.train.generate.num_images=24', 'data.val.generate.num_images=24', 'data.test.generate.num_images=24',
             'data.samples_per_gpu=4', 'data.workers_per_gpu=0', 'runner.max_epochs=2', 'log_config.interval=2',
             'lr_config.warmup_iters=4']
    r = learndet_cmd('train', TINY, '--work-dir', 'work', '--cfg-options', *small, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    work = tmp_path / 'work'
    assert (work / 'epoch_2.pth').is_file() and (work / 'retinanet_tiny_r18_fpn_shapes.py').is_file()
    logs = [json.loads(line) for line in next(work.glob('*.log.json')).read_text().splitlines()]
    train = [l for l in logs if l.get('mode') == 'train']
    val = [l for l in logs if l.get('mode') == 'val']
    assert train and all(np.isfinite(l['loss']) for l in train)
    assert len(val) == 2 and 'bbox_mAP' in val[-1]                  # evaluated after each epoch (COCO metrics)
    ckpt = torch.load(work / 'epoch_2.pth', weights_only=True)
    assert ckpt['meta']['CLASSES'] == ('circle', 'square', 'triangle', 'star')

    r = learndet_cmd('test', TINY, work / 'epoch_2.pth', '--out', 'res.pkl', '--cfg-options', *small, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / 'res.pkl').is_file()
    printed = dict(line.split(': ') for line in r.stdout.splitlines() if line.startswith('bbox_mAP'))
    for key in ('bbox_mAP', 'bbox_mAP_50'):                   # val and test are the same split: the same numbers
        assert abs(float(printed[key]) - val[-1][key]) <= 1e-3, (key, printed[key], val[-1][key])

    model = init_detector(TINY, str(work / 'epoch_2.pth'), device='cpu')
    img = next((tmp_path / 'data' / 'shapes' / 'val').glob('*.jpg'))
    result = inference_detector(model, str(img))
    assert len(result) == 4 and all(r.shape[1] == 5 for r in result)
    boxes = np.concatenate(result)
    assert (boxes[:, [0, 2]] <= 256 + 1e-3).all() and (boxes[:, [1, 3]] <= 256 + 1e-3).all()


def test_data_vs_train_benchmark_smoke():
    "The benchmark runs end to end at a tiny size (its figures are read by a person, not asserted)."
    repo = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(repo / 'benchmarks' / 'bench_data_vs_train.py'), '--iters', '2',
                        '--repeats', '1', '--num-images', '16'], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert '| loading alone |' in r.stdout and 'waiting for data' in r.stdout
