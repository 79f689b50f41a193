"""Adversarial attacks (PGD through advertorch, made importable on current torch)."""
