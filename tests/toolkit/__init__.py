"""Reusable test toolkit: a tiny offline causal LM and a scripted lm-eval model (tests, benches, demo)."""
