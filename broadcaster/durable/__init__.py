"""The Durable Streams protocol (ElectricSQL's open HTTP protocol for append-only streams
with offsets) over this project's log and fan-out: its rules, pure (``protocol``), and
its live reads as readers of the hub (``live``). Imports the core and the fan-out; the
HTTP room above serves it at ``/v1/stream/{path}``."""
