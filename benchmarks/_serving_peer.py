"""infinity-emb as a server under load, in its own virtual environment (run by benchmarks/serving.py).

Reads one JSON command per line on stdin and answers one JSON line on stdout:

    {"op": "start", "model": DIR, "threads": 2, "batch_size": 16, "root": REPO, "sentences": [...], "settings": {...}}
    {"op": "point", "rate": 100.0, "seconds": 3.0}   -> the pipeline.load.Point summary of that rate
    {"op": "stop"}

infinity's engine runs on an asyncio loop in a background thread; the generator is the
project's own (pipeline.load.Driver: same schedules, same sentences, same clock), submitting
each request with ``asyncio.run_coroutine_threadsafe(engine.embed([text]))``.  This file
imports only numpy, infinity_emb (and its torch) and pipeline.load/serve, so it runs in the
venv that pins numpy<2 and sentence-transformers<4.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import traceback


def main() -> int:
    engine = loop = driver = None
    for line in sys.stdin:
        msg = json.loads(line)
        try:
            if msg["op"] == "start":
                sys.path.insert(0, msg["root"])
                import torch
                from infinity_emb import AsyncEngineArray, EngineArgs

                from pipeline.load import Driver

                torch.set_num_threads(int(msg["threads"]))
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, daemon=True).start()
                args = EngineArgs(
                    model_name_or_path=msg["model"], engine="torch", device="cpu", batch_size=int(msg["batch_size"]),
                    bettertransformer=False, compile=False, model_warmup=True, trust_remote_code=False,
                )
                engine = AsyncEngineArray.from_args([args])[0]
                asyncio.run_coroutine_threadsafe(engine.astart(), loop).result(600)
                asyncio.run_coroutine_threadsafe(engine.embed(sentences=msg["sentences"][:16]), loop).result(120)
                s = msg["settings"]

                def submit(text):
                    return asyncio.run_coroutine_threadsafe(engine.embed(sentences=[text]), loop)

                driver = Driver(submit, msg["sentences"], s["timeout_ms"], s["min_requests"])
                reply = {"ok": True, "torch": torch.__version__, "threads": torch.get_num_threads()}
            elif msg["op"] == "point":
                p = driver(float(msg["rate"]), float(msg["seconds"]))
                reply = p.summary()
            elif msg["op"] == "stop":
                if engine is not None:
                    asyncio.run_coroutine_threadsafe(engine.astop(), loop).result(60)
                print(json.dumps({"ok": True}), flush=True)
                return 0
            else:
                reply = {"error": f"unknown op {msg['op']!r}"}
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
