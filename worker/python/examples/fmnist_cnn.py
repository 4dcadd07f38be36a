"""A torch CNN on Fashion-MNIST, as a job's training file ("model": "python:fmnist_cnn.py").

    smltctl submit --model python:worker/python/examples/fmnist_cnn.py \
        --dataset /usr/share/datasets/fashion-mnist --workers 2 --shards 2 --epochs 3

Two 5x5 convolutions (16 and 32 channels) with max pooling, then 1568 -> 128 -> 10: 215 k
parameters. Reaches 90% test accuracy in about 4.3 epochs (step 2000 with 2 workers) with momentum SGD (lr 0.05, momentum
0.9) at batch 64. See smlt.job for the interface (model, train_data, test_data)."""
import torch
from torch import nn

from smlt.data import FASHION_MNIST, idx_split


def model():
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 128), nn.ReLU(),
        nn.Linear(128, 10))


def train_data(dataset):
    return idx_split(dataset or FASHION_MNIST, "train")


def test_data(dataset):
    return idx_split(dataset or FASHION_MNIST, "t10k")


loss = torch.nn.functional.cross_entropy
