"Smoke run of benchmarks/bench_nms.py at tiny sizes (no timing assertions: it must run and agree with torchvision)."
import importlib.util
from pathlib import Path


def test_bench_nms_small_runs(capsys):
    path = Path(__file__).resolve().parents[1] / 'benchmarks' / 'bench_nms.py'
    spec = importlib.util.spec_from_file_location('bench_nms', path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(['--small', '--repeats', '1'])      # asserts inside: learndet == torchvision on each case
    assert len(rows) == 6 and all(t_ours > 0 and t_peer > 0 for _, _, _, t_ours, t_peer in rows)
    assert '| case | learndet | ms | peer | ms | ratio |' in capsys.readouterr().out
