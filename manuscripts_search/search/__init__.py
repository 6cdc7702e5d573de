"""Search: the engine that runs a query through its signals (visual, full text, semantic text),
fuses and groups them, the filters, k-NN, full text, the search documents, open-set classification,
and the per-manifest matching that IIIF Content Search answers from."""
