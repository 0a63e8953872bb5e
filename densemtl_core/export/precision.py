"""Precision carried by the ONNX graph itself: a half-precision graph, or INT8 with explicit
QuantizeLinear/DequantizeLinear (Q/DQ) nodes.

TensorRT 11 has no precision builder flags and no implicit INT8 calibration: a strongly typed
network runs in the types its graph declares. So the FP32 export is rewritten here, and any
runtime (ONNX Runtime, TensorRT 10.3 to 11.x, OpenVINO) runs the same arithmetic.

* ``fp16``: onnxconverter-common's ``convert_float_to_float16`` with float32 inputs and outputs.
  The pre-processing before the first convolution and the metric decoding after the heads'
  last convolutions (softmax, inverse depth to metres, normal normalisation, sigmoid) stay in
  float32: the inverse-depth scale, 65536, is beyond float16's range, and both are a tiny share
  of the graph's cost.
* ``int8``: ONNX Runtime's static quantization (``quantize_static``, QDQ format), weights
  symmetric INT8 per output channel, on the inputs of Conv and MatMul only (the operators
  TensorRT and ONNX Runtime run in INT8; Q/DQ around the rest adds work without speed). The
  heads' last convolutions stay in float32; activation ranges are calibrated with MinMax.
  Activations are symmetric signed INT8 with float32 biases by default, the only form
  TensorRT accepts (zero points 0, no int32 dequantization); ``uint8`` activations
  (asymmetric, int32 biases) are ONNX Runtime's fast form on x86, whose VNNI instructions
  multiply unsigned by signed bytes: TensorRT refuses that graph.

Why (shipped model, 64x80, 200 rendered test scenes, ONNX Runtime on one thread of this x86
CPU): NVIDIA Model Optimizer's ``modelopt.onnx.quantization`` (0.47, installs on CPU next to
torch 2.13 but pulls cupy and CUDA wheels) writes a mixed FP16/INT8 graph for TensorRT: in ONNX
Runtime it ran 2.5x slower than FP32, and its float16 conversion of the decoding turned the
inverse-depth scale 65536 into infinity (depth off by 640 % on average). ONNX Runtime's tool
needs nothing beyond onnxruntime. MinMax calibration: depth RMSE +0.69 %, mIoU +0.03 points;
Percentile (99.999): +0.80 %, -0.00 points, twice the calibration time; Entropy: no better
than MinMax. Quantizing the heads' last convolutions too: depth RMSE +1.02 %, mIoU -0.08
points. Speed: see the README's table (the symmetric INT8 form is slower than FP32 in ONNX
Runtime on this CPU; the uint8 form is the fast one).
"""
from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..runtime.metadata import GRAPH_PRECISIONS, ONNX_METADATA_KEY
from ..runtime.onnx_graph import import_onnx
from .calibration import CALIBRATION_METHODS, CalibrationSource, calibration_batches
from .onnx import load_onnx, read_onnx_info

COMPUTE_OPERATORS = ("Conv", "MatMul")
"""The operators an INT8 graph quantizes."""


def set_graph_precision(path: Path, precision: str,
                        calibration: CalibrationSource | None = None) -> None:
    """Rewrite the float32 ONNX file ``path`` in ``precision`` (``int8`` calibrates on
    ``calibration``, by default the synthetic training scenes) and record it in the file's
    model description."""
    if precision not in GRAPH_PRECISIONS:
        raise ValueError(f"precision must be one of {GRAPH_PRECISIONS}, got {precision!r}")
    info = read_onnx_info(path)
    if info.precision != "fp32":
        raise ValueError(f"{path} is already a {info.precision} graph")
    if precision == "fp32":
        return
    onnx = import_onnx()
    proto = load_onnx(path)
    if precision == "fp16":
        converted, record = to_float16(proto), None
    else:
        source = calibration or CalibrationSource()
        batches = calibration_batches(source, info.camera_size or info.input_size,
                                      camera_frames=info.camera_size is not None)
        converted = quantize_int8(proto, batches, source.method, source.activations)
        record = source.describe(len(batches))
    described = replace(info, precision=precision, calibration=record)
    converted.ClearField("metadata_props")
    onnx.helper.set_model_props(converted, {ONNX_METADATA_KEY: described.to_json()})
    onnx.checker.check_model(converted, full_check=True)
    partial = path.with_name(path.name + ".partial")
    onnx.save(converted, str(partial))
    partial.replace(path)


def final_compute_nodes(proto: Any) -> tuple[set[str], set[str]]:
    """(names of the last Conv/MatMul nodes before each graph output, names of the nodes after
    them): the heads' final convolutions and the metric decoding."""
    producer = {output: node for node in proto.graph.node for output in node.output}
    finals, decoding, seen = set(), set(), set()
    pending = [output.name for output in proto.graph.output]
    while pending:
        node = producer.get(pending.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in COMPUTE_OPERATORS:
            finals.add(node.name)
            continue
        decoding.add(node.name)
        pending.extend(node.input)
    return finals, decoding


def preprocessing_nodes(proto: Any) -> set[str]:
    """Names of the nodes between the graph inputs and the first convolutions: normalisation,
    and an end-to-end graph's uint8 cast and resize."""
    readers: dict[str, list[Any]] = {}
    for node in proto.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    found: set[str] = set()
    pending = [graph_input.name for graph_input in proto.graph.input]
    while pending:
        for node in readers.get(pending.pop(), ()):
            if node.op_type != "Conv" and node.name not in found:
                found.add(node.name)
                pending.extend(node.output)
    return found


def to_float16(proto: Any) -> Any:
    """``proto`` with its network in float16; inputs, outputs, the pre-processing and the
    decoding stay float32."""
    from onnxconverter_common.float16 import convert_float_to_float16

    proto = _constants_as_initializers(proto)
    _, decoding = final_compute_nodes(proto)
    blocked = decoding | preprocessing_nodes(proto)
    with warnings.catch_warnings():  # weights below float16's range become its smallest value
        warnings.filterwarnings("ignore", message="the float32 number")
        converted = convert_float_to_float16(proto, keep_io_types=True,
                                             node_block_list=sorted(blocked))
    return _float32_outputs(_float32_constants_restored(converted, proto))


def _float32_outputs(converted: Any) -> Any:
    """``converted`` without the casts to float16 the converter puts after float32 nodes that
    make graph outputs (``keep_io_types`` only covers outputs made in float16)."""
    onnx = import_onnx()
    outputs = {output.name: output for output in converted.graph.output}
    producers = {name: node for node in converted.graph.node for name in node.output}
    for cast in list(converted.graph.node):
        if (cast.op_type == "Cast" and cast.output[0] in outputs
                and cast.attribute[0].i == onnx.TensorProto.FLOAT16):
            source = producers[cast.input[0]]
            source.output[list(source.output).index(cast.input[0])] = cast.output[0]
            converted.graph.node.remove(cast)
            outputs[cast.output[0]].type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    return converted


def _constants_as_initializers(proto: Any) -> Any:
    """A copy of ``proto`` whose Constant nodes are initializers, which
    :func:`_float32_constants_restored` can find."""
    onnx = import_onnx()
    result = onnx.ModelProto()
    result.CopyFrom(proto)
    constants = [node for node in result.graph.node
                 if node.op_type == "Constant" and node.attribute[0].name == "value"]
    for node in constants:
        tensor = onnx.TensorProto()
        tensor.CopyFrom(node.attribute[0].t)
        tensor.name = node.output[0]
        result.graph.initializer.append(tensor)
        result.graph.node.remove(node)
    return result


def _float32_constants_restored(converted: Any, source: Any) -> Any:
    """``converted`` with the float32 values of ``source`` for the constants read only by
    float32 nodes: the converter rounds every constant to float16 and casts it back (65536, the
    inverse-depth scale, would become 10000)."""
    onnx = import_onnx()
    originals = {tensor.name: tensor for tensor in source.graph.initializer
                 if tensor.data_type == onnx.TensorProto.FLOAT}
    readers: dict[str, list[Any]] = {}
    for node in converted.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    for tensor in converted.graph.initializer:
        if tensor.name in originals and tensor.data_type == onnx.TensorProto.FLOAT16 and all(
                node.op_type == "Cast" and node.attribute[0].i == onnx.TensorProto.FLOAT
                for node in readers.get(tensor.name, ())) and tensor.name in readers:
            tensor.CopyFrom(originals[tensor.name])
    return converted


class _Batches:
    """ONNX Runtime's ``CalibrationDataReader`` protocol over pre-processed input batches."""

    def __init__(self, name: str, batches: Iterable[np.ndarray]) -> None:
        self._name = name
        self._batches: Iterator[np.ndarray] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._name: batch}


def quantize_int8(proto: Any, batches: Iterable[np.ndarray], method: str = "minmax",
                  activations: str = "int8") -> Any:
    """``proto`` with Q/DQ INT8 Conv and MatMul inputs (the heads' last convolutions excepted),
    activation ranges calibrated on ``batches`` (inputs of the graph, one frame each) by
    ``method``; weights symmetric INT8 per output channel. ``activations`` ``int8``: TensorRT's
    form (symmetric, zero points 0, biases in float32); ``uint8``: asymmetric activations and
    int32 biases, as ONNX Runtime runs fastest on x86."""
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")
    onnx = import_onnx()
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    finals, _ = final_compute_nodes(proto)
    activation_type = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[activations]
    tensorrt_form = activations == "int8"  # zero points 0; biases float (no int32 dequantize)
    calibrate = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                 "percentile": CalibrationMethod.Percentile}[method]
    with tempfile.TemporaryDirectory(prefix="densemtl-int8-") as folder:
        source, prepared, quantized = (Path(folder) / name for name in
                                       ("fp32.onnx", "prepared.onnx", "int8.onnx"))
        onnx.save(proto, str(source))
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(quantized), _Batches(proto.graph.input[0].name, batches),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=activation_type, weight_type=QuantType.QInt8,
                        calibrate_method=calibrate, op_types_to_quantize=list(COMPUTE_OPERATORS),
                        nodes_to_exclude=sorted(finals),
                        extra_options={"ActivationSymmetric": tensorrt_form,
                                       "WeightSymmetric": True,
                                       "QuantizeBias": not tensorrt_form})
        return onnx.load(str(quantized))
