"""The pipeline's stages: one thin module per DVC stage.

Each module reads its inputs from the data layout (:mod:`ovc.paths`), calls the pure functions of
the library below it, writes its outputs atomically (:mod:`ovc.fileio`) and returns a JSON-able
summary. DVC (``ovc stage NAME``), Prefect, the CLI and the tests all call the same function;
:data:`ovc.pipeline.STAGES` lists them in pipeline order, and each stage's DVC code deps are
derived from what its module imports (:mod:`ovc.codegraph`).
"""
