"""Embeddings and similar-image search, measured: the figures of docs/embeddings.md.

    PYTHONPATH=src:benchmarks python -m retrievalbench --run RUN [--data ../shared/data/cifar10] [--steps ...]
    PYTHONPATH=src:benchmarks python -m retrievalbench.tables [--check]   # docs/embeddings.md's tables

Each step writes benchmarks/results/retrieval/STEP.json with its command, machine, versions and date:

- precision (quality.py): retrieval precision@10 (queries: the test split, gallery: the train split; a neighbour
  counts when it has the query's label) beside the classifier's top-1 on the same test split, on the built-in demo
  data and on --data where it exists, every image embedded by `inceptionnet.embed`;
- speed (speed.py): `embed` against `predict --json` on the same engine and images, each as its batch job runs it
  (read, forward, records, the merged output), in interleaved rounds;
- search (search.py): queries/s of exact search and of the index `similar` builds beyond EXACT_MAX (IVF) at 10^4,
  10^5 and 10^6 vectors, recall@10 against exact; the gallery's real vectors, then synthetic ones made from them;
- libraries (search.py): FAISS (HNSW, IVF) against usearch (HNSW) on the same vectors.
"""
