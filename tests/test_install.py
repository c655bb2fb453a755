"""What the README's install must leave behind: learndet importable and torchvision's compiled ops working."""
import torch


def test_torchvision_ops_nms_works():
    # torchvision.ops.nms is a compiled operator: a torch/torchvision mismatch fails here with
    # "operator torchvision::nms does not exist". Hand-worked case: boxes 0 and 1 overlap with
    # IoU = 81/119 > 0.5, so the lower-scored box 1 is suppressed; box 2 is far away and stays.
    import torchvision.ops
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [50., 50., 60., 60.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert torchvision.ops.nms(boxes, scores, 0.5).tolist() == [0, 2]
    assert torchvision.ops.nms(boxes, scores, 0.7).tolist() == [0, 1, 2]   # 81/119 = 0.68 < 0.7


def test_learndet_imports_and_registers():
    import learndet
    from learndet.registry import COMMANDS
    assert isinstance(learndet.__version__, str)
    assert 'print-config' in COMMANDS
