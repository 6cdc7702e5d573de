"""The store: the database (engine, sessions, models' writes), the catalogue written from harvested
IIIF, the embedding work queue, and the content-addressed image derivatives on disk."""
