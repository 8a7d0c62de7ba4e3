"""Serve a Python function as a model: any `module:function` taking one numpy array.

    python python/examples/serve_function.py
"""

import pathlib

from fastgpu import Client

pathlib.Path("handler.py").write_text(
    "import numpy as np\n\n"
    "def predict(x):\n"
    "    '''Per row: the mean and the largest value.'''\n"
    "    return {'mean': np.asarray(x).mean(axis=-1).tolist(), 'max': np.asarray(x).max(axis=-1).tolist()}\n")

client = Client()                       # FASTGPU_SERVER / FASTGPU_TOKEN, or a local fastgpu up
model = client.deploy_model(model_file="handler.py", function="handler:predict", input_shape=(None, 4), gpus=0,
                            replicas=(0, 4), name="row-stats")
print(model.predict([[1, 2, 3, 4], [5, 6, 7, 8]]))
