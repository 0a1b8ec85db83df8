"""Image embeddings and similar-image search: `embed` writes each image's pooled feature vector into a parquet
file (table.py), `similar` finds the nearest indexed images of query images by cosine similarity (index.py),
with the network that wrote the file (docs/embeddings.md)."""

from inceptionnet.retrieval.embed import EmbedSummary, embed
from inceptionnet.retrieval.table import EmbeddingTable, read_table

__all__ = ["EmbedSummary", "EmbeddingTable", "embed", "read_table"]
