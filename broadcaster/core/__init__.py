"""The core every process uses: what an event is, where it lives in Redis, and how to
reach Redis.

Owns every name accepted from outside and its one check (``names``), the event
vocabulary (``events``), SSE encoding (``sse``), every key and TTL (``keys``), the event
log and its Lua scripts (``log``), the webhook outbox other rooms add events to
(``outbox``), the generation job queues, one per model provider (``jobs``), the
generation request and its checks (``request``), a generation's turn folded from its
events (``content``), Redis clients for a single server, Cluster and Sentinel
(``connection``), the embedded server (``embedded``), API keys and viewer tokens
(``auth``), the shared settings (``settings``), logging (``logs``), and failures kept
where they happen, logged once a minute and counted (``contain``).

May import: nothing else of the project. Everything else imports from here.
"""
