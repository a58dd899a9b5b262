"""Shipping a trained model: ONNX export (`export`), an HTTP service (`serve`) and a model card (`card`)."""
