"""Export: checkpoint -> model directory -> ONNX (FP32, FP16) -> TensorRT engine, Triton repository."""
