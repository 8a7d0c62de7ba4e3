"""The product's example end to end on a local FastGPU (`swift run fastgpu up`).

    pip install './python[numpy]' onnx        # onnx only to build the small model below
    python python/examples/quickstart.py

The replica's Python needs numpy and onnxruntime: set FASTGPU_SERVE_PYTHON to one that has them
(by default the node's `python3`).
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from fastgpu import Client

# A model to serve: y = 2x + 1 on 64×64 inputs.
graph = helper.make_graph(
    [helper.make_node("Mul", ["x", "two"], ["t"]), helper.make_node("Add", ["t", "one"], ["y"])], "affine",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64, 64])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 64, 64])],
    initializer=[numpy_helper.from_array(np.array(2.0, np.float32), "two"), numpy_helper.from_array(np.array(1.0, np.float32), "one")])
onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), "model.onnx")
data = np.random.rand(64, 64).astype(np.float32)

client = Client("http://127.0.0.1:8470")
gpus = client.request_gpus(num_gpus=2, memory=16)
print("holding", gpus.gpus, "on node", gpus.node)
print(gpus.run("echo CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES").stdout, end="")

model = client.deploy_model(model_file="model.onnx", input_shape=(64, 64))
output = model.predict(data)                      # the first call wakes the model from zero
print("max error:", float(np.abs(output - (2 * data + 1)).max()))

ref = client.save_result(output, bucket="local", prefix="run-1")
print("saved", ref.uri, ref.size, "bytes, sha256", ref.sha256[:12])
gpus.release()
