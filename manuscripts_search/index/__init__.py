"""The vector index of each model space (its files on disk) and its synchronisation with the
database, which stays the truth the index is rebuilt from."""
