"""POST /api/stories: bearer token, size limit, per-record errors, no CSRF token needed."""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import select

from newsletter.stories.models import Story
from tests.stories.builders import article, document, story

TOKEN = "stories-api-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def app_settings():
    return {"STORIES_API_TOKEN": TOKEN}


def stories_in(session) -> list[str]:
    return list(session.scalars(select(Story.external_id).order_by(Story.external_id)))


class TestAuthentication:
    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"Authorization": "Bearer wrong-token"},
            {"Authorization": f"Bearer {TOKEN}x"},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": TOKEN},
            {"Authorization": "Bearer "},
        ],
    )
    def test_without_the_right_token_nothing_is_imported(self, client, session, headers):
        response = client.post("/api/stories", json=document(story()), headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "Bearer" in response.get_json()["error"]
        assert stories_in(session) == []

    @pytest.mark.parametrize("app_settings", [{"STORIES_API_TOKEN": None}])
    def test_with_no_token_configured_everyone_is_refused(self, client, session):
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer None"}):
            response = client.post("/api/stories", json=document(story()), headers=headers)
            assert response.status_code == 401
        assert stories_in(session) == []


class TestSizeLimit:
    @pytest.mark.parametrize(
        "app_settings", [{"STORIES_API_TOKEN": TOKEN, "STORIES_API_MAX_BYTES": 300}]
    )
    def test_a_body_over_the_limit_is_refused(self, client, session):
        body = json.dumps(document(story()))
        assert len(body) > 300
        response = client.post(
            "/api/stories", data=body, content_type="application/json", headers=AUTH
        )
        assert response.status_code == 413
        assert "300 bytes" in response.get_json()["error"]
        assert stories_in(session) == []

    @pytest.mark.parametrize(
        "app_settings", [{"STORIES_API_TOKEN": TOKEN, "STORIES_API_MAX_BYTES": 300}]
    )
    def test_a_streamed_body_without_a_length_is_cut_off_at_the_limit(self, client, session):
        body = json.dumps(document(story())).encode()
        response = client.post(
            "/api/stories",
            input_stream=io.BytesIO(body),
            content_type="application/json",
            headers=AUTH,
            environ_overrides={"wsgi.input_terminated": True},
        )
        assert response.status_code == 413
        assert stories_in(session) == []

    def test_the_default_limit_is_2_mib_above_the_app_wide_1_mib(self, client, session):
        body = json.dumps(document(story("s-1"))) + " " * (1536 * 1024)  # JSON allows padding
        response = client.post(
            "/api/stories", data=body, content_type="application/json", headers=AUTH
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        assert stories_in(session) == ["s-1"]


class TestImport:
    def test_good_records_are_imported_without_a_csrf_token(self, app, client, session):
        assert app.config.get("WTF_CSRF_ENABLED", True)  # CSRF is on: the API is exempt
        response = client.post(
            "/api/stories", json=document(story("s-1"), story("s-2")), headers=AUTH
        )
        assert response.status_code == 200
        body = response.get_json()
        assert (body["created"], body["updated"], body["unchanged"], body["rejected"]) == (
            2,
            0,
            0,
            0,
        )
        assert body["outlets"] == {"created": 3, "updated": 0, "unchanged": 0}
        assert body["errors"] == []
        assert stories_in(session) == ["s-1", "s-2"]

        again = document(story("s-1", title="Updated title"), story("s-2"))
        body = client.post("/api/stories", json=again, headers=AUTH).get_json()
        assert (body["created"], body["updated"], body["unchanged"]) == (0, 1, 1)

    def test_rejected_records_give_400_with_errors_and_the_good_ones_are_kept(
        self, client, session
    ):
        bad = story("s-2", articles=[article(1, "middle", published_at="2025-05-14")])
        response = client.post("/api/stories", json=document(story("s-1"), bad), headers=AUTH)
        assert response.status_code == 400
        body = response.get_json()
        assert (body["created"], body["rejected"]) == (1, 1)
        assert body["errors"] == [
            {
                "record": "stories[1]",
                "index": 1,
                "id": "s-2",
                "path": "stories[1].articles[0].published_at",
                "reason": "must be an ISO 8601 date and time with a time zone, "
                "e.g. 2025-05-15T08:30:00Z",
            }
        ]
        assert stories_in(session) == ["s-1"]

    @pytest.mark.parametrize(
        ("body", "reason"),
        [
            (b'{"stories": [', "Not valid JSON"),
            (b"", "Not valid JSON"),
            (b'{"stories": "caf\xe9"}', "not UTF-8"),
            (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
        ],
    )
    def test_a_body_that_is_not_json_gives_400(self, client, session, body, reason):
        response = client.post(
            "/api/stories", data=body, content_type="application/json", headers=AUTH
        )
        assert response.status_code == 400
        [error] = response.get_json()["errors"]
        assert (error["index"], error["path"]) == (None, "")
        assert reason in error["reason"]

    def test_a_document_of_the_wrong_shape_gives_400(self, client, session):
        response = client.post("/api/stories", json={"story": [story()]}, headers=AUTH)
        assert response.status_code == 400
        body = response.get_json()
        assert [(e["path"], e["reason"]) for e in body["errors"]] == [
            ("story", "is not a known field")
        ]
        assert body["created"] == 0
        assert stories_in(session) == []

    def test_only_post_is_allowed(self, client):
        response = client.get("/api/stories", headers=AUTH)
        assert response.status_code == 405
        assert response.is_json
