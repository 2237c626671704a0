"""Retrieval evaluation: BEIR datasets, BEIR/trec_eval metrics, and the ``rag eval`` runner."""
