"""Conversations over an index, and the sessions saved between runs."""
