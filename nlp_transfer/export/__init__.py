"""Shipping a trained folder: ONNX graphs checked against torch (`onnx_export`) and the HTTP prediction server
(`serve`). Both open models with `load_model`; an ONNX export opens again through the onnx backend."""
