"""The methods of the five papers, usable without Hydra or Lightning (one sub-package per work)."""
