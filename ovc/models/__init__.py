"""Models of the paper (one module per idea; importable without Prefect/DVC).

* :mod:`ovc.models.clip` — frozen open_clip CLIP wrapper: soft-prompt text path (paper §3.1) and
  per-layer frame tokens for the temporal branch; ``create_clip`` / ``save_clip_local_dir``.
* :mod:`ovc.models.video_encoder` — frozen CLIP ViT + parallel temporal branch with stochastic
  weight regularisation (paper §3.2).
* :mod:`ovc.models.llm` — LLM backends (seq2seq T5 / masked-encoder BERT family).
* :mod:`ovc.models.label_encoder` — LLM prefixes -> soft attributes -> prompt transformer ->
  CLIP text encoder (paper §3.1).
* :mod:`ovc.models.baselines` — CLIP prompt / template / fixed-attribute / CoOp-style baselines.
* :mod:`ovc.models.methods` — the one method registry (key -> builder, table name, trainable,
  frozen trunk, base method) and the one factory every stage builds and loads methods with.
* :mod:`ovc.models.device` — one device (``compute.device``) and mixed-precision policy for every stage.
"""
