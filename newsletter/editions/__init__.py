"""Editions: the day's selection of stories, rendered once per plan variant and frozen."""
