"""`faceauth reembed | repair`: maintenance of the stored faces, on the configured stores (the API may run)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from faceauth.config import load_api_settings

if TYPE_CHECKING:
    from faceauth.api.container import Container


def _with_container(fn: Callable[[Container], Awaitable[int]]) -> int:
    """Run `await fn(container)` on the Face API's parts over the configured stores and ML client (opened, then
    closed); a store or ML failure prints its message and gives exit code 1."""
    from faceauth.api.container import Container
    from faceauth.kit.errors import AppError
    from faceauth.ml_client import MLServiceError
    from faceauth.storage.errors import StorageUnavailable

    async def run() -> int:
        # The ML client connects only when used (repair never uses it).
        container = Container(load_api_settings())
        try:
            await container.open()
            return await fn(container)
        except (MLServiceError, StorageUnavailable, AppError) as exc:
            print(f"faceauth: {exc}", file=sys.stderr)
            return 1
        finally:
            await container.close()

    return asyncio.run(run())


def _reembed(args: argparse.Namespace) -> int:
    """Re-embed stored faces after an embedding-model change, from their stored images (docs/OPERATIONS.md)."""

    async def run(container: Container) -> int:
        model_id = (await container.ml.ready())["models"]["embedder"]["model_id"]
        if args.from_collection:
            return await _move(container, model_id)
        print(f"re-embedding faces of other models with {model_id} ...", flush=True)
        report = await container.reembedder.reembed_all(model_id, batch_size=args.batch_size)
        print(f"re-embedded {report.reembedded} face(s); {len(report.failed)} failed")
        for face, code in sorted(report.failed.items()):
            print(f"  {face}: {code}")
        return 1 if report.failed else 0

    async def _move(container: Container, model_id: str) -> int:
        from faceauth.api.container import open_face_index

        settings = container.settings.model_copy(
            update={"milvus_collection": args.from_collection, "milvus_embedding_dim": args.from_dim}
        )
        source = open_face_index(settings)
        await source.open()
        try:
            which = f"tenant {args.tenant}" if args.tenant else "every tenant"
            print(
                f"moving {which} from {args.from_collection} to {container.settings.milvus_collection}, "
                f"re-embedded with {model_id} ...",
                flush=True,
            )
            report = await container.reembedder.move_from(
                source, model_id, tenant=args.tenant, batch_size=args.batch_size
            )
        finally:
            await source.close()
        print(f"moved {report.reembedded} face(s); {report.already_there} already there; {len(report.failed)} failed")
        for face, code in sorted(report.failed.items()):
            print(f"  {face}: {code}")
        return 1 if report.failed else 0

    return _with_container(run)


def _repair(args: argparse.Namespace) -> int:
    """Remove what interrupted writes left behind, in every tenant: images no vector points to and vectors whose
    image is missing, once older than the grace period (faceauth/maintenance/service.py). Safe while the Face API
    runs. The ML service is not needed."""
    from faceauth.maintenance import sweep_orphans

    async def run(container: Container) -> int:
        print("sweeping for leftovers of interrupted writes ...", flush=True)
        print((await sweep_orphans(container.repository)).summary())
        return 0

    return _with_container(run)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reembed", help="re-embed stored faces after an embedding-model change (the ML service runs)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--from-collection",
        default=None,
        help="move faces from this collection (another model profile) into FACEAUTH_MILVUS_COLLECTION",
    )
    p.add_argument("--from-dim", type=int, default=512, help="the embedding dimension of --from-collection")
    p.add_argument("--tenant", default=None, help="with --from-collection: move only this tenant's faces")
    p.set_defaults(func=_reembed)
    p = sub.add_parser("repair", help="remove images without vector and vectors without image (all tenants)")
    p.set_defaults(func=_repair)
