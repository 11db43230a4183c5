"""Lite LLM harness."""
