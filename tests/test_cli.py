"""The `learndet` console script, end to end, as a user runs it from a shell."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / 'fixtures' / 'configs'

# What tests/fixtures/configs/exp.py resolves to, worked out by hand from the three fixture files
# (merge rules: dicts merge, other values replace, _delete_ replaces; {{_base_.x}} reads a base value).
EXPECTED = dict(
    model=dict(type='RetinaNet',
               backbone=dict(type='ResNet', depth=50, frozen_stages=1),
               neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256, num_outs=5),
               bbox_head=dict(type='RetinaHead', num_classes=3, in_channels=256,
                              loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25),
                              feat_channels=256)),
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
    lr_config=dict(policy='step', step=[8, 11]),
    runner=dict(type='EpochBasedRunner', max_epochs=12),
    img_scale=(640, 480),
    work_dir='./work_dirs/exp',
)


def learndet(*args, cwd=None):
    exe = shutil.which('learndet')
    assert exe, 'the learndet console script is not installed (pip install -e ".[dev]")'
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_help_lists_commands():
    r = learndet('--help')
    assert r.returncode == 0, r.stderr
    assert 'print-config' in r.stdout and 'usage: learndet' in r.stdout


def test_version():
    import learndet as pkg
    r = learndet('--version')
    assert r.returncode == 0 and r.stdout.strip() == f'learndet {pkg.__version__}'


def test_print_config_merges_bases(tmp_path):
    r = learndet('print-config', FIXTURES / 'exp.py', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ns = {}
    exec(r.stdout, ns)                      # the printed config is Python
    got = {k: v for k, v in ns.items() if not k.startswith('__')}
    assert got == EXPECTED


def test_print_config_applies_overrides(tmp_path):
    r = learndet('print-config', FIXTURES / 'exp.py', '--cfg-options', 'model.bbox_head.num_classes=7',
                 'optimizer.lr=0.005', 'lr_config.step=[16,22]', 'img_scale=(1333,800)',
                 'model.neck.in_channels.0=64', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ns = {}
    exec(r.stdout, ns)
    assert ns['model']['bbox_head']['num_classes'] == 7
    assert ns['optimizer'] == dict(type='AdamW', lr=0.005, weight_decay=0.05)
    assert ns['lr_config']['step'] == [16, 22]
    assert ns['img_scale'] == (1333, 800)
    assert ns['model']['neck']['in_channels'] == [64, 512, 1024, 2048]
    assert ns['runner'] == EXPECTED['runner']        # untouched keys stay as they were


@pytest.mark.parametrize('fmt', ['json', 'yaml'])
def test_print_config_formats(fmt, tmp_path):
    r = learndet('print-config', FIXTURES / 'exp.py', '--format', fmt)
    assert r.returncode == 0, r.stderr
    if fmt == 'json':
        data = json.loads(r.stdout)
    else:
        import yaml
        data = yaml.safe_load(r.stdout)
    assert data['model']['bbox_head']['num_classes'] == 3
    assert data['img_scale'] == [640, 480]            # no tuples in JSON/YAML


def test_unknown_key_warns(tmp_path):
    r = learndet('print-config', FIXTURES / 'exp.py', '--cfg-options', 'model.bbox_head.num_clases=3')
    assert r.returncode == 0
    assert "did you mean 'num_classes'?" in r.stderr


@pytest.mark.parametrize('args, message', [
    (['print-config', 'no/such/config.py'], 'config file not found: no/such/config.py'),
    (['print-config', FIXTURES / 'exp.py', '--cfg-options', 'optimizer.lr.x=1'], 'cannot go into optimizer.lr'),
    (['print-config', FIXTURES / 'exp.py', '--cfg-options', 'lr'], "expected KEY=VALUE, got 'lr'"),
])
def test_user_errors_are_one_line(args, message):
    r = learndet(*args)
    assert r.returncode == 2
    assert message in r.stderr
    assert 'Traceback' not in r.stderr


def test_syntax_error_names_file_and_line(tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text("model = dict(\n    type='RetinaNet',,\n)\n")
    r = learndet('print-config', bad)
    assert r.returncode == 2
    assert f'{bad}, line 2: syntax error' in r.stderr


def test_unknown_command():
    r = learndet('no-such-command')
    assert r.returncode == 2 and 'invalid choice' in r.stderr
