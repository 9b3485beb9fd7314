"""The stages run as one: `vla-rft quickstart`, `vla-rft flywheel`, the model registry."""
