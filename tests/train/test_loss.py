"""Loss (paper §3.3 eq. 2) and batch label sampling (P_B ∪ N_B, 4B labels)."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ovc.config import LossConfig
from ovc.train.batching import MultiLabelCollator, sample_label_set
from ovc.train.loss import MultiLabelLoss, multilabel_loss, multilabel_loss_from_scores


# ------------------------------------------------------------------------------------------- loss
def test_loss_matches_hand_computed_case():
    scores = torch.tensor([[0.5, -0.2, 0.1], [0.1, 0.3, -0.4]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    tau, w = 0.5, 2.0

    def sig(x: float) -> float:
        return 1.0 / (1.0 + math.exp(-x))

    # video 0: positive 0.5, negatives -0.2 and 0.1; video 1: positive 0.3, negatives 0.1 and -0.4
    expected = -(
        math.log(sig(0.5 / tau))
        + w * (math.log(1 - sig(-0.2 / tau)) + math.log(1 - sig(0.1 / tau)))
        + math.log(sig(0.3 / tau))
        + w * (math.log(1 - sig(0.1 / tau)) + math.log(1 - sig(-0.4 / tau)))
    )
    got = multilabel_loss_from_scores(scores, targets, tau=tau, neg_weight=w)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    mean = multilabel_loss_from_scores(scores, targets, tau=tau, neg_weight=w, reduction="mean")
    assert mean.item() == pytest.approx(expected / 6, rel=1e-6)
    module = MultiLabelLoss(LossConfig(tau=tau, neg_weight=w))
    assert module(scores, targets).item() == pytest.approx(expected, rel=1e-6)


def test_loss_from_embeddings_and_mask():
    g = torch.Generator().manual_seed(0)
    v = torch.nn.functional.normalize(torch.randn(3, 8, generator=g), dim=-1)
    t = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=-1)
    y = (torch.rand(3, 5, generator=g) > 0.5).float()
    s = (v.numpy() @ t.numpy().T) / 0.07
    p = 1 / (1 + np.exp(-s))
    per_pair = -(y.numpy() * np.log(p) + (1 - y.numpy()) * np.log(1 - p))
    assert multilabel_loss(v, t, y).item() == pytest.approx(per_pair.sum(), rel=1e-5)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[0, :2] = True
    got = multilabel_loss(v, t, y, mask=mask, reduction="mean")
    assert got.item() == pytest.approx(per_pair[0, :2].mean(), rel=1e-5)


def test_loss_is_stable_and_pushes_scores_the_right_way():
    scores = torch.tensor([[50.0, -50.0], [-50.0, 50.0]], requires_grad=True)
    loss = multilabel_loss_from_scores(scores, torch.tensor([[0.0, 1.0], [1.0, 0.0]]), tau=0.01)
    assert torch.isfinite(loss) and loss.item() > 1e4  # confidently wrong, no inf
    loss.backward()
    assert scores.grad[0, 1] < 0 and scores.grad[0, 0] > 0  # gradient descent raises positives, lowers negatives
    with pytest.raises(ValueError, match="shape"):
        multilabel_loss_from_scores(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="reduction"):
        multilabel_loss_from_scores(torch.zeros(2, 3), torch.zeros(2, 3), reduction="max")


# ------------------------------------------------------------------------------------------- batches
VOCAB = [f"label{i}" for i in range(40)]


def test_label_set_has_4b_labels_with_positives_first():
    positives = [["label0", "label1"], ["label1", "label2"], ["label3"]]
    ls = sample_label_set(positives, VOCAB, labels_per_video=4, rng=np.random.default_rng(0))
    assert ls.labels[:4] == ["label0", "label1", "label2", "label3"] and ls.n_positive == 4
    assert len(ls.labels) == 12 and len(set(ls.labels)) == 12 and ls.short_by == 0
    assert set(ls.labels[4:]) <= set(VOCAB) - {"label0", "label1", "label2", "label3"}
    expected = torch.zeros(3, 12)
    expected[0, [0, 1]] = 1
    expected[1, [1, 2]] = 1
    expected[2, 3] = 1
    assert torch.equal(ls.targets, expected)


def test_label_set_is_deterministic_for_numpy_and_torch_generators():
    positives = [["label0"], ["label5"]]
    a = sample_label_set(positives, VOCAB, rng=np.random.default_rng(7))
    b = sample_label_set(positives, VOCAB, rng=np.random.default_rng(7))
    c = sample_label_set(positives, VOCAB, rng=np.random.default_rng(8))
    assert a.labels == b.labels and a.labels != c.labels
    t1 = sample_label_set(positives, VOCAB, rng=torch.Generator().manual_seed(1))
    t2 = sample_label_set(positives, VOCAB, rng=torch.Generator().manual_seed(1))
    assert t1.labels == t2.labels and len(t1.labels) == 8


def test_label_set_edge_cases():
    many = [[f"label{i}" for i in range(10)], ["label10"]]  # |P_B| = 11 >= 4B = 8: no negatives
    ls = sample_label_set(many, VOCAB, rng=0)
    assert len(ls.labels) == 11 and ls.short_by == 0
    small = sample_label_set([["a"], ["b"]], ["a", "b", "c", "d"], labels_per_video=4, rng=0)
    assert sorted(small.labels) == ["a", "b", "c", "d"] and small.short_by == 4
    outside = sample_label_set([["not-in-vocab"]], VOCAB, labels_per_video=2, rng=0)
    assert outside.labels[0] == "not-in-vocab" and outside.targets[0].tolist() == [1.0, 0.0]


class _ToyVideos(torch.utils.data.Dataset):
    def __init__(self):
        self.items = [(f"v{i}", [VOCAB[i % 7], VOCAB[(i * 3) % 11]]) for i in range(10)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        vid, labels = self.items[i]
        return {"video_id": vid, "frames": torch.full((2, 3, 4, 4), float(i)), "labels": labels}


def test_collator_in_a_dataloader_is_deterministic():
    def run(epoch: int):
        collate = MultiLabelCollator(VOCAB, labels_per_video=4, seed=3)
        collate.set_epoch(epoch)
        return list(DataLoader(_ToyVideos(), batch_size=4, collate_fn=collate))

    batches = run(0)
    assert [b["frames"].shape for b in batches] == [(4, 2, 3, 4, 4), (4, 2, 3, 4, 4), (2, 2, 3, 4, 4)]
    first = batches[0]
    assert len(first["labels"]) == 16 and first["targets"].shape == (4, 16)
    assert first["video_id"] == ["v0", "v1", "v2", "v3"]
    for i, positives in enumerate(first["positives"]):
        assert {first["labels"][j] for j in first["targets"][i].nonzero().flatten().tolist()} == set(positives)
    again = run(0)
    assert [b["labels"] for b in again] == [b["labels"] for b in batches]
    assert [b["labels"] for b in run(1)] != [b["labels"] for b in batches]  # new negatives each epoch


def test_collator_warns_once_when_vocabulary_is_too_small(caplog):
    collate = MultiLabelCollator(VOCAB[:6], labels_per_video=4)
    with caplog.at_level(logging.WARNING, logger="ovc.train.batching"):
        for _ in DataLoader(_ToyVideos(), batch_size=4, collate_fn=collate):
            pass
    assert collate.short_batches == 3
    assert sum("too small" in r.message for r in caplog.records) == 1
    with pytest.raises(KeyError, match="lacks"):
        collate([{"video_id": "x", "labels": ["label0"]}])
