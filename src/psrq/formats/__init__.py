"""The Parquet formats the stages exchange, each owned by one module (docs/conventions.md).

- `psrq.formats.embeddings`: ``embeddings/<modality>.parquet`` and the ``emb_<modality>``
  columns of items.parquet (writer, readers, the batch primitives of the streamed readers);
- `psrq.formats.sids`: sids.parquet (`SemanticIDs`, `JOINT`, the one decoder, the quantizer
  metadata);
- `psrq.formats.samples`: ``samples/{train,valid,test}.parquet`` (schema, check, reader, writer).

This package sits below the stages: it imports only `psrq.errors`, `psrq.artifacts` and
third-party libraries, so every stage can read and write through it.
"""
