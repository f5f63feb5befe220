"""Stored images are reachable only through short-lived links, asked for with a key of the face's tenant."""

from __future__ import annotations

import time
import uuid

import httpx

from faceauth.photos.metadata import without_metadata
from tests.apitest import enrol, new_key


def test_a_link_serves_the_image_without_a_key_until_it_expires(make_api, people, photos):
    image = photos(people[0].enrol_photo)
    with make_api(image_link_seconds=10) as api:
        assert enrol(api, "acme", "emp_1", image).status_code == 200
        r = api.get("/v1/faces/image-url/emp_1", params={"tenant": "acme"})
        assert r.status_code == 200, r.text
        link = r.json()["url"]
        assert link.startswith("http://testserver/v1/images/") and r.json()["expires_at"].endswith("Z")

        served = api.get(link, headers={"X-Api-Key": ""})
        # What was stored: the photo without its metadata (faceauth.photos.metadata).
        assert served.status_code == 200 and served.content == without_metadata(image)
        assert served.headers["content-type"] == "image/jpeg" and "no-store" in served.headers["cache-control"]
        assert served.headers["x-content-type-options"] == "nosniff"  # never sniffed as HTML

        claims = link.rsplit("/", 1)[1].split(".")[0]
        forged = link.replace(claims, claims[:-2] + ("AA" if claims[-2:] != "AA" else "BB"))
        for bad in (forged, link + "x", link.rsplit("/", 1)[0] + "/nonsense"):
            r = api.get(bad)
            assert r.status_code == 404 and r.json()["error"]["code"] == "link_invalid", bad


def test_links_expire(make_api, people, photos):
    with make_api(image_link_seconds=10) as api:
        assert enrol(api, "acme", "emp_1", photos(people[0].enrol_photo)).status_code == 200
        links = api.app.state.container.images.links
        key = api.get("/v1/faces/get/emp_1", params={"tenant": "acme"}).json()["object_key"]
        url, _ = api.portal.call(links.link, key, -1, "http://testserver")  # already expired
        assert api.get(url).status_code == 404


def test_only_a_key_of_the_faces_tenant_gets_a_link(make_api, people, photos):
    with make_api() as api:
        assert enrol(api, "acme", "emp_1", photos(people[0].enrol_photo)).status_code == 200
        other = {"X-Api-Key": new_key(api, "rival")}
        assert api.get("/v1/faces/image-url/emp_1", params={"tenant": "acme"}, headers=other).status_code == 403
        own = {"X-Api-Key": new_key(api, "acme")}
        assert api.get("/v1/faces/image-url/emp_1", params={"tenant": "acme"}, headers=own).status_code == 200
        assert api.get("/v1/faces/image-url/nobody", params={"tenant": "acme"}).status_code == 404


def test_s3_links_are_presigned_by_the_store_and_expire(make_api, people, photos, weed):
    image = photos(people[0].enrol_photo)
    s3 = {
        "object_store": "s3",
        "minio_endpoint": weed.endpoint,
        "minio_access_key": weed.access_key,
        "minio_secret_key": weed.secret_key,
        "minio_bucket": f"links-{uuid.uuid4().hex[:12]}",
    }
    with make_api(image_link_seconds=10, **s3) as api:
        assert enrol(api, "acme", "emp_1", image).status_code == 200
        url = api.get("/v1/faces/image-url/emp_1", params={"tenant": "acme"}).json()["url"]
        assert url.startswith(f"http://{weed.endpoint}/") and "X-Amz-Signature=" in url
        assert httpx.get(url).content == without_metadata(image)
        assert httpx.get(url.replace("X-Amz-Signature=", "X-Amz-Signature=0")).status_code == 403
        short, _ = api.portal.call(api.app.state.container.images.links.link, url.split("?")[0].split("/", 4)[4], 1, "")
        time.sleep(2.5)
        assert httpx.get(short).status_code == 403


def test_without_stored_images_faces_work_and_no_image_exists(make_api, people, photos):
    with make_api(store_images=False) as api:
        r = enrol(api, "acme", "emp_1", photos(people[0].enrol_photo))
        assert r.status_code == 200 and r.json()["face"]["object_key"] == ""
        assert enrol(api, "acme", "emp_1", photos(people[0].probe_photo), op="upsert").status_code == 200
        r = api.post("/v1/faces/search", data={"tenant": "acme"}, files={"file": ("q", photos(people[0].probe_photo))})
        assert [m["id"] for m in r.json()["searchResult"]["matches"]] == ["emp_1"]
        keys = api.portal.call(api.app.state.container.objects.list, "acme/")
        assert keys == []
        assert len(api.portal.call(api.app.state.container.index.find, "acme", "emp_1")) == 1
        r = api.get("/v1/faces/image-url/emp_1", params={"tenant": "acme"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "image_not_stored"
        assert api.delete("/v1/faces/delete", params={"tenant": "acme", "id": "emp_1"}).status_code == 200
        assert api.portal.call(api.app.state.container.index.find, "acme", "emp_1") == []
