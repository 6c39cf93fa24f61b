"""Training: data (manifests, the synthetic set), losses, optimisers, the loop, recipes, evaluation."""
