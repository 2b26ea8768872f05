"""Training the three kinds of model (joint image–text, tagger, matcher); the only home of their defaults."""
