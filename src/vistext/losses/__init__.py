"""Training losses, registered by name: image–text ranking losses (``ranking``) and multi-label tagging
losses (``tagging``)."""

from __future__ import annotations

from vistext.losses.ranking import LOSSES, LossFn, get_loss
from vistext.losses.tagging import TAG_LOSSES, TagLoss, make_tag_loss

__all__ = ["LOSSES", "TAG_LOSSES", "LossFn", "TagLoss", "get_loss", "make_tag_loss"]
