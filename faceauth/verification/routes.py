"""1:1 verification: /v1/faces/verify, and /compare-faces (the face-verification service's contract)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile

from faceauth.contracts.ids import FACE_ID_MAX, ID_DOC, ID_PATTERN
from faceauth.photos.deps import mixed_photos, one_photo
from faceauth.photos.sources import Photo
from faceauth.verification import schemas
from faceauth.verification.service import MAX_PROBES, Verdict, VerificationService
from faceauth.web.deps import CallerTenant, SettingsDep, optional_tenant_form, provided
from faceauth.web.params import PHOTO_ERRORS, AlignedForm, error

router = APIRouter(tags=["verification"])

VerificationServiceDep = Annotated[VerificationService, Depends(provided(VerificationService))]
_ERRORS = {
    **PHOTO_ERRORS,
    404: error("face_not_found / subject_not_found: the reference is not enrolled in the tenant"),
    409: error("model_mismatch: the reference face was embedded by another model (re-embed)"),
    422: error(
        "invalid_probe_count, invalid_reference, invalid_min_matches, no_face_detected (reference), "
        "unreadable image, bad field"
    ),
}


def _probes_out(verdict: Verdict) -> list[schemas.ProbeOut]:
    return [
        schemas.ProbeOut(
            index=i,
            field=p.field,
            score=None if p.score is None else round(p.score, 6),
            matched=p.matched,
            reason=p.reason,
            imageQualityAssessment=p.analysis.assessment(),
        )
        for i, p in enumerate(verdict.probes)
    ]


def _reference_out(verdict: Verdict) -> schemas.ReferenceOut:
    ref = verdict.reference
    return schemas.ReferenceOut(
        type=ref.kind,  # type: ignore[arg-type]
        id=ref.face_id,
        imageQualityAssessment=None if ref.analysis is None else ref.analysis.assessment(),
    )


@router.post(
    "/v1/faces/verify",
    response_model=schemas.VerifyResponse,
    summary=f"1:1 verification: do 1-{MAX_PROBES} probe photos show the reference person?",
    responses=_ERRORS,
)
async def verify(
    service: VerificationServiceDep,
    settings: SettingsDep,
    tenant: Annotated[str | None, optional_tenant_form("required with reference_id")],
    probes: Annotated[list[UploadFile], File(description=f"probe photos (1-{MAX_PROBES} in all)")] = [],  # noqa: B006
    probes_b64: Annotated[list[str], Form(description="probe photos as base64")] = [],  # noqa: B006
    probes_url: Annotated[list[str], Form(description="probe photos by URL (http(s):// or s3://)")] = [],  # noqa: B006
    reference_id: Annotated[
        str | None,
        Form(
            description=f"an enrolled face of the tenant as the reference ({ID_DOC})",
            pattern=ID_PATTERN,
            max_length=FACE_ID_MAX,
        ),
    ] = None,
    reference_subject_id: Annotated[
        str | None,
        Form(
            description="or: an enrolled subject of the tenant (each probe scores its best-matching face)",
            pattern=ID_PATTERN,
            max_length=FACE_ID_MAX,
        ),
    ] = None,
    reference: Annotated[UploadFile | None, File(description="or: a reference photo")] = None,
    reference_b64: Annotated[str | None, Form(description="or: the reference photo as base64")] = None,
    reference_url: Annotated[str | None, Form(description="or: the reference photo by URL")] = None,
    threshold: Annotated[
        float | None, Form(ge=0.0, le=1.0, description="0..1; default FACEAUTH_VERIFY_THRESHOLD")
    ] = None,
    min_matches: Annotated[
        int | None, Form(ge=1, le=MAX_PROBES, description="matching probes required (default: more than half)")
    ] = None,
    require_quality: Annotated[
        bool, Form(description="a probe counts only if it passes the anti-spoof, blur and NSFW checks")
    ] = True,
    aligned: AlignedForm = False,
):
    limit = settings.max_image_bytes
    probe_photos = await mixed_photos(limit, ("probes", probes), ("probes_b64", probes_b64), ("probes_url", probes_url))
    reference_photo = await one_photo(
        limit,
        ("reference", reference),
        ("reference_b64", reference_b64),
        ("reference_url", reference_url),
        required=False,
    )
    verdict = await service.verify(
        probe_photos,
        tenant=tenant,
        reference_id=reference_id,
        reference=reference_photo,
        threshold=threshold,
        min_matches=min_matches,
        require_quality=require_quality,
        aligned=aligned,
        reference_subject_id=reference_subject_id,
    )
    return schemas.VerifyResponse(
        matched=verdict.matched,
        threshold=verdict.threshold,
        min_matches=verdict.min_matches,
        matches=verdict.matches,
        model_id=verdict.reference.model_id,
        reference=_reference_out(verdict),
        probes=_probes_out(verdict),
    )


@router.post(
    "/compare-faces",
    response_model=schemas.CompareFacesResponse,
    summary="Compatibility: 3 front photos against 1 back photo, all by URL (face-verification service contract)",
    responses=_ERRORS,
)
async def compare_faces(
    body: schemas.CompareFacesRequest, service: VerificationServiceDep, settings: SettingsDep, tenant: CallerTenant
):
    fronts = [Photo.from_url(name, getattr(body, name)) for name in ("front_image1", "front_image2", "front_image3")]
    verdict = await service.verify(
        fronts,
        tenant=tenant,  # s3:// photos: a tenant key reads its own tenant's drop area only
        reference_id=None,
        reference=Photo.from_url("back_image", body.back_image),
        threshold=body.threshold,
        min_matches=body.min_matches or settings.compare_min_matches,
        require_quality=body.require_quality,
    )
    return schemas.CompareFacesResponse(
        user_id=body.user_id,
        matched=verdict.matched,
        threshold=verdict.threshold,
        required_matches=verdict.min_matches,
        matches=verdict.matches,
        scores=[None if p.score is None else round(p.score, 6) for p in verdict.probes],
        model_id=verdict.reference.model_id,
        details=_probes_out(verdict),
        back_image=_reference_out(verdict),
    )
