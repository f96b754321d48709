"""Delivery: how a stream's events reach a client (docs/architecture.md, "Delivery").

provider → pipeline `emit` → log → `Reader` (reader.py) → `Encoder` (encoders.py) → `Sink`
(sinks.py); write batching per loop turn in flush.py; the one seam onto uvicorn's transport in
direct_write.py. Nothing here imports from `tokenrelay.server`.
"""
