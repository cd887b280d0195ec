"""The lowest layer: secret redaction and logging; imports nothing else of ours."""
