"""smlt.data: datasets for torch jobs: the IDX files of MNIST and Fashion-MNIST (Debian's
dataset-fashion-mnist installs them in /usr/share/datasets/fashion-mnist), plain or gzipped."""
import gzip
import os
import struct

import numpy as np


def read_idx(path):
    """The array in an IDX file (path, or path + '.gz')."""
    if not os.path.exists(path) and os.path.exists(path + ".gz"):
        path += ".gz"
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError("%s: not an IDX file" % path)
    dtype = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4",
             0x0E: ">f8"}.get(data[2])
    if dtype is None:
        raise ValueError("%s: unknown IDX element type 0x%02x" % (path, data[2]))
    nd = data[3]
    dims = struct.unpack(">%dI" % nd, data[4:4 + 4 * nd])
    arr = np.frombuffer(data, dtype=dtype, offset=4 + 4 * nd)
    count = 1
    for d in dims:
        count *= d
    if arr.size != count:
        raise ValueError("%s: %d elements, the header says %d" % (path, arr.size, count))
    return arr.reshape(dims)


def idx_split(directory, split="train"):
    """(images, labels) of split "train" or "t10k" in directory: float32 images in [0, 1],
    shaped [N, 1, rows, cols], and int64 labels, as torch tensors."""
    import torch
    names = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}[split]
    x = read_idx(os.path.join(directory, names[0]))
    y = read_idx(os.path.join(directory, names[1]))
    if len(x) != len(y):
        raise ValueError("%s: %d images and %d labels" % (directory, len(x), len(y)))
    xt = torch.from_numpy(x.astype(np.float32) / 255.0).reshape(len(x), 1, x.shape[1], x.shape[2])
    return xt, torch.from_numpy(y.astype(np.int64))


FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
