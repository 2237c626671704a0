"""Persistence: an index's vectors (Chroma), manifest (SQLite) and keyword index (Tantivy), and the embedding cache."""
