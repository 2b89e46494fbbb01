"""Prefect flows and deployments of ovc: orchestration only, every task calls the ovc library (or DVC).

    flows/train_eval.py     flow ``train-eval``: the DVC pipeline, stage by stage, plus a run report
    flows/vocab_refresh.py  flow ``vocab-refresh``: embed new labels of vocabulary files into the registry
    flows/deployments.py    deployments ``train-eval/default`` and ``vocab-refresh/hourly`` (in code)

Each flow file is self-contained (imports only prefect and ovc) because Prefect workers load it by
file path (``flows/train_eval.py:train_eval``) from the project directory.
"""
