"""A corpus of user mistakes, made as a new user makes them: broken configs, annotations, images, checkpoints and
paths, through `learndet train/test/print-config` and `init_detector`/`inference_detector`.

Each CLI case asserts exit code 2, no traceback, one `learndet CMD: error:` line, and the culprit's name (file,
key, value or annotation id) in the message. Most run the CLI in-process (`learndet.cli.main`) for speed; a few
run the console script in a subprocess, one with DataLoader workers so that the error comes from a worker."""
import copy
import json
import logging
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from learndet.apis import inference_detector, init_detector
from learndet.checkpoint import save_checkpoint
from learndet.cli import main
from learndet.config import CONFIGS_DIR
from learndet.core import CheckpointError, ConfigError, DataError, LearndetError

TINY = CONFIGS_DIR / 'retinanet' / 'retinanet_tiny_r18_fpn_shapes.py'
CLASSES = ('a', 'b')

CONFIG = '''
_base_ = [r'{tiny}']
classes = ('a', 'b')
img_norm_cfg = dict(mean=[0, 0, 0], std=[255, 255, 255], to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', img_scale=(32, 32), keep_ratio=True), dict(type='RandomFlip', flip_ratio=0.5),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=32), dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels'])]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiScaleFlipAug', img_scale=(32, 32), flip=False, transforms=[
        dict(type='Resize', keep_ratio=True), dict(type='RandomFlip'), dict(type='Normalize', **img_norm_cfg),
        dict(type='Pad', size_divisor=32), dict(type='ImageToTensor', keys=['img']), dict(type='Collect', keys=['img'])])]
dataset = dict(type='{dataset_type}', ann_file=r'{ann_file}', img_prefix=r'{img_prefix}', classes=classes)
data = dict(
    samples_per_gpu=2, workers_per_gpu=0,
    train=dict(_delete_=True, pipeline=train_pipeline, **dataset),
    val=dict(_delete_=True, pipeline=test_pipeline, **dataset),
    test=dict(_delete_=True, pipeline=test_pipeline, **dataset))
model = dict(bbox_head=dict(num_classes=2))
runner = dict(max_epochs=1)
lr_config = dict(warmup_iters=1, step=[1])
log_config = dict(interval=1)
checkpoint_config = dict(interval=1)
evaluation = dict(interval=1, metric='bbox')
'''


# ---------------------------------------------------------------- a tiny COCO set, written per test
def coco_dict(n: int = 4) -> dict:
    "n 32x32 images, one box each, classes a and b."
    return dict(images=[dict(id=i, file_name=f'img_{i}.jpg', width=32, height=32) for i in range(1, n + 1)],
                annotations=[dict(id=i, image_id=i, category_id=1 + i % 2, bbox=[4, 4, 16, 12], area=192, iscrowd=0)
                             for i in range(1, n + 1)],
                categories=[dict(id=1, name='a'), dict(id=2, name='b')])


class Env:
    "A folder with images, an annotation file and a config; `cli(...)` runs `learndet` in-process."
    def __init__(self, root: Path, capsys):
        self.root, self.capsys = root, capsys
        self.images = root / 'images'
        self.images.mkdir()
        rng = np.random.default_rng(0)
        for i in range(1, 5):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(self.images / f'img_{i}.jpg')
        self.ann = root / 'ann.json'
        self.write_ann(coco_dict())
        self.config = self.write_config()
        self.work = root / 'work'

    def write_ann(self, data, path=None):
        path = path or self.ann
        Path(path).write_text(json.dumps(data))
        return path

    def mutate_ann(self, fn):
        data = coco_dict()
        fn(data)
        return self.write_ann(data)

    def write_config(self, name='cfg.py', dataset_type='CocoDataset', ann_file=None, img_prefix=None, extra=''):
        path = self.root / name
        path.write_text(CONFIG.format(tiny=TINY, dataset_type=dataset_type, ann_file=ann_file or self.ann,
                                      img_prefix=img_prefix or self.images) + extra)
        return path

    def cli(self, *argv):
        self.capsys.readouterr()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                code = main([str(a) for a in argv])
        finally:
            drop_logger_handlers()          # they hold this test's captured stderr and work_dir files
        out, err = self.capsys.readouterr()
        return code, out, err

    def train(self, *options, config=None, extra=()):
        args = ['train', config or self.config, '--work-dir', self.work, '--no-validate', *extra]
        if options:
            args += ['--cfg-options', *options]
        return self.cli(*args)


def drop_logger_handlers():
    "In-process runs share the `learndet` logger; `get_logger` adds fresh handlers on the next run."
    logger = logging.getLogger('learndet')
    for h in list(logger.handlers):
        logger.removeHandler(h)
        if isinstance(h, logging.FileHandler):
            h.close()


@pytest.fixture
def env(tmp_path, capsys):
    drop_logger_handlers()
    return Env(tmp_path, capsys)


def assert_user_error(result, *names, command='train'):
    "Exit code 2, no traceback, one `learndet CMD: error:` line, and every name in the message."
    code, _, err = result
    assert code == 2, err[-2000:]
    assert 'Traceback' not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith(f'learndet {command}: error: ')]
    assert len(lines) == 1, err[-2000:]
    for name in names:
        assert str(name) in err, (name, err[-2000:])


def test_the_fixture_trains(env):
    "The tiny setup itself is right: one epoch trains and saves a checkpoint (so the errors below are the mistakes')."
    code, _, err = env.train()
    assert code == 0, err[-3000:]
    assert (env.work / 'epoch_1.pth').is_file()


# ---------------------------------------------------------------- configs and command-line options
def test_config_file_missing(env):
    assert_user_error(env.cli('train', env.root / 'no_such.py'), 'no_such.py')


def test_config_syntax_error_names_file_and_line(env):
    bad = env.root / 'bad.py'
    bad.write_text("model = dict(\n    type='RetinaNet',,\n)\n")
    assert_user_error(env.cli('train', bad), 'bad.py, line 2: syntax error')


def test_config_name_error_names_file_and_line(env):
    bad = env.root / 'bad.py'
    bad.write_text("x = 1\nmodel = dict(type=RetinaNet)\n")
    assert_user_error(env.cli('print-config', bad), 'bad.py, line 2: NameError', command='print-config')


def test_cfg_options_without_equals(env):
    assert_user_error(env.train('data.samples_per_gpu'), "expected KEY=VALUE, got 'data.samples_per_gpu'")


def test_cfg_options_unbalanced_bracket(env):
    assert_user_error(env.train('data.train.classes=[a,b'), 'data.train.classes', 'unclosed bracket')


@pytest.mark.parametrize('option, message', [
    ('data.samples_per_gpu=abc', "data.samples_per_gpu must be a positive int, got 'abc'"),
    ('data.samples_per_gpu=0', 'data.samples_per_gpu must be a positive int, got 0'),
    ('data.samples_per_gpu=2.5', 'data.samples_per_gpu must be a positive int, got 2.5'),
    ('data.workers_per_gpu=-1', 'data.workers_per_gpu must be a non-negative int, got -1'),
    ('runner.max_epochs=abc', "runner.max_epochs must be a positive int, got 'abc'"),
    ('runner.max_epochs=0', 'runner.max_epochs must be a positive int, got 0'),
    ('optimizer.lr=abc', "optimizer.lr must be a positive finite number, got 'abc'"),
    ('optimizer.lr=-0.1', 'optimizer.lr must be a positive finite number, got -0.1'),
    ('checkpoint_config.interval=abc', "checkpoint_config.interval must be a positive int or -1, got 'abc'"),
    ('log_config.interval=0', 'log_config.interval must be a positive int, got 0'),
    ('model=None', 'config: model is None'),
    ('data.train=None', 'config: data.train is None'),
    ('model.type=RetinaNett', "'RetinaNett' is not in the detector registry. Did you mean 'RetinaNet'"),
    ('model.backbone.type=ResNett', "'ResNett' is not in the backbone registry"),
    ('data.train.type=CocoDatset', "'CocoDatset' is not in the dataset registry"),
    ('data.train.pipeline.0.type=LoadImageFromFil', "'LoadImageFromFil' is not in the pipeline registry"),
    ('model.bbox_head.num_clases=2', "unexpected keyword argument 'num_clases'"),
    ('model.bbox_head.num_classes=3', 'model.bbox_head.num_classes is 3, but the training set has 2 classes'),
    ('data.train.classes=(a,zebra)', "classes ['zebra'] are not categories"),
])
def test_bad_config_values_name_the_key(env, option, message):
    assert_user_error(env.train(option), message)


def test_iter_runner_max_iters(env):
    assert_user_error(env.train("runner=dict(_delete_=True, type='IterBasedRunner', max_iters='ten')"),
                      "runner.max_iters must be a positive int, got 'ten'")


def test_evaluation_interval(env):
    code, out, err = env.cli('train', env.config, '--work-dir', env.work, '--cfg-options', 'evaluation.interval=0')
    assert_user_error((code, out, err), 'evaluation.interval must be a positive int, got 0')


# ---------------------------------------------------------------- annotation files
@pytest.mark.parametrize('mutate, names', [
    (lambda d: d['annotations'][0].update(bbox=[float('nan'), 4, 16, 12]), ['annotation 1 (image img_1.jpg)', 'NaN']),
    (lambda d: d['annotations'][1].update(bbox=[4, 4, float('inf'), 12]), ['annotation 2 (image img_2.jpg)', 'infinite']),
    (lambda d: d['annotations'][0].update(bbox=[4, 4, 16]), ['annotation 1', 'is not [x, y, width, height]']),
    (lambda d: d['annotations'][0].update(bbox=[20, 4, -16, 12]), ['annotation 1', 'negative width or height']),
    (lambda d: d['annotations'][0].update(image_id=99), ['annotation 1 has image_id 99']),
    (lambda d: d['annotations'][0].update(category_id=7), ['annotation 1 (image img_1.jpg) has category_id 7']),
    (lambda d: d.update(images=[], annotations=[]), ['"images" is empty']),
    (lambda d: d['images'][1].update(id=1), ['image id 1 is used by 2 images']),
    (lambda d: d['annotations'][1].update(id=1), ["Annotation ids in", 'are not unique', 'id 1']),
    (lambda d: d.pop('categories'), ['not a COCO instances file']),
    (lambda d: d['images'][0].update(width='wide'), ['image 1 (img_1.jpg) has width']),
])
def test_bad_coco_annotations(env, mutate, names):
    env.mutate_ann(mutate)
    assert_user_error(env.train(), 'ann.json', *names)


def test_annotation_file_missing(env):
    env.ann.unlink()
    assert_user_error(env.train(), 'annotation file not found', 'ann.json')


def test_annotation_file_not_json(env):
    env.ann.write_text('{"images": [')
    assert_user_error(env.train(), 'cannot parse annotation file', 'ann.json')


def test_every_box_too_small_leaves_nothing_to_train(env):
    env.mutate_ann(lambda d: [a.update(bbox=[4, 4, 0.5, 12]) for a in d['annotations']])
    assert_user_error(env.train(), 'ann.json: all 4 images were filtered out')


def test_skipped_boxes_are_counted_in_a_warning(env):
    "Where mmdetection skips (under 1 px, outside the image), learndet skips too — with a warning naming the ids."
    from learndet.data.datasets import CocoDataset
    data = coco_dict()
    data['annotations'] += [dict(id=10, image_id=1, category_id=1, bbox=[4, 4, 0.5, 9], area=4.5, iscrowd=0),
                            dict(id=11, image_id=2, category_id=1, bbox=[40, 4, 5, 5], area=25, iscrowd=0),
                            dict(id=12, image_id=3, category_id=1, bbox=[1, 1, 9, 9], area=81, iscrowd=1)]
    env.write_ann(data)
    with pytest.warns(UserWarning, match=r'skipped 2 annotation\(s\).*under 1 px wide or high \(id 10\).*outside its image \(id 11\)'):
        ds = CocoDataset(str(env.ann), classes=CLASSES)
    assert ds.get_ann_info(2)['bboxes_ignore'].tolist() == [[1, 1, 10, 10]]    # the crowd box: an ignore region


def test_middle_format_nan_box(env):
    middle = [dict(filename='img_1.jpg', width=32, height=32, ann=dict(bboxes=[[1, 2, float('nan'), 9]], labels=[0]))]
    path = env.root / 'middle.json'
    path.write_text(json.dumps(middle))
    cfg = env.write_config('middle.py', dataset_type='CustomDataset', ann_file=path)
    assert_user_error(env.cli('train', cfg, '--work-dir', env.work, '--no-validate'), 'middle.json', 'img_1.jpg', 'non-finite')


def write_voc(root: Path, xml_box: str) -> Path:
    voc = root / 'VOC2007'
    for sub in ('Annotations', 'JPEGImages', 'ImageSets/Main'):
        (voc / sub).mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(voc / 'JPEGImages/000001.jpg')
    (voc / 'Annotations/000001.xml').write_text(
        '<annotation><size><width>32</width><height>32</height></size><object><name>a</name><difficult>0</difficult>'
        f'<bndbox>{xml_box}</bndbox></object></annotation>')
    (voc / 'ImageSets/Main/train.txt').write_text('000001\n')
    return voc


def test_voc_nan_coordinate(env):
    voc = write_voc(env.root, '<xmin>nan</xmin><ymin>2</ymin><xmax>20</xmax><ymax>20</ymax>')
    cfg = env.write_config('voc.py', dataset_type='VOCDataset', ann_file=voc / 'ImageSets/Main/train.txt', img_prefix=voc)
    assert_user_error(env.cli('train', cfg, '--work-dir', env.work, '--no-validate'), '000001.xml', "<xmin> is 'nan'")


def test_voc_corners_swapped(env):
    from learndet.data.datasets import VOCDataset
    voc = write_voc(env.root, '<xmin>20</xmin><ymin>2</ymin><xmax>4</xmax><ymax>20</ymax>')
    with pytest.raises(DataError, match=r"000001\.xml: object 'a' has xmax < xmin"):
        VOCDataset(str(voc / 'ImageSets/Main/train.txt'), img_prefix=str(voc), classes=CLASSES)


# ---------------------------------------------------------------- images
def test_image_file_missing(env):
    (env.images / 'img_2.jpg').unlink()
    assert_user_error(env.train('data.samples_per_gpu=4'), 'image file not found', 'img_2.jpg')


def test_image_folder_wrong(env):
    assert_user_error(env.train(f'data.train.img_prefix={env.root / "imgs"}'), 'image file not found', 'is not a folder',
                      str(env.root / 'imgs'))


def test_random_bytes_named_png(env):
    (env.images / 'img_3.png').write_bytes(os.urandom(500))
    env.mutate_ann(lambda d: d['images'][2].update(file_name='img_3.png'))
    assert_user_error(env.train('data.samples_per_gpu=4'), 'cannot read image', 'img_3.png')


def test_truncated_jpeg(env):
    data = (env.images / 'img_1.jpg').read_bytes()
    (env.images / 'img_1.jpg').write_bytes(data[:len(data) // 2])
    assert_user_error(env.train('data.samples_per_gpu=4'), 'cannot read image', 'img_1.jpg')


# ---------------------------------------------------------------- checkpoints
class Payload:
    "Unpickling this runs `touch MARKER`: a checkpoint must never be able to."
    marker = None

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def bad_checkpoints(root: Path) -> dict:
    "name -> path of each kind of bad checkpoint file."
    good = root / 'good.pth'
    torch.save(dict(state_dict=torch.nn.Linear(2, 2).state_dict()), good)
    data = good.read_bytes()
    files = dict(random=os.urandom(400), empty=b'', truncated=data[:len(data) // 2], text=b'my notes')
    paths = {}
    for name, content in files.items():
        paths[name] = root / f'{name}.pth'
        paths[name].write_bytes(content)
    Payload.marker = root / 'PWNED'
    paths['code'] = root / 'code.pth'
    torch.save(dict(state_dict=torch.nn.Linear(2, 2).state_dict(), extra=Payload()), paths['code'])
    paths['list'] = root / 'list.pth'
    torch.save([1, 2, 3], paths['list'])
    paths['directory'] = root / 'ckpt_dir'
    paths['directory'].mkdir()
    return paths


@pytest.mark.parametrize('kind, message', [
    ('random', 'not a PyTorch checkpoint'),
    ('empty', 'the file is empty'),
    ('truncated', 'damaged or cut short'),
    ('text', 'not a PyTorch checkpoint'),
    ('code', "refused to load: its pickle needs the Python object 'posix.system'"),
    ('list', 'expected a dict'),
    ('directory', 'is a directory'),
])
def test_load_from_bad_checkpoint(env, kind, message):
    path = bad_checkpoints(env.root)[kind]
    assert_user_error(env.train(extra=['--load-from', path]), path.name, message)
    assert not (env.root / 'PWNED').exists()                 # nothing in a checkpoint ran


def test_code_checkpoint_explains_weights_only(env):
    path = bad_checkpoints(env.root)['code']
    _, _, err = env.train(extra=['--load-from', path])
    assert 'weights_only=True' in err and 'nothing in a checkpoint can run code' in err


def test_load_from_missing(env):
    assert_user_error(env.train(extra=['--load-from', env.root / 'nope.pth']), 'nope.pth', 'does not exist')


def test_resume_from_missing(env):
    assert_user_error(env.train(extra=['--resume-from', env.root / 'nope.pth']), 'nope.pth', 'does not exist')


def other_model_checkpoint(env) -> Path:
    "A checkpoint of the same detector with 3 classes instead of 2."
    model = init_detector(env.config, device='cpu', cfg_options={'model.bbox_head.num_classes': 3})
    return Path(save_checkpoint(model, str(env.root / 'other.pth')))


def test_test_with_checkpoint_of_another_model(env):
    path = other_model_checkpoint(env)
    assert_user_error(env.cli('test', env.config, path), 'other.pth', 'bbox_head.retina_cls.weight: checkpoint (27, 64, 3, 3)'
                      ' vs model (18, 64, 3, 3)', command='test')


def test_test_with_random_checkpoint(env):
    path = bad_checkpoints(env.root)['random']
    assert_user_error(env.cli('test', env.config, path), 'random.pth', 'not a PyTorch checkpoint', command='test')


def test_resume_from_weights_only_file(env):
    model = init_detector(env.config, device='cpu')
    path = env.root / 'weights.pth'
    torch.save(model.state_dict(), path)
    assert_user_error(env.train(extra=['--resume-from', path]), 'weights.pth', 'cannot resume')


def test_test_out_not_pkl(env):
    model = init_detector(env.config, device='cpu')
    path = save_checkpoint(model, str(env.root / 'ok.pth'))
    assert_user_error(env.cli('test', env.config, path, '--out', env.root / 'res.txt', '--eval'), '--out must be a .pkl file',
                      command='test')


# ---------------------------------------------------------------- the work folder
def test_work_dir_under_a_file(env):
    (env.root / 'afile').write_text('x')
    code, out, err = env.cli('train', env.config, '--work-dir', env.root / 'afile' / 'run', '--no-validate')
    assert_user_error((code, out, err), str(env.root / 'afile' / 'run'), 'cannot be created or written to')


@pytest.mark.skipif(not hasattr(os, 'geteuid') or os.geteuid() == 0, reason='root can write anywhere')
def test_work_dir_not_writable(env):
    locked = env.root / 'locked'
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, out, err = env.cli('train', env.config, '--work-dir', locked / 'run', '--no-validate')
    finally:
        locked.chmod(0o755)
    assert_user_error((code, out, err), str(locked / 'run'), 'cannot be created or written to')


# ---------------------------------------------------------------- the Python API raises the clear exception
def test_api_init_detector_errors(env):
    with pytest.raises(FileNotFoundError, match='no_such.py'):
        init_detector(env.root / 'no_such.py')
    paths = bad_checkpoints(env.root)
    with pytest.raises(CheckpointError, match=r'random\.pth \(400 bytes\): not a PyTorch checkpoint'):
        init_detector(env.config, str(paths['random']), device='cpu')
    with pytest.raises(CheckpointError, match='refused to load'):
        init_detector(env.config, str(paths['code']), device='cpu')
    assert not (env.root / 'PWNED').exists()
    with pytest.raises(CheckpointError, match=r'bbox_head\.retina_cls\.weight'):
        init_detector(env.config, str(other_model_checkpoint(env)), device='cpu')


def test_api_inference_detector_errors(env):
    model = init_detector(env.config, device='cpu')
    with pytest.raises(FileNotFoundError, match='image file not found: .*nope.jpg'):
        inference_detector(model, str(env.root / 'nope.jpg'))
    (env.root / 'bad.png').write_bytes(os.urandom(300))
    with pytest.raises(OSError, match=r'cannot read image .*bad\.png'):
        inference_detector(model, str(env.root / 'bad.png'))
    with pytest.raises(ValueError, match=r'must be HxWx3 \(BGR\), got shape \(8, 8\)'):
        inference_detector(model, np.zeros((8, 8), np.uint8))
    result = inference_detector(model, str(env.images / 'img_1.jpg'))          # and a good image works
    assert len(result) == 2


def test_errors_keep_their_builtin_kinds():
    "Code that caught ValueError / KeyError / RuntimeError before the hierarchy existed still catches these."
    from learndet.core import ConfigKeyError
    assert issubclass(ConfigError, ValueError) and issubclass(DataError, ValueError)
    assert issubclass(ConfigKeyError, KeyError) and issubclass(CheckpointError, RuntimeError)
    assert all(issubclass(c, LearndetError) for c in (ConfigError, ConfigKeyError, DataError, CheckpointError))


# ---------------------------------------------------------------- through the console script (a real process)
def learndet(*args, cwd, env_vars=None):
    exe = shutil.which('learndet')
    assert exe, 'the learndet console script is not installed (pip install -e ".[dev]")'
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env=dict(os.environ, **(env_vars or {})))


def assert_process_error(r, *names, command='train'):
    assert_user_error((r.returncode, r.stdout, r.stderr), *names, command=command)


def test_process_corrupt_image_in_a_worker(env):
    "With workers_per_gpu=2 the image is read in a worker process; the message still names the file."
    data = (env.images / 'img_3.jpg').read_bytes()
    (env.images / 'img_3.jpg').write_bytes(data[:len(data) // 3])
    r = learndet('train', env.config, '--work-dir', env.work, '--no-validate', '--cfg-options',
                 'data.workers_per_gpu=2', 'data.samples_per_gpu=4', cwd=env.root)
    assert_process_error(r, 'cannot read image', 'img_3.jpg', 'in DataLoader worker')


def test_process_code_checkpoint(env):
    path = bad_checkpoints(env.root)['code']
    r = learndet('test', env.config, path, cwd=env.root)
    assert_process_error(r, 'code.pth', 'refused to load', command='test')
    assert not (env.root / 'PWNED').exists()


def test_process_nan_box(env):
    env.mutate_ann(lambda d: d['annotations'][2].update(bbox=[float('nan'), 1, 2, 3]))
    r = learndet('train', env.config, '--work-dir', env.work, cwd=env.root)
    assert_process_error(r, 'ann.json', 'annotation 3 (image img_3.jpg)', 'NaN')


def test_learndet_debug_shows_the_traceback(env):
    r = learndet('train', env.config, '--cfg-options', 'data.samples_per_gpu=abc', cwd=env.root,
                 env_vars=dict(LEARNDET_DEBUG='1'))
    assert r.returncode != 0 and 'Traceback' in r.stderr and 'data.samples_per_gpu must be a positive int' in r.stderr
