"""ovc: open-vocabulary multi-label video classification (Gupta et al., "Open Vocabulary Multi-Label
Video Classification") as a reproducible MLOps system.

The package is split by lifecycle stage: ``data`` (world, manifests, cleaning, reading), ``models``
(CLIP wrapper, LLM backends, label/video encoders, baselines), ``train`` (loss, batches, loop),
``evaluate`` (metrics, calibration, plots), ``registry`` (SQL label embeddings), ``infer``
(classify API). Importing ``ovc`` is cheap: heavy modules load on use.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """Lazy top-level API: ``ovc.Classifier`` imports ``ovc.infer`` (and torch) only when first used."""
    if name in ("Classifier", "load_published"):
        import ovc.infer

        return getattr(ovc.infer, name)
    raise AttributeError(f"module 'ovc' has no attribute {name!r}")
