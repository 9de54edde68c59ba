"""glassgem.inference: running a model on photos and videos.

protocol.py (squash / unsquash / threshold / flip TTA: the paper's test protocol), runtime.py (device,
dtype, threads, denormals, fusion), graphs.py (TorchScript graphs of the scores), scorers.py (PyTorch
scorers, loading a model for inference), onnx_runner.py (ONNX scorer), files.py (input discovery and
output files), predict.py, video.py, export.py, bench.py. Import the submodule you need.
"""
