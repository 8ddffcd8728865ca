"""edgebert.quantize: int8 bundles with accuracy evidence."""
