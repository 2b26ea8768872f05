"""Models: one card format on disk (``card``), the heads and backbones they are built from, and the three
kinds of trained model: ``joint`` (image–text embeddings), ``tagger`` and ``matcher``. ``pretrained/`` holds
the weights that ship with vistext."""
