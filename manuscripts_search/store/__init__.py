"""The store: the database (engine, sessions, models' writes), the catalogue written from harvested
IIIF, the embedding work queue, the content-addressed image derivatives on disk, and the bytes of
stored vectors (vector_codec)."""
