"""Data stage: readers of user sources, ingest, the dataset schema and tf.data input pipelines."""
