"""tools/settings_doc.py: docs/operations.md's settings table is the settings module's."""

from tools import settings_doc


def test_the_operations_doc_has_the_generated_settings_table():
    text = settings_doc.DOC.read_text()
    assert settings_doc.with_table(text) == text, "run `make docs` to regenerate it"


def test_every_setting_has_a_description():
    assert settings_doc.undocumented() == []


def test_a_comment_describes_the_fields_below_it_up_to_a_blank_line():
    comments = settings_doc.field_comments()
    assert comments["QUEUE_MAX_BACKGROUND"] == settings_doc.AS_ABOVE
    assert comments["QUEUE_MAX_INTERACTIVE"].startswith("Backpressure:")
    assert "LOCK_MAX_RETRIES (field `LOCK_MAX_ATTEMPTS`)" in settings_doc.table()
