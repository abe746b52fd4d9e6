"""Reading policy files from disk: syntax errors, duplicates, empty and missing files."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway_plugin.policy import PolicyError, load_policy


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_broken_json_reports_line_and_column(tmp_path: Path) -> None:
    path = write(
        tmp_path, "p.json", '{"version": "1",\n "tools": {\n  "a": {"action": "allow",}\n}}'
    )

    with pytest.raises(PolicyError) as caught:
        load_policy(path)

    assert caught.value.source == str(path)
    assert caught.value.location == "line 3, column 27"
    assert caught.value.reason.startswith("invalid JSON: ")


def test_broken_yaml_reports_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", "version: '1'\ntools:\n  a: [unclosed\n")

    with pytest.raises(PolicyError) as caught:
        load_policy(path)

    assert caught.value.location.startswith("line 4, column")
    assert caught.value.reason.startswith("invalid YAML: ")


@pytest.mark.parametrize(
    ("name", "text", "location"),
    [
        ("p.json", '{"version": "1", "tools": {"a": {}, "a": {"action": "allow"}}}', "$.tools.a"),
        ("p.yaml", "version: '1'\ntools:\n  a: {}\n  a: {action: allow}\n", "line 4, column 3"),
    ],
)
def test_duplicate_keys_are_refused_rather_than_silently_overwritten(
    tmp_path: Path, name: str, text: str, location: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(write(tmp_path, name, text))

    assert caught.value.location == location
    assert "duplicate key 'a'" in caught.value.reason


def test_an_empty_yaml_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"\$: the policy is empty"):
        load_policy(write(tmp_path, "p.yaml", "# nothing yet\n"))


def test_a_missing_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(tmp_path / "absent.json")

    assert caught.value.location == "$"
    assert "cannot read the file" in caught.value.reason


def test_yaml_errors_in_values_point_at_the_json_path(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", "version: '1'\ntools:\n  t:\n    quorum: two\n")

    with pytest.raises(PolicyError) as caught:
        load_policy(path)

    assert str(caught.value) == f"{path}: $.tools.t.quorum: expected an integer, got string 'two'"


def test_policy_error_survives_pickling() -> None:
    import pickle

    error = pickle.loads(pickle.dumps(PolicyError("f.json", "$.x", "bad")))

    assert (error.source, error.location, error.reason) == ("f.json", "$.x", "bad")
