"""Answers with checked citations: the extractive answerer, LLM answerers and their checks."""
