"""The runner chapter's toy model and dataset (nbs/15_runner.ipynb), for the tests: importing this module registers
them in DETECTORS and DATASETS, so that a config can name them (`model=dict(type='ToyRegressor')`)."""
import torch
import torch.nn.functional as F
from torch import nn

from learndet.registry import DATASETS, DETECTORS


@DETECTORS.register_module(force=True)
class ToyRegressor(nn.Module):
    """A stand-in with the detector contract: `forward(x, y, return_loss=True)` -> dict of loss terms
    (`loss_mse`, `loss_l1`, and `mae`, which is logged but not summed); `return_loss=False` -> predictions (B, 1)."""
    def __init__(self, in_features: int = 4, hidden: int = 16, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, 1))

    def forward(self, x, y=None, return_loss: bool = True):
        pred = self.net(x)  # (B, in_features) -> (B, 1)
        if not return_loss:
            return pred
        return dict(loss_mse=F.mse_loss(pred, y), loss_l1=0.1 * F.l1_loss(pred, y),
                    mae=(pred - y).abs().mean().detach())


@DATASETS.register_module(force=True)
class ToyDataset(torch.utils.data.Dataset):
    "`n` samples `dict(x=(in_features,), y=(1,))` with `y = sin(x·w) + noise`, the same for the same `seed`."
    CLASSES = ('y',)

    def __init__(self, n: int = 64, in_features: int = 4, noise: float = 0.05, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, in_features, generator=g)
        w = torch.randn(in_features, 1, generator=g)
        self.y = torch.sin(self.x @ w) + noise * torch.randn(n, 1, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return dict(x=self.x[i], y=self.y[i])

    def evaluate(self, results, metric: str = 'mae', logger=None) -> dict:
        "Mean absolute error of `results` (a list of (1,) predictions, one per sample, in dataset order)."
        if metric != 'mae':
            raise KeyError(f'ToyDataset.evaluate: metric {metric!r} is not supported (only "mae")')
        pred = torch.stack([torch.as_tensor(r).reshape(1) for r in results])
        return dict(mae=(pred - self.y[:len(pred)]).abs().mean().item())
