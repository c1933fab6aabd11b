"""The model: towers, tokenizer, transforms, losses, data, training and the encoders that serve it.

Plain Python, numpy and torch: nothing here imports Django or the site (pyproject.toml,
import-linter), so it runs, trains and is tested on its own."""
