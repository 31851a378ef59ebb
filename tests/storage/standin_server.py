"""Launch mongoeco's MongoDB wire-protocol server: a stand-in, not a real MongoDB.

Runs on the separate Python 3.13 environment `.venv-standin` (`make standin` builds it from
`tests/storage/standin-requirements.txt`), not the project's own:

    .venv-standin/bin/python tests/storage/standin_server.py PORT [--replset NAME]

Prints `READY 127.0.0.1:PORT` once it accepts connections and serves until killed; its in-memory
engine keeps nothing afterwards. mongoeco runs multi-document transactions but its `hello` does not
say it is a replica set member, so the engine would treat it as a standalone mongod; `--replset`
adds `setName` to `hello` so the engine's transaction path is the one exercised. Without it the
stand-in plays a standalone mongod (transaction Bundles refused).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any


async def main(port: int, replset: str | None) -> None:
    from mongoeco.engines.memory import MemoryEngine
    from mongoeco.wire import AsyncMongoEcoProxyServer

    if replset:
        from mongoeco.wire.handshake import WireHandshakeService

        plain = WireHandshakeService.build_hello_response

        def hello(self: Any, **kwargs: Any) -> Any:
            response = plain(self, **kwargs)
            response["setName"] = replset
            return response

        WireHandshakeService.build_hello_response = hello  # type: ignore[method-assign]
    server = AsyncMongoEcoProxyServer(engine=MemoryEngine(), host="127.0.0.1", port=port)
    await server.start()
    print(f"READY 127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--replset", default=None)
    args = parser.parse_args()
    asyncio.run(main(args.port, args.replset))
