"""``edgebert serve BUNDLE...``: the HTTP service under uvicorn (a thin layer over :func:`create_app`)."""

from __future__ import annotations

import argparse
import logging

from edgebert.runtime.artifacts import engine_names

from .config import ServeConfig

DEFAULTS = ServeConfig()


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edgebert serve``."""
    parser.add_argument("bundles", nargs="+", metavar="BUNDLE",
                        help="bundle directory, served as the model named like its folder; NAME=PATH renames it")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads per model (default: all CPUs)")
    parser.add_argument("--engine", default="auto", choices=engine_names(),
                        help="inference engine (default auto: the bundle's fastest artifact whose engine is installed)")
    parser.add_argument("--max-batch-tokens", type=int, default=DEFAULTS.max_batch_tokens,
                        help=f"token budget of one merged batch (default {DEFAULTS.max_batch_tokens})")
    parser.add_argument("--max-wait-ms", type=float, default=DEFAULTS.max_wait_ms,
                        help=f"how long a request may wait for others to batch with (default {DEFAULTS.max_wait_ms}"
                             "; 0 turns dynamic batching off)")
    parser.add_argument("--no-batching", action="store_true", help="run every request on its own (no merging)")
    parser.add_argument("--max-queue", type=int, default=DEFAULTS.max_queue,
                        help=f"requests waiting per model before 503 (default {DEFAULTS.max_queue})")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULTS.max_body_bytes,
                        help=f"largest request body (default {DEFAULTS.max_body_bytes})")
    parser.add_argument("--max-texts", type=int, default=DEFAULTS.max_texts,
                        help=f"texts per request (default {DEFAULTS.max_texts})")
    parser.add_argument("--max-tokens-per-request", type=int, default=DEFAULTS.max_tokens_per_request,
                        help=f"tokens per request (default {DEFAULTS.max_tokens_per_request})")
    parser.add_argument("--timeout", type=float, default=DEFAULTS.timeout,
                        help=f"seconds per request before 504 (default {DEFAULTS.timeout:g})")
    parser.add_argument("--long-text", choices=("truncate", "chunk", "error"), default=None,
                        help="texts longer than a model's maximum: truncate, chunk or error (a 400); "
                             "default: each task's own")
    parser.add_argument("--no-verify", action="store_true", help="skip checking the bundles' checksums")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                        help="server log level (default info)")


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    return ServeConfig(
        threads=args.threads, engine=args.engine, batching=not args.no_batching,
        max_batch_tokens=args.max_batch_tokens, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
        max_body_bytes=args.max_body_bytes, max_texts=args.max_texts,
        max_tokens_per_request=args.max_tokens_per_request, timeout=args.timeout, long_text=args.long_text,
        verify=not args.no_verify,
    )


def run_serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; requests in flight finish before the process exits."""
    import uvicorn

    from .app import create_app

    config = config_from_args(args)
    app = create_app(list(args.bundles), config)
    logging.getLogger("edgebert.serve").setLevel(args.log_level.upper())
    logging.basicConfig(format="%(levelname)s:     %(message)s")
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                timeout_graceful_shutdown=int(config.timeout) + 5)
    return 0
