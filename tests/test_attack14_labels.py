def test_verify_calls_a_resigned_deleted_setting_invalid(
    seller: SigningKey, tmp_path: Path
) -> None:
    """MIG left enabled: the seller deletes the item, judges and signs again: "ready" no more."""
    changed = readiness_edit("mig_mode", value="enabled", status="not_default")
    items = tuple(i for i in changed.readiness or () if i.key != "mig_mode")
    deleted = judged(replace(changed, readiness=items))
    data = resigned_data(json.loads(record_to_json(deleted)), seller)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    code, out = verify(str(path))
    assert code == 1, out
    assert out.startswith(
        "INVALID (SIMULATED CARD): evidence: readiness: readiness item mig_mode listed 0 times"
    ), out
