"""The `make demo` walk-through (`vidsearch demo`): a synthetic corpus, the shipped demo model exported,
indexed and served on loopback, queried through the client.

It sits above every other layer (it drives training's synthetic generator and model folder, export,
serving and the client); only `vidsearch.cli` imports it.
"""
