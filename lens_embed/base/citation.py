"""The LENS paper's citation, in one place (model cards, mteb metadata and submissions read it here)."""

LENS_CITATION = (
    """@inproceedings{lei-etal-2025-enhancing,
    title = "Enhancing Lexicon-Based Text Embeddings with Large Language Models",
    author = "Lei, Yibin and Shen, Tao and Cao, Yu and Yates, Andrew",
    booktitle = "Proceedings of the 63rd Annual Meeting of the Association for Computational Linguistics """
    """(Volume 1: Long Papers)",
    month = jul,
    year = "2025",
    address = "Vienna, Austria",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/2025.acl-long.930/",
    pages = "18986--19001",
}"""
)
