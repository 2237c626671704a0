"""Search one index: dense and keyword ranking, fusion, filters, and the stages between fusion and reading chunks."""
