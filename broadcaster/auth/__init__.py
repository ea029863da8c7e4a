"""Who may do what: API keys, the access tokens the front-end mints and verifies, the
keys tokens are verified with, and how much a client may spend per minute.

- ``credentials``: API keys (hashed, each with its rights) and the viewer and chat
  tokens the front-end mints; pure.
- ``tokens``: access tokens as standard JWTs, their claims and rules; pure.
- ``jwks``: the verifier every access check asks, with HS256 secrets and a JWKS by URL
  or file.
- ``quota``: per-minute counters in Redis, shared by every front-end: requests per key
  or token, fork bytes per payer.
- ``revocations``: tokens revoked before their expiry, by id or subject: in Redis, and
  in every front-end's memory, kept by the wake channels.

The HTTP room turns these into route dependencies (``http/access.py``).

May import: ``broadcaster.core``.
"""
