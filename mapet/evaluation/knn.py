"""Weighted k-NN evaluation of frozen features (DINO's protocol).

No trained parameter: every train image's feature is a labelled key, every
val image votes with its ``k`` most cosine-similar keys, each weighted by
``exp(similarity / T)`` (DINO: ``k = 20``, ``T = 0.07``). mmpretrain has no
such evaluation; ``tools/analysis_tools/knn_eval.py`` runs it from a config
(``configs/benchmarks/classification/*knn*.py``) and the objectives study
(``tools/analysis_tools/objective_study.py``) calls these functions directly.

* :func:`extract_features` runs a feature function over a dataset, each
  process (``torchrun``) on its own shard ``rank::world_size``, and returns
  every feature in dataset order on every rank (padded ``all_gather``).
* :func:`weighted_knn_predict` / :func:`knn_accuracy` compare test features
  to the train features ``chunk_size`` test rows at a time, so the
  similarity matrix never exceeds ``chunk_size x num_train`` (GPU or CPU,
  wherever the tensors live).
"""
from typing import Callable, Dict, Iterable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

__all__ = [
    'extract_features', 'weighted_knn_predict', 'knn_accuracy',
    'DINO_K', 'DINO_TEMPERATURE'
]

DINO_K = 20
DINO_TEMPERATURE = 0.07


def _dist_info() -> Tuple[int, int]:
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_gather_rows(x: torch.Tensor, world_size: int) -> list:
    """``all_gather`` tensors whose first dimension differs per rank."""
    import torch.distributed as dist
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(world_size)]
    dist.all_gather(sizes, n)
    sizes = [int(s.item()) for s in sizes]
    padded = x.new_zeros((max(sizes), ) + tuple(x.shape[1:]))
    padded[:x.shape[0]] = x
    out = [torch.zeros_like(padded) for _ in range(world_size)]
    dist.all_gather(out, padded)
    return [o[:s] for o, s in zip(out, sizes)]


@torch.no_grad()
def extract_features(feature_fn: Callable[[object], torch.Tensor],
                     dataset: Dataset,
                     batch_size: int = 64,
                     num_workers: int = 2,
                     collate_fn: Optional[Callable] = None,
                     label_fn: Optional[Callable[[object],
                                                 torch.Tensor]] = None,
                     rank: Optional[int] = None,
                     world_size: Optional[int] = None,
                     gather_device: Optional[torch.device] = None
                     ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Features and labels of every sample, in dataset order, on all ranks.

    Args:
        feature_fn (callable): Maps one collated batch to features (B, D).
        dataset (Dataset): The samples.
        batch_size (int): Samples per batch. Defaults to 64.
        num_workers (int): Dataloader workers. Defaults to 2.
        collate_fn (callable, optional): Dataloader collate function.
        label_fn (callable, optional): Maps one collated batch to labels
            (B,); defaults to ``batch[1]`` (``(image, label)`` datasets).
        rank (int, optional): This process' rank (default: from
            ``torch.distributed`` when initialised, else 0).
        world_size (int, optional): Number of processes (same default).
        gather_device (torch.device, optional): Where the all-gather runs
            (CUDA for NCCL); defaults to the features' device.

    Returns:
        tuple: ``(features, labels)``, float32 (N, D) and int64 (N,), on
        the features' device (``gather_device`` when distributed).
    """
    if rank is None or world_size is None:
        rank, world_size = _dist_info()
    n = len(dataset)
    shard = list(range(rank, n, world_size))
    loader = DataLoader(
        Subset(dataset, shard),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_fn)
    label_fn = label_fn or (lambda batch: torch.as_tensor(batch[1]))
    feats, labels = [], []
    for batch in loader:
        f = feature_fn(batch)
        feats.append(f.float().reshape(f.shape[0], -1))
        labels.append(label_fn(batch).long().to(f.device))
    if not feats:
        raise ValueError('extract_features got an empty dataset shard')
    feats_t, labels_t = torch.cat(feats), torch.cat(labels)
    if world_size == 1:
        return feats_t, labels_t
    dev = gather_device or feats_t.device
    idx = torch.tensor(shard, device=dev)
    parts_f = _all_gather_rows(feats_t.to(dev), world_size)
    parts_l = _all_gather_rows(labels_t.to(dev), world_size)
    parts_i = _all_gather_rows(idx, world_size)
    order = torch.argsort(torch.cat(parts_i))
    return torch.cat(parts_f)[order], torch.cat(parts_l)[order]


@torch.no_grad()
def weighted_knn_predict(train_features: torch.Tensor,
                         train_labels: torch.Tensor,
                         test_features: torch.Tensor,
                         num_classes: int,
                         k: int = DINO_K,
                         temperature: float = DINO_TEMPERATURE,
                         chunk_size: int = 1024) -> torch.Tensor:
    """Class scores of DINO's weighted k-NN classifier.

    Features are L2-normalised; for each test feature the ``k`` train
    features of highest cosine similarity ``s`` vote for their labels with
    weight ``exp(s / temperature)``. Ties in similarity are broken as
    ``torch.topk`` breaks them.

    Args:
        train_features (Tensor): (N, D) keys.
        train_labels (Tensor): (N,) int labels in ``[0, num_classes)``.
        test_features (Tensor): (M, D) queries.
        num_classes (int): Number of classes C.
        k (int): Neighbours (clipped to N). Defaults to 20.
        temperature (float): Softmax temperature T. Defaults to 0.07.
        chunk_size (int): Test rows per similarity block. Defaults to 1024.

    Returns:
        Tensor: (M, C) float32 vote totals (argmax = prediction).
    """
    if train_features.shape[0] != train_labels.shape[0]:
        raise ValueError('train_features and train_labels differ in length')
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError('train and test features differ in dimension: '
                         f'{train_features.shape[1]} vs '
                         f'{test_features.shape[1]}')
    if temperature <= 0:
        raise ValueError(f'temperature must be > 0, got {temperature}')
    device = train_features.device
    keys = F.normalize(train_features.float(), dim=1)
    labels = train_labels.to(device).long()
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f'train labels outside [0, {num_classes})')
    k = min(int(k), keys.shape[0])
    out = []
    for start in range(0, test_features.shape[0], chunk_size):
        q = F.normalize(
            test_features[start:start + chunk_size].to(device).float(),
            dim=1)
        sim = q @ keys.T  # (m, N)
        top_sim, top_idx = sim.topk(k, dim=1)
        weights = (top_sim / temperature).exp()
        votes = torch.zeros(q.shape[0], num_classes, device=device)
        votes.scatter_add_(1, labels[top_idx], weights)
        out.append(votes)
    return torch.cat(out) if out else torch.zeros(0, num_classes)


def knn_accuracy(train_features: torch.Tensor,
                 train_labels: torch.Tensor,
                 test_features: torch.Tensor,
                 test_labels: torch.Tensor,
                 num_classes: int,
                 k: int = DINO_K,
                 temperature: float = DINO_TEMPERATURE,
                 chunk_size: int = 1024,
                 topk: Sequence[int] = (1, )) -> Dict[str, float]:
    """Top-k accuracies (percent) of :func:`weighted_knn_predict`.

    Returns:
        dict: ``{'knn/top1': ..., 'knn/top5': ...}`` for each of ``topk``
        (those above ``num_classes`` are skipped).
    """
    scores = weighted_knn_predict(train_features, train_labels,
                                  test_features, num_classes, k,
                                  temperature, chunk_size)
    target = test_labels.to(scores.device).long()
    result = {}
    for t in _valid_topk(topk, num_classes):
        pred = scores.topk(t, dim=1).indices
        hit = (pred == target[:, None]).any(dim=1).float().mean().item()
        result[f'knn/top{t}'] = 100.0 * hit
    return result


def _valid_topk(topk: Iterable[int], num_classes: int) -> list:
    return [int(t) for t in topk if 1 <= int(t) <= num_classes]
