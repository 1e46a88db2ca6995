"""A small CNN for scikit-learn's bundled 8x8 digits, and its (seconds-long) training."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["DigitsCNN", "load_digits_split", "train_digits_cnn"]


class DigitsCNN(nn.Module):
    """conv-bn-relu x2, max pool, two linear layers: 8x8x1 images to 10 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.pool(torch.relu(self.bn2(self.conv2(x))))
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


def load_digits_split(test_fraction: float = 0.25, seed: int = 0):
    """scikit-learn's digits (bundled, no download) as float32 [N, 1, 8, 8] in [0, 1] and
    int64 labels: ``(x_train, y_train, x_test, y_test)``."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)[:, None]
    order = np.random.default_rng(seed).permutation(len(images))
    split = int(len(images) * (1 - test_fraction))
    train, test = order[:split], order[split:]
    return images[train], data.target[train], images[test], data.target[test]


def train_digits_cnn(epochs: int = 10, seed: int = 0):
    """Train a `DigitsCNN` (about 1.5 s of one core; ~99% test accuracy).

    Returns
    -------
    model : DigitsCNN
        In eval mode.
    split : tuple
        ``(x_train, y_train, x_test, y_test)`` numpy arrays.
    accuracy : float
        Float accuracy on the test split.
    """
    torch.manual_seed(seed)
    x_train, y_train, x_test, y_test = split = load_digits_split(seed=seed)
    model = DigitsCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    xs, ys = torch.from_numpy(x_train), torch.from_numpy(y_train)
    generator = torch.Generator().manual_seed(seed)
    # Batches this small run 3x slower on two threads than on one (sync overhead).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.train()
        for _ in range(epochs):
            for batch in torch.randperm(len(xs), generator=generator).split(128):
                optimizer.zero_grad()
                loss = nn.functional.cross_entropy(model(xs[batch]), ys[batch])
                loss.backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(x_test)).argmax(1).numpy()
    return model, split, float((predicted == y_test).mean())
