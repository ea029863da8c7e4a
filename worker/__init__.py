"""The LLM worker: takes generation jobs from Redis and streams the model's output into
the event log (``python -m worker run``)."""
