"""The base model's key: what every stage's key starts from, kept when the model moved with its tree."""

import shutil

from robust_sft.core.hashing import base_model_key, movable_tail, stable_hash


def model_dir(path, weights: bytes = b"w" * 10):
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(weights)
    return path


def test_a_new_run_keys_the_models_own_path(tmp_path):
    model = str(model_dir(tmp_path / "root" / "m"))
    key, keyed = base_model_key(model, None, [tmp_path / "root"])
    assert keyed == model
    assert key == base_model_key(model, {}, [])[0]
    assert key != base_model_key(str(model_dir(tmp_path / "elsewhere" / "m")), None, [])[0]  # the path counts


def test_a_directory_moved_with_its_root_keeps_the_runs_key_through_every_move(tmp_path):
    first = model_dir(tmp_path / "clone1" / "shipped" / "seed3")
    key, keyed = base_model_key(str(first), None, [tmp_path / "clone1"])
    second = tmp_path / "clone2" / "shipped" / "seed3"
    shutil.copytree(first, second)
    recorded = {"path": str(first), "key": key}  # a plan.json written before keyed_path existed
    assert base_model_key(str(second), recorded, [tmp_path / "clone2"]) == (key, str(first))
    # the plan written in clone2 records where the key was made: a third clone still finds it
    third = tmp_path / "clone3" / "shipped" / "seed3"
    shutil.copytree(second, third)
    recorded = {"path": str(second), "key": key, "keyed_path": str(first)}
    assert base_model_key(str(third), recorded, [tmp_path / "clone3"]) == (key, str(first))


def test_another_model_never_takes_the_runs_key(tmp_path):
    first = model_dir(tmp_path / "clone1" / "shipped" / "seed3")
    key, _ = base_model_key(str(first), None, [tmp_path / "clone1"])
    recorded = {"path": str(first), "key": key}
    root = tmp_path / "clone2"
    # another world in the moved tree: same files and sizes, another place under the root
    other_world = model_dir(root / "shipped" / "seed1")
    assert base_model_key(str(other_world), recorded, [root])[0] != key
    # the same place, other files (sizes differ)
    changed = model_dir(root / "shipped" / "seed3", weights=b"w" * 11)
    assert base_model_key(str(changed), recorded, [root])[0] != key
    # the same files outside every root: a directory's fingerprint alone does not say it is the same model
    outside = tmp_path / "copies" / "shipped" / "seed3"
    shutil.copytree(first, outside)
    new_key, keyed = base_model_key(str(outside), recorded, [root])
    assert (keyed, new_key != key) == (str(outside), True)


def test_a_single_file_model_keeps_the_key_anywhere_while_its_bytes_are_the_same(tmp_path):
    first = tmp_path / "a" / "model.gguf"
    first.parent.mkdir()
    first.write_bytes(b"gguf bytes")
    key, _ = base_model_key(str(first), None, [])
    recorded = {"path": str(first), "key": key}
    moved = tmp_path / "b" / "renamed.gguf"
    moved.parent.mkdir()
    shutil.copy(first, moved)
    assert base_model_key(str(moved), recorded, []) == (key, str(first))
    moved.write_bytes(b"other bytes")
    assert base_model_key(str(moved), recorded, [])[0] != key


def test_a_hub_name_is_keyed_by_name():
    key, keyed = base_model_key("org/model", {"path": "org/other", "key": "k"}, [])
    assert (key, keyed) == (stable_hash(["org/model", "org/model"]), "org/model")


def test_movable_tail(tmp_path):
    inner = tmp_path / "pkg" / "organism" / "seed0"
    inner.mkdir(parents=True)
    assert movable_tail(inner, [tmp_path / "cache", tmp_path / "pkg"]) == "organism/seed0"
    assert movable_tail(inner, [tmp_path / "cache"]) is None
