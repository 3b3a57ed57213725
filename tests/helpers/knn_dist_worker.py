"""A ``torch.multiprocessing.spawn`` rank for the k-NN feature-gather test.

Kept apart from the test module so that each spawned process imports only
torch and ``mapet/evaluation/knn.py`` (loaded by path: importing the
``mapet`` package would register every component, seconds per process).
"""
import importlib.util
import os.path as osp

import torch

KNN_PY = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'mapet',
    'evaluation', 'knn.py')


def load_knn():
    spec = importlib.util.spec_from_file_location('_mapet_knn', KNN_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Toy(torch.utils.data.Dataset):
    """11 samples: feature ``(i, i, i)``, label ``i % 4``."""

    def __len__(self):
        return 11

    def __getitem__(self, i):
        return torch.full((3, ), float(i)), i % 4


def rank_main(rank, world, init_file, out_dir):
    import torch.distributed as dist
    knn = load_knn()
    dist.init_process_group('gloo', init_method=f'file://{init_file}',
                            rank=rank, world_size=world)
    f, y = knn.extract_features(lambda b: b[0] * 2, Toy(), batch_size=2,
                                num_workers=0)
    torch.save((f, y), osp.join(out_dir, f'rank{rank}.pt'))
    dist.destroy_process_group()
