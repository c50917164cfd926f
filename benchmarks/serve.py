"""Serve an ASGI app factory exactly as ``timebank serve`` serves the product.

Same uvicorn call and flags (see ``timebank/cli.py``), so the anchors (the bare Litestar
handler, the django-hordak project) differ from the product only in the application.
Usage: ``python serve.py MODULE:FACTORY --port P --workers N [--app-dir DIR]``.
"""

from __future__ import annotations

import argparse

import uvicorn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--app-dir", default=".")
    parser.add_argument("--no-factory", action="store_true")
    args = parser.parse_args()
    uvicorn.run(
        args.app,
        factory=not args.no_factory,
        app_dir=args.app_dir,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        timeout_keep_alive=5,
    )


if __name__ == "__main__":
    main()
