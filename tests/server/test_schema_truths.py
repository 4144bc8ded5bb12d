"""What schemathesis found where the server, not the schema, was wrong; each pinned down
here by itself, and the document's own promises checked directly."""

import uuid

from tests.conftest import USERS


def test_405_allow_names_every_method_of_the_path(pen):
    with pen.as_user("cat") as c:
        r = c.request("OPTIONS", "/messages/some-id")
    assert r.status_code == 405
    assert r.json()["error"]["code"] == "invalid_request"
    assert set(r.headers["Allow"].split(", ")) >= {"GET", "PATCH", "DELETE"}


def test_deleted_message_has_no_notifications_and_its_key_is_not_replayed(pen):
    key = uuid.uuid4().hex
    body = {"to": [{"email": USERS["bob"][0]}], "subject": "to delete"}
    with pen.as_user("cat") as c:
        sent = c.post("/messages", json=body, headers={"Idempotency-Key": key}).json()
        assert c.get(f"/messages/{sent['id']}/notifications").status_code == 200
        assert c.delete(f"/messages/{sent['id']}").status_code == 204
        for r in (c.get(f"/messages/{sent['id']}/notifications"),
                  c.post(f"/messages/{sent['id']}/notifications/resend", json={})):
            assert r.status_code == 404, r.text
        again = c.post("/messages", json=body, headers={"Idempotency-Key": key})
    assert again.status_code == 409, again.text
    assert again.json()["error"]["code"] == "conflict"


def test_document_declares_errors_with_one_body(pen):
    with pen.client() as c:
        doc = c.get("/openapi.json").json()
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert "503" in op["responses"], (method, path)
            for status, response in op["responses"].items():
                if status[0] in "45":
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (method, path, status)
            if op.get("security"):
                assert "401" in op["responses"], (method, path)
    send = doc["paths"]["/api/v1/messages"]["post"]
    assert {"400", "403", "409", "422"} <= set(send["responses"])
    key = next(p for p in send["parameters"] if p["name"] == "idempotency-key")
    assert key["required"] is True and key["schema"]["maxLength"] == 255
    assert doc["paths"]["/api/v1/auth/login"]["post"]["responses"]["429"]["headers"]["Retry-After"]["required"]


def test_request_bodies_take_json_types_as_stated(pen, send):
    sent = send("cat", ["bob"])
    with pen.as_user("cat") as c:
        r = c.patch(f"/messages/{sent['id']}", json={"unread": 0})
    assert r.status_code == 422, r.text
    assert "unread" in r.json()["error"]["fields"]
