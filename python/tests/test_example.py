"""The product's own example, as written (the URL, the file and the bucket apart), against a real
`fastgpu up`: GPUs held, an ONNX model deployed and woken from zero, a prediction, a result saved."""

from __future__ import annotations

import hashlib
import io

import numpy as np


def test_the_product_example_runs_as_written(env, onnx_model):
    data = np.random.default_rng(7).random((64, 64), dtype=np.float32)

    from fastgpu import Client
    client = Client(env.url)                               # token from FASTGPU_TOKEN
    gpus = client.request_gpus(num_gpus=2, memory=16)      # 2 GPUs with at least 16 GB each
    model = client.deploy_model(model_file=onnx_model, input_shape=(64, 64))
    output = model.predict(data)
    ref = client.save_result(output, bucket="local", prefix="my-prefix")

    # The GPUs are held: two, running, each with at least 16 GB.
    assert len(gpus.gpus) == 2 and gpus.job.state == "running"
    assert gpus.job.data["minGpuMemoryMiB"] == 15258
    # The model computed 2x + 1, and came back as an array.
    assert isinstance(output, np.ndarray) and output.shape == (64, 64) and output.dtype == np.float32
    np.testing.assert_allclose(output, 2 * data + 1, rtol=1e-6)
    # The result is stored whole, and saving it again writes nothing new.
    stored = client.download(ref.uri)
    assert hashlib.sha256(stored).hexdigest() == ref.sha256 and len(stored) == ref.size
    np.testing.assert_array_equal(np.load(io.BytesIO(stored)), output)
    again = client.save_result(output, bucket="local", prefix="my-prefix")
    assert again.uri == ref.uri and again.uploaded is False

    # The held GPUs run commands; releasing them ends the allocation.
    with gpus:
        seen = gpus.run("echo $CUDA_VISIBLE_DEVICES").stdout.strip().split(",")
        assert sorted(f"gpu{d}" for d in seen) == sorted(gpus.gpus)
    assert gpus.job.refresh().state == "cancelled"
    model.delete()


def test_a_python_function_is_a_model_too(env, tmp_path, monkeypatch):
    # No FASTGPU_GATEWAY: the server says where its gateway answers for the model.
    monkeypatch.delenv("FASTGPU_GATEWAY")
    handler = tmp_path / "handler.py"
    handler.write_text("import numpy as np\n\n"
                       "def predict(x):\n"
                       "    return {'sum': float(np.asarray(x).sum()), 'shape': list(x.shape)}\n")
    from fastgpu import Client
    client = Client(env.url)
    model = client.deploy_model(model_file=str(handler), function="handler:predict", input_shape=(None,), gpus=0, name="summer")
    assert model.url == f"{env.gateway}/summer/predict"
    assert model.predict([1.0, 2.0, 3.5]) == {"sum": 6.5, "shape": [3]}
    # A batch of inputs is one call; a large one goes as .npy and comes back the same.
    batch = np.ones((20_000, 3), dtype=np.float32)
    assert model.predict(batch) == {"sum": 60_000.0, "shape": [20_000, 3]}
    model.delete()
