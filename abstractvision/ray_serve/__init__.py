"""Scale-out on Ray Serve (``pip install 'abstractvision[ray]'``)::

    MCP / OpenAI front end ─┐                        ┌─ replica 1: VisionWorker(diffusers) ─ GPU 0
    MCP / OpenAI front end ─┼─ RayServeVisionBackend ─┼─ replica 2: VisionWorker(diffusers) ─ GPU 1
    Python VisionManager  ──┘   (deployment handle)  └─ ...
              │
              └── one shared artifact store (a shared directory, or s3:// via fsspec)

Front ends stay stateless: they validate, send the request to the deployment, relay progress,
forward cancellation, and store the result. See docs/ray.md.
"""

from .deploy import WorkerOptions, build_app, connect, deploy, deployed_backend, worker_options

__all__ = ["WorkerOptions", "build_app", "connect", "deploy", "deployed_backend", "worker_options"]
