"""The on-disk contracts of vidsearch, each defined once, and the one atomic-write helper they share.

A file another package reads back (the model repository's `vidsearch.json`, the Parquet shard schema,
the index manifest) has its typed definition here, so the writer and the reader cannot drift apart.
"""
