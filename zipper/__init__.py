"""Zipper: fuse separately pre-trained unimodal decoder LMs with gated cross-attention (arXiv 2405.18669)."""

__version__ = "0.1.0"
