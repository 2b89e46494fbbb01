"""Real-dataset adapters for ``ovc stage ingest`` (``ingest.source``): YouTube-8M, Kinetics-400, TAO,
ActivityNet, RareAct (paper §4.1). Each reads the dataset's own files from ``ingest.root`` (or
``ingest.roots[source]``) and writes the agreed raw manifest + vocabulary; see
:mod:`ovc.data.adapters.common` for the shared behaviour (missing videos reported, mixing)."""
