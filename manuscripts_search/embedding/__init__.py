"""Embedding: turning canvas and region images into vectors. Encoders (vision-language models,
handcrafted features) behind one interface and a registry, the worker that claims pending items,
decodes and encodes them, the text encoder for semantic metadata search, and perceptual hashes."""
