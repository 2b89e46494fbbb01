"""The training split as the train stage and the feature cache read it (paths, labels, vocabulary)."""

from __future__ import annotations

from ovc.config import Config
from ovc.paths import DataLayout


class TrainData:
    """The training split: video paths, positive labels, the training vocabulary.

    Args:
        cfg: the whole config (``paths.data``, ``synth_labels``).
        method: the method being trained (``ours_synth`` merges the synthetic labels, paper §4.4).
    """

    def __init__(self, cfg: Config, method: str = ""):
        from ovc.data.manifest import read_clean, resolve_video_path
        from ovc.synth.table import merged_train_labels, merged_train_vocabulary

        manifest_path = DataLayout.of(cfg).clean_manifest
        df, vocab = read_clean(cfg)  # paths confined to the data roots
        df = df[df["split"] == "train"].reset_index(drop=True)
        if len(df) == 0:
            raise ValueError(f"{manifest_path}: no videos with split 'train'")
        df = merged_train_labels(cfg, df, method)  # + synthetic labels (paper §4.4) when switched on
        self.vocabulary = merged_train_vocabulary(
            cfg, sorted(vocab.loc[vocab["vocab"] == "train", "label"].tolist()), method
        )
        self.video_ids = df["video_id"].tolist()
        self.labels = [list(x) for x in df["labels"]]
        self.paths = [str(resolve_video_path(manifest_path, p)) for p in df["path"]]

    def __len__(self) -> int:
        return len(self.video_ids)
