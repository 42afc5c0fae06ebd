"""Evaluation: `shapes` judges a clip against its Shapes-world caption."""
