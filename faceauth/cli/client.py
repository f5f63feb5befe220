"""`faceauth faces|subjects|tenants ...`: the Face API from the command line, through the SDK.

Output is for people by default, JSON with --json (the API's own answer). Exit codes: 0 done (or matched),
1 no match (search found nobody, verify did not match), 2 bad usage, 3 refused by the API (4xx), 4 the API is
unavailable or unreachable.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel

    from faceauth.sdk import FaceAuthClient

EXIT_OK, EXIT_NO_MATCH, EXIT_USAGE, EXIT_REFUSED, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4


def add_connection_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=None, help="the Face API (default: $FACEAUTH_URL, else http://127.0.0.1:8000)")
    p.add_argument("--api-key", default=None, help="an API key (default: $FACEAUTH_API_KEY)")
    p.add_argument("--tenant", default=None, help="the tenant to act for (only with an admin key)")
    p.add_argument("--json", action="store_true", help="print the API's answer as JSON")


def make_client(args: argparse.Namespace) -> FaceAuthClient:
    from faceauth.sdk import FaceAuthClient

    return FaceAuthClient(args.url, args.api_key, tenant=args.tenant)


def run_with_client(args: argparse.Namespace, action: Callable[[FaceAuthClient], tuple[BaseModel, str, int]]) -> int:
    """Run one SDK call; print its answer (human or JSON) or its error; return the exit code."""
    from faceauth.sdk import FaceAuthError, UnavailableError

    try:
        with make_client(args) as client:
            answer, human, code = action(client)
    except FaceAuthError as exc:
        if args.json:
            body = {"error": {"status": exc.status, "code": exc.code, "message": exc.message}}
            if exc.details:
                body["error"]["details"] = exc.details
            print(json.dumps({"requestId": exc.request_id, **body}, indent=2))
        else:
            where = f" (request {exc.request_id})" if exc.request_id else ""
            print(f"faceauth: {exc.code}: {exc.message}{where}", file=sys.stderr)
            if exc.details.get("failed_checks"):
                print(f"  failed checks: {', '.join(exc.details['failed_checks'])}", file=sys.stderr)
        return EXIT_UNAVAILABLE if isinstance(exc, UnavailableError) or exc.status is None else EXIT_REFUSED
    except (OSError, ValueError, TypeError) as exc:  # a photo that cannot be read, arguments that do not fit
        print(f"faceauth: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(answer.model_dump_json(indent=2) if args.json else human)
    return code


def _face_line(face: Any) -> str:
    return f"{face.face_id}  subject {face.subject_id}  model {face.model_id}  stored {face.created_at}"


# -- faces ----------------------------------------------------------------------------------------------------


def _enrol(args: argparse.Namespace) -> int:
    def act(client: FaceAuthClient):
        method = client.upsert if args.faces_command == "upsert" else client.insert
        r = method(args.face_id, args.photo, subject_id=args.subject_id, dedup=args.dedup)
        verb = "replaced or enrolled" if args.faces_command == "upsert" else "enrolled"
        return r, f"{verb} {_face_line(r.face)}", EXIT_OK

    return run_with_client(args, act)


def _search(args: argparse.Namespace) -> int:
    def act(client: FaceAuthClient):
        r = client.search(args.photo, top_k=args.top_k, threshold=args.threshold, group_by=args.group_by)
        result = r.searchResult
        if result.skipped_reason:
            reasons = ", ".join(r.imageQualityAssessment.reasons) or result.skipped_reason
            return r, f"no search: the photo failed the quality check ({reasons})", EXIT_NO_MATCH
        if not result.matches:
            return r, f"no match above {result.threshold}", EXIT_NO_MATCH
        lines = [f"{m.score:.3f}  {m.id}  subject {m.subject_id}" for m in result.matches]
        return r, "\n".join(lines), EXIT_OK

    return run_with_client(args, act)


def _verify(args: argparse.Namespace) -> int:
    def act(client: FaceAuthClient):
        r = client.verify(
            args.probes,
            reference_id=args.reference_id,
            reference=args.reference,
            threshold=args.threshold,
            min_matches=args.min_matches,
        )
        lines = [
            f"{'MATCH' if r.matched else 'NO MATCH'}: {r.matches} of {len(r.probes)} probes (need {r.min_matches})"
        ]
        for p in r.probes:
            score = "-" if p.score is None else f"{p.score:.3f}"
            lines.append(f"  probe {p.index}: score {score}  {'matched' if p.matched else p.reason}")
        return r, "\n".join(lines), EXIT_OK if r.matched else EXIT_NO_MATCH

    return run_with_client(args, act)


def _get(args: argparse.Namespace) -> int:
    return run_with_client(args, lambda c: (r := c.get(args.face_id), _face_line(r), EXIT_OK))


def _delete(args: argparse.Namespace) -> int:
    return run_with_client(args, lambda c: (c.delete(args.face_id), f"deleted {args.face_id}", EXIT_OK))


def _detect(args: argparse.Namespace) -> int:
    def act(client: FaceAuthClient):
        r = client.detect(args.photo)
        lines = [f"{r.faces_count} face(s) in {r.width}x{r.height}"]
        for i, face in enumerate(r.faces):
            box = ", ".join(f"{v:.0f}" for v in face.box)
            lines.append(f"  {i}: box [{box}]  score {face.score:.3f}  quality {face.quality:.2f}")
        return r, "\n".join(lines), EXIT_OK if r.faces else EXIT_NO_MATCH

    return run_with_client(args, act)


# -- subjects and tenants -------------------------------------------------------------------------------------


def _subjects_list(args: argparse.Namespace) -> int:
    from faceauth.subjects.schemas import SubjectPageResponse

    def act(client: FaceAuthClient):
        subjects = list(client.subjects.list())
        page = SubjectPageResponse(subjects=subjects, next_cursor=None)
        lines = [f"{s.subject_id}  {len(s.faces)} face(s): {', '.join(f.face_id for f in s.faces)}" for s in subjects]
        return page, "\n".join(lines) or "no subjects", EXIT_OK

    return run_with_client(args, act)


def _subjects_get(args: argparse.Namespace) -> int:
    def act(client: FaceAuthClient):
        r = client.subjects.get(args.subject_id)
        return r, "\n".join([f"subject {r.subject_id}", *(f"  {_face_line(f)}" for f in r.faces)]), EXIT_OK

    return run_with_client(args, act)


def _subjects_delete(args: argparse.Namespace) -> int:
    def act(client: FaceAuthClient):
        r = client.subjects.delete(args.subject_id)
        return r, f"deleted subject {r.subject_id}: {', '.join(r.deleted_faces)}", EXIT_OK

    return run_with_client(args, act)


def _tenants_purge(args: argparse.Namespace) -> int:
    if not args.yes:
        print(f"faceauth: this deletes every face of tenant {args.name!r}; add --yes to confirm", file=sys.stderr)
        return EXIT_USAGE

    def act(client: FaceAuthClient):
        r = client.purge_tenant(args.name)
        d = r.deleted
        return r, f"purged {r.tenant}: {d.faces} faces, {d.vectors} vectors, {d.images} images", EXIT_OK

    return run_with_client(args, act)


def register(sub: argparse._SubParsersAction) -> None:
    faces = sub.add_parser("faces", help="enrol, search, verify, get, delete, detect faces (a running Face API)")
    faces_sub = faces.add_subparsers(dest="faces_command", required=True)
    for name, help_text in (("insert", "enrol a new face"), ("upsert", "enrol or replace a face")):
        p = faces_sub.add_parser(name, help=help_text)
        p.add_argument("face_id")
        p.add_argument("photo", help="a file, an http(s):// or s3:// URL")
        p.add_argument("--subject-id", default=None, help="the person (default: the face id)")
        p.add_argument("--dedup", action="store_true", help="refuse a person enrolled under another id")
        add_connection_options(p)
        p.set_defaults(func=_enrol)
    p = faces_sub.add_parser("search", help="1:N search (exit 1: no match)")
    p.add_argument("photo")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--threshold", type=float, default=None)
    p.add_argument("--group-by", choices=["face", "subject"], default="face")
    add_connection_options(p)
    p.set_defaults(func=_search)
    p = faces_sub.add_parser("verify", help="1:1: do the probe photos show the reference? (exit 1: no match)")
    p.add_argument("probes", nargs="+", help="1-5 probe photos")
    ref = p.add_mutually_exclusive_group(required=True)
    ref.add_argument("--reference-id", default=None, help="an enrolled face")
    ref.add_argument("--reference", default=None, help="or a reference photo")
    p.add_argument("--threshold", type=float, default=None)
    p.add_argument("--min-matches", type=int, default=None)
    add_connection_options(p)
    p.set_defaults(func=_verify)
    for name, func, help_text in (("get", _get, "a face's record"), ("delete", _delete, "delete a face")):
        p = faces_sub.add_parser(name, help=help_text)
        p.add_argument("face_id")
        add_connection_options(p)
        p.set_defaults(func=func)
    p = faces_sub.add_parser("detect", help="every face in a photo (nothing stored; exit 1: none)")
    p.add_argument("photo")
    add_connection_options(p)
    p.set_defaults(func=_detect)

    subjects = sub.add_parser("subjects", help="list, get, delete subjects (a running Face API)")
    subjects_sub = subjects.add_subparsers(dest="subjects_command", required=True)
    p = subjects_sub.add_parser("list", help="every subject of the tenant")
    add_connection_options(p)
    p.set_defaults(func=_subjects_list)
    for name, func, help_text in (
        ("get", _subjects_get, "a subject's faces"),
        ("delete", _subjects_delete, "delete a subject and all its faces"),
    ):
        p = subjects_sub.add_parser(name, help=help_text)
        p.add_argument("subject_id")
        add_connection_options(p)
        p.set_defaults(func=func)

    tenants = sub.add_parser("tenants", help="tenant-wide operations (an admin key)")
    tenants_sub = tenants.add_subparsers(dest="tenants_command", required=True)
    p = tenants_sub.add_parser("purge", help="delete every face, vector and image of a tenant")
    p.add_argument("name")
    p.add_argument("--yes", action="store_true", help="confirm")
    add_connection_options(p)
    p.set_defaults(func=_tenants_purge)
