"""Collection-level analysis: topics (NMF over tag scores) and 2-D maps of the image embeddings."""
