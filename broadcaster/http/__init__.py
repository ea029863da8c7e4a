"""The HTTP front-end (``python -m broadcaster serve``): the FastAPI app with its routers
per resource, access control and limits as dependencies, the SSE response and the
uvicorn server with its direct-write fast path.

May import: ``broadcaster.core`` and ``broadcaster.fanout``.
"""
