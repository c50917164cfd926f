"""The console (SPEC §3.9): server-rendered pages at ``/console`` for the people who run a
time bank — a face like the API, calling the same services with a ``Principal``."""
