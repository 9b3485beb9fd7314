"""The contract: the facts every layer agrees on (names, the embodiment spec, the model-package
manifest, the Policy and Environment interfaces, QoS, the image fit), torch-free. Nothing here
imports from the rest of vla_rft; everything else reads these. docs/ARCHITECTURE.md is the map."""
