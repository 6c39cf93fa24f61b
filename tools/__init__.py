"""Development tools that stay out of the installed package: the stub generator, a local Triton server."""
