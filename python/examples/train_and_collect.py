"""A batch job with outputs, followed as it runs; and the same work as steps on held GPUs.

    python python/examples/train_and_collect.py
"""

from fastgpu import Client, JobFailed

client = Client()
job = client.run("mkdir -p out && for e in 1 2 3; do echo epoch $e; sleep 1; done && echo 0.12 > out/loss.txt",
                 gpus="H100:1", max_runtime="10m", outputs={"out": "s3://local/results/{job_id}/"})
why = job.why()
if why:
    print("waiting:", why)
for line in job.logs(follow=True):
    print(line, end="")
try:
    job.wait(check=True)
except JobFailed as failure:
    raise SystemExit(str(failure))
print("outputs:", [f["path"] for output in job.outputs() for f in output["files"]])

# salloc-style: hold the GPUs, run several commands on them, release on leaving the block.
with client.request_gpus(num_gpus=1, ttl="30m") as gpus:
    gpus.run("python3 -c 'import os; print(os.environ[\"CUDA_VISIBLE_DEVICES\"])'", stream=True)
    gpus.run("echo step two sees the same work directory > note.txt && cat note.txt", stream=True)
