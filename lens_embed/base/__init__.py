"""Shared utilities below everything (no torch): constants, files and locks, the input format, prompts,
options declared once, optional stacks."""
