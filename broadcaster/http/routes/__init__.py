"""The API's routes, one router per resource, as ``create_app`` includes them:

- ``health``: probes, metrics and the demo page.
- ``generations``: start, read and cancel generations.
- ``streams``: publish, and the SSE stream of one stream.
- ``events``: many streams on one connection.
- ``chat``: the AI SDK's chat transport.
- ``chat_history``: a chat's history: read, seeded from an app's store, deleted.
- ``chats``: the caller's chats and their lifecycle feed.
- ``durable``: the Durable Streams protocol.
- ``agui``: AG-UI views and CopilotKit's runtime routes (``/v1/agui``).
- ``tokens``: minting viewer tokens.
- ``revocations``: revoking tokens before their expiry.
- ``worker``: the job protocol for workers that are not Python (``/v1/worker``).
- ``usage``: what each user's generations used, by day and model (``/v1/usage``).

No route module imports another: what two share lives in ``broadcaster.http`` or in a
capability. May import: what ``broadcaster.http`` may.
"""
