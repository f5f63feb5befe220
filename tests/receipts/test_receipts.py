"""Signed decision receipts: made on verify, search and liveness when asked, verified offline with the CLI."""

from __future__ import annotations

import base64
import hashlib
import json

from faceauth.cli import main
from tests.apitest import enrol
from tests.liveness.sequences import answerable_session, send_frames


def _flip_one_byte(token: str, index: int) -> str:
    """The receipt with one character of its payload changed (still valid base64url)."""
    chars = list(token)
    chars[index] = "A" if chars[index] != "A" else "B"
    return "".join(chars)


def _claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_a_verify_receipt_verifies_offline_and_fails_after_one_byte_changes(api, people, photos, tmp_path, capsys):
    assert enrol(api, "acme", "emp_1", photos(people[0].enrol_photo)).status_code == 200
    probe = photos(people[0].probe_photo)
    data = {"tenant": "acme", "reference_id": "emp_1", "receipt": "true"}
    r = api.post("/v1/faces/verify", data=data, files=[("probes", ("p.jpg", probe))])
    assert r.status_code == 200, r.text
    body = r.json()
    receipt = body["receipt"]
    assert receipt.count(".") == 2

    headers = {k: v for k, v in api.headers.items() if k.lower() != "x-api-key"}
    jwks = api.get("/.well-known/jwks.json", headers=headers)  # published without a key
    assert jwks.status_code == 200 and jwks.json()["keys"][0]["kty"] == "OKP" and "d" not in jwks.json()["keys"][0]
    (tmp_path / "jwks.json").write_text(jwks.text)
    (tmp_path / "receipt.jws").write_text(receipt)

    assert main(["receipts", "verify", str(tmp_path / "receipt.jws"), "--jwks", str(tmp_path / "jwks.json")]) == 0
    shown = capsys.readouterr().out
    claims = json.loads(shown[shown.index("{") :])
    assert claims["tenant"] == "acme" and claims["decision"] == "verify" and claims["matched"] is True
    assert claims["reference"] == {"type": "face", "id": "emp_1"} and claims["request_id"] == body["requestId"]
    assert claims["score"] == body["probes"][0]["score"] and claims["threshold"] == body["threshold"]
    assert claims["model_id"] == body["model_id"] and claims["probe_sha256"] == [hashlib.sha256(probe).hexdigest()]
    spoof = body["probes"][0]["imageQualityAssessment"]["spoof"]["probability"]
    assert claims["antispoof"] == {"spoof_probability": [spoof]} and isinstance(claims["iat"], int)

    middle = receipt.index(".") + 10  # inside the payload
    for changed in (_flip_one_byte(receipt, middle), _flip_one_byte(receipt, len(receipt) - 5)):
        (tmp_path / "bad.jws").write_text(changed)
        assert main(["receipts", "verify", str(tmp_path / "bad.jws"), "--jwks", str(tmp_path / "jwks.json")]) == 1
    assert "INVALID" in capsys.readouterr().err


def test_no_receipt_unless_asked_and_search_receipts_name_the_match(api, people, photos):
    assert enrol(api, "acme", "emp_1", photos(people[0].enrol_photo)).status_code == 200
    probe = photos(people[0].probe_photo)
    r = api.post("/v1/faces/search", data={"tenant": "acme", "receipt": "true"}, files={"file": ("q.jpg", probe)})
    claims = _claims(r.json()["receipt"])
    assert claims["decision"] == "search" and claims["face_id"] == "emp_1" and claims["matched"] is True
    assert abs(claims["score"] - r.json()["searchResult"]["matches"][0]["score"]) < 1e-4
    assert claims["probe_sha256"] == [hashlib.sha256(probe).hexdigest()]
    plain = api.post("/v1/faces/search", data={"tenant": "acme"}, files={"file": ("q.jpg", probe)}).json()
    assert plain["receipt"] is None


def test_a_liveness_receipt_holds_the_decision_and_each_frame_digest(api, shots):
    session, sequence = answerable_session(api, shots)
    body = send_frames(api, session, [s.image for s in sequence], receipt="true").json()
    claims = _claims(body["receipt"])
    assert claims["decision"] == "liveness" and claims["live"] is True and claims["session_id"] == session["session_id"]
    assert claims["probe_sha256"] == [hashlib.sha256(s.image).hexdigest() for s in sequence]
    assert len(claims["antispoof"]["spoof_probability"]) == len(sequence) and claims["reasons"] == []


def test_the_key_survives_a_restart_and_rotation_keeps_old_receipts_valid(make_api, tmp_path, people, photos):
    from faceauth.receipts.signing import verify_receipt

    data = tmp_path / "data"
    with make_api(data) as api:
        first = api.portal.call(api.app.state.container.receipts.sign, {"n": 1})
        kid = api.get("/.well-known/jwks.json").json()["keys"][0]["kid"]
    with make_api(data) as api:  # a new process on the same stores signs with the same key
        signer = api.app.state.container.receipts
        again = api.portal.call(signer.sign, {"n": 2})
        assert [k["kid"] for k in api.get("/.well-known/jwks.json").json()["keys"]] == [kid]
        api.portal.call(signer.rotate)
        rotated = api.portal.call(signer.sign, {"n": 3})
        jwks = api.get("/.well-known/jwks.json").json()
    assert len(jwks["keys"]) == 2
    header = json.loads(base64.urlsafe_b64decode(rotated.split(".")[0] + "=="))
    assert header["kid"] != kid and header["alg"] == "EdDSA"
    for token, n in ((first, 1), (again, 2), (rotated, 3)):
        assert verify_receipt(token, jwks)[1] == {"n": n}
    # Private halves are stored, never published.
    assert all("d" not in key for key in jwks["keys"])
