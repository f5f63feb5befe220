"""Bodies of the tenant endpoints."""

from __future__ import annotations

from pydantic import BaseModel, Field

from faceauth.kit.requests import Answer


class PurgeCounts(BaseModel):
    faces: int = Field(description="Distinct faces whose images were removed.")
    vectors: int = Field(description="Vector rows removed from Milvus.")
    images: int = Field(description="Image objects removed from the object store.")


class PurgeResponse(Answer):
    tenant: str
    deleted: PurgeCounts


class TenantCountOut(BaseModel):
    tenant: str
    faces: int = Field(description="Enrolled faces (distinct face ids).")
    subjects: int = Field(description="Subjects (people) those faces belong to.")


class TenantListResponse(Answer):
    tenants: list[TenantCountOut] = Field(description="Every tenant with faces (admin key), or the key's own.")
    complete: bool = Field(description="false: the index holds more rows than one count reads; the counts are partial")
