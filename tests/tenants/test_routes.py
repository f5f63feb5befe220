"""Tenant purge (right to erasure): every vector and every image of the tenant goes, and is counted."""

from __future__ import annotations

from tests.apitest import enrol, match_ids, search, stored_keys


def test_purge_leaves_nothing_of_the_tenant_in_either_store(api, people, photos):
    for i, person in enumerate(people[:3]):
        assert enrol(api, "doomed", f"emp_{i}", photos(person.enrol_photo)).status_code == 200
    assert enrol(api, "doomed", "emp_0", photos(people[0].probe_photo), op="upsert").status_code == 200
    assert enrol(api, "kept", "emp_0", photos(people[0].enrol_photo)).status_code == 200

    r = api.delete("/v1/tenants/doomed")
    assert r.status_code == 200, r.text
    assert r.json()["deleted"] == {"faces": 3, "vectors": 3, "images": 3}
    assert stored_keys(api, "doomed/") == []
    index = api.app.state.container.index
    assert api.portal.call(lambda: index.list_subjects("doomed", after=None, limit=10)) == []
    assert match_ids(search(api, "doomed", photos(people[0].probe_photo), threshold=0.0)) == []
    # The other tenant is untouched.
    assert match_ids(search(api, "kept", photos(people[0].probe_photo))) == ["emp_0"]
    assert len(stored_keys(api, "kept/")) == 1

    again = api.delete("/v1/tenants/doomed")
    assert again.status_code == 200 and again.json()["deleted"] == {"faces": 0, "vectors": 0, "images": 0}


def test_purge_validates_the_tenant_name(api):
    r = api.delete("/v1/tenants/bad%20name")
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
