"""Indexing folders into a store: plan (walk, compare with stored states), decode, encode, write."""

from __future__ import annotations

from vistext.indexing.local import IndexReport, index_folder

__all__ = ["IndexReport", "index_folder"]
