"""Export: trained torch models -> ONNX files and TensorRT engines with manifests, for robots."""
