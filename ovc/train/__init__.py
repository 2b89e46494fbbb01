"""Training: the multi-label objective (paper §3.3), batch label sampling, the Ray Train loop, checkpoints.

* :mod:`ovc.train.loss` — temperature-scaled sigmoid BCE over (video, label) pairs (paper eq. 2).
* :mod:`ovc.train.batching` — P_B ∪ N_B label sets with random negatives, target matrices, DataLoader collate.
"""
