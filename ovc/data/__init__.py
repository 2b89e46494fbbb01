"""Data layer: manifests and their pandera schemas, the ``clean`` stage, decord video reading, and
the synthetic video world (``synthworld`` + ``ingest``)."""
