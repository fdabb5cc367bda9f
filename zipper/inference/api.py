"""Use a trained model from Python: `Speech2Text` (audio -> text) and `Text2Speech` (text -> units -> waveform).

    from zipper.inference.api import Speech2Text, Text2Speech
    asr = Speech2Text.from_pretrained("exp/zipper_xs_rope_train_paired_100pct")     # or a packed model.zip
    print(asr("hello.wav"), asr(["a.flac", (samples, 44100)]))
    tts = Text2Speech.from_pretrained("model.zip")
    units, waveform, sample_rate = tts("the cat sat on the mat")

Both are built from an experiment dir or a packed model (zipper.inference.packing) and decode exactly as
stage 10 does: the model is rebuilt by `load_fused` from its config.yaml, and `decode_rows` decodes batches of
utterances, longest first, with the experiment's search settings (stage 10's decode config, or the packed
one) that keyword arguments override.  Audio becomes units as stages 2-5 make them: resampled to 16 kHz with
stage 2's resampler, features from the k-means dir's own upstream (its provenance is checked against the
model's speech tokens and against the features the upstream makes here), nearest centroid, deduplicated as
the model was trained.  Stage 10 (zipper.bin.zipper_inference), `synthesize` and `transcribe` use these.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import os
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
import yaml

from zipper.data.audio import AudioError, read_any_audio, to_mono
from zipper.data.sequences import pad_batch, with_bos_eos
from zipper.inference.packing import CHECKPOINT, ModelFiles, open_model
from zipper.inference.search import SearchConfig
from zipper.tokens.token_list import BOS, EOS, NUM_SPECIAL, UNK, TokenList
from zipper.tokens.units import INVENTORY_KEYS, dedup
from zipper.utils.provenance import ProvenanceError, check_provenance

logger = logging.getLogger(__name__)
SAMPLE_RATE = 16000  # what the feature upstreams take
DEFAULT_SEARCH = {"text": {"method": "greedy", "max_len": 200},
                  "speech": {"method": "sample", "temperature": 0.8, "top_k": 50, "max_len": 800}}
Audio = Union[str, os.PathLike, np.ndarray, torch.Tensor, tuple]  # a file, samples (with a rate), (samples, rate)


class InputError(ValueError):
    """An input the model cannot take (empty, too long, unreadable): the message names it."""


# ------------------------------------------------------------------------------------------------ the model
def search_configs(decode_config: Any, overrides: dict[str, dict[str, Any]] | None = None
                   ) -> dict[str, SearchConfig]:
    """SearchConfig per output modality: DEFAULT_SEARCH < decode_config (dict or YAML file) < overrides."""
    if isinstance(decode_config, (str, os.PathLike)):
        with open(decode_config, encoding="utf-8") as f:
            decode_config = yaml.safe_load(f) or {}
    configs = {}
    for modality, default in DEFAULT_SEARCH.items():
        settings = {**default, **(decode_config or {}).get(modality, {}), **(overrides or {}).get(modality, {})}
        unknown = set(settings) - {f.name for f in dataclasses.fields(SearchConfig)}
        if unknown:
            raise ValueError(f"unknown search settings for {modality}: {sorted(unknown)}")
        configs[modality] = SearchConfig(**settings)
    return configs


def load_fused(exp_dir: str | os.PathLike, checkpoint: str = CHECKPOINT, device: str = "cpu",
               towers_in_tower_files: bool = False):
    """(model in eval mode, text tokenizer, training config) of a fusion experiment (its config.yaml).

    towers_in_tower_files: the checkpoint holds no tower weights (a packed Zipper): the towers keep those
    their own files gave them."""
    from zipper.tasks.fusion_task import build_model
    from zipper.train.trainer import load_model_state

    with open(Path(exp_dir) / "config.yaml", encoding="utf-8") as f:
        args = argparse.Namespace(**yaml.safe_load(f))
    model, tokenizer = build_model(args)
    path = Path(exp_dir) / checkpoint
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: has {exp_dir} finished training?")
    state = torch.load(path, map_location="cpu")
    if towers_in_tower_files:
        state = {**{k: v for k, v in model.state_dict().items() if k.startswith("towers.")}, **state}
    load_model_state(model, state)
    return model.to(device).eval(), tokenizer, args


def decode_batch(model, tokenizer, train_args, configs: dict[str, SearchConfig], speech: list[np.ndarray],
                 text: list[np.ndarray], device, task: str, chain: bool = False, step_mode: str = "dynamic"
                 ) -> dict[str, list[list[int]]]:
    """One batch: speech rows (speech-tower ids with <bos>/<eos>) and text rows (text ids with <bos>/<eos>)
    -> generated ids per output modality (text ids; units 0-based), nbest rows per input in a row."""
    from zipper.inference.decoders import allowed_tokens, decode_vocab_expansion, decode_zipper
    from zipper.models.zipper import Segment

    configs = with_usable_ctc(model, configs)
    constraints = {"text": text_constraint(tokenizer, configs["text"])} if configs["text"].lexicon else {}
    if train_args.model == "vocab_expansion":
        rows = [torch.from_numpy(r).to(device) for r in (speech if task == "asr" else text)]
        modality = "text" if task == "asr" else "speech"
        return {modality: decode_vocab_expansion(model, task, rows, configs[modality], constraints.get("text"))}
    speech_tokens, speech_lengths = pad_batch(speech, 0)  # (B, S), (B,)
    text_tokens, text_lengths = pad_batch(text, tokenizer.pad_id)  # (B, T), (B,)
    if task == "asr":
        inputs = [Segment("speech", speech_tokens.to(device), speech_lengths.to(device))]
        outputs = ["text", "speech"] if chain else ["text"]
    else:
        inputs = [Segment("text", text_tokens.to(device), text_lengths.to(device))]
        outputs = ["speech"]
    text_vocab = model.towers["text"].vocab_size
    speech_vocab = model.towers["speech"].vocab_size
    first_text = NUM_SPECIAL if type(tokenizer).__name__ == "TextTokenizer" else 0
    allowed = {"text": allowed_tokens(text_vocab, first_text, text_vocab, [tokenizer.eos_id], device),
               "speech": allowed_tokens(speech_vocab, NUM_SPECIAL, speech_vocab, [EOS], device)}
    hyps = decode_zipper(model, inputs, outputs, configs, allowed, {"text": tokenizer.bos_id, "speech": BOS},
                         {"text": tokenizer.eos_id, "speech": EOS}, step_mode=step_mode, constraints=constraints)
    if "speech" in hyps:
        hyps["speech"] = [[t - NUM_SPECIAL for t in h] for h in hyps["speech"]]
    return hyps


def with_usable_ctc(model, configs: dict[str, SearchConfig]) -> dict[str, SearchConfig]:
    """A decode config's text ctc_weight applies to models trained with a CTC head; one decode config serves
    every preset of a recipe (the study, the paper-faithful twin), so a model without one decodes by attention
    alone, with a warning, rather than failing."""
    text = configs["text"]
    if text.ctc_weight <= 0 or getattr(model, "ctc", None) is not None:
        return configs
    warn_once(f"decode config text ctc_weight {text.ctc_weight}: this {type(model).__name__} has no CTC head "
              f"(no ctc_weight in its preset); decoding by attention alone")
    return {**configs, "text": dataclasses.replace(text, ctc_weight=0.0)}


@functools.lru_cache(maxsize=None)
def warn_once(message: str) -> None:
    logger.warning(message)


def text_constraint(tokenizer, config: SearchConfig):
    """The text search's lexicon (config.lexicon) over the tokenizer's pieces."""
    from zipper.inference.lexicon import lexicon_constraint

    if type(tokenizer).__name__ != "TextTokenizer":
        raise ValueError(f"a lexicon ({config.lexicon}) needs the recipe's sentencepiece text tokenizer, "
                         f"not {type(tokenizer).__name__}")
    return lexicon_constraint(str(config.lexicon), tuple(tokenizer.token_list.tokens), tokenizer.eos_id, NUM_SPECIAL)


def decode_rows(model, tokenizer, train_args, configs: dict[str, SearchConfig], speech: list[np.ndarray],
                text: list[np.ndarray], device, task: str, batch_size: int, chain: bool = False,
                step_mode: str = "dynamic", progress: Optional[Callable[[int, int], None]] = None
                ) -> dict[str, list[list[list[int]]]]:
    """Decode every input (stage 10's batching: longest input first, `batch_size` at a time).

    speech[i], text[i]: the rows of input i (one of them is unused by `task`).  Returns, per output modality,
    per input in the given order, its nbest hypotheses.
    """
    inputs = speech if task == "asr" else text
    order = sorted(range(len(inputs)), key=lambda i: -len(inputs[i]))  # stable: ties keep the given order
    out: dict[str, list[list[list[int]]]] = {}
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        hyps = decode_batch(model, tokenizer, train_args, configs, [speech[i] for i in batch],
                            [text[i] for i in batch], device, task, chain, step_mode)
        for modality, rows in hyps.items():
            per_input = out.setdefault(modality, [[] for _ in inputs])
            nbest = len(rows) // len(batch)
            for n, i in enumerate(batch):
                per_input[i] = rows[n * nbest:(n + 1) * nbest]
        if progress is not None:
            progress(min(start + batch_size, len(order)), len(order))
    return out


@dataclasses.dataclass
class FusedModel:
    """A loaded fusion model and what decoding with it needs to know."""

    model: torch.nn.Module
    tokenizer: Any
    train_args: argparse.Namespace
    speech_provenance: dict[str, Any]  # of its speech token list (the unit inventory)
    decode_config: dict[str, Any]
    source: str
    device: str

    @classmethod
    def load(cls, files: ModelFiles, device: str = "cpu") -> "FusedModel":
        model, tokenizer, train_args = load_fused(files.fusion_dir, files.checkpoint, device,
                                                  files.towers_in_tower_files)
        speech = TokenList(train_args.speech_token_list).provenance
        lexicon = (files.decode_config.get("text") or {}).get("lexicon")
        if lexicon:  # read now: a packed model's files are gone once it is open (text_constraint keeps it)
            text_constraint(tokenizer, SearchConfig(lexicon=lexicon))
        return cls(model, tokenizer, train_args, speech, files.decode_config, files.source, device)

    def configs(self, decode_config: dict[str, Any] | None, task: str, search: dict[str, Any]
                ) -> dict[str, SearchConfig]:
        """The experiment's search settings, then `decode_config`, then `search` for the task's output."""
        output = "text" if task == "asr" else "speech"
        merged = {m: dict(self.decode_config.get(m, {}), **(decode_config or {}).get(m, {})) for m in DEFAULT_SEARCH}
        return search_configs(merged, {output: search})

    def speech_row(self, units: np.ndarray, what: str) -> np.ndarray:
        """Frame-rate units (N,) 0-based -> the speech tower's row <bos> u.. <eos> (deduplicated as trained)."""
        values = dedup(units)[0] if self.train_args.dedup else np.asarray(units)
        limit = int(self.train_args.max_speech_len)
        if len(values) + 2 > limit:
            raise InputError(f"{what} is too long for {self.source}: {len(values)} units, the model takes at most "
                             f"{limit - 2} (max_speech_len {limit}); split the audio into shorter pieces")
        return with_bos_eos((values + NUM_SPECIAL).astype(np.int64), BOS, EOS, limit)

    def text_row(self, text: str, what: str) -> np.ndarray:
        """Normalised text -> the text tower's row; characters the tokenizer does not know become <unk>."""
        ids = list(self.tokenizer.encode(text))
        if type(self.tokenizer).__name__ == "TextTokenizer" and UNK in ids:
            unknown = sorted({c for c in text if not c.isspace() and UNK in self.tokenizer.encode(c)})
            logger.warning("%s: characters the tokenizer does not know, read as <unk>: %s", what,
                           " ".join(repr(c) for c in unknown))
        limit = int(self.train_args.max_text_len)
        if len(ids) + 2 > limit:
            raise InputError(f"{what} is too long for {self.source}: {len(ids)} tokens, the model takes at most "
                             f"{limit - 2} (max_text_len {limit}); split the text")
        return with_bos_eos(np.asarray(ids, dtype=np.int64), self.tokenizer.bos_id, self.tokenizer.eos_id, limit)


# --------------------------------------------------------------------------------------------- audio -> units
class AudioToUnits:
    """Audio -> frame-rate units (T,) int32 with a k-means dir's own feature upstream (stages 2, 3 and 5)."""

    def __init__(self, kmeans_dir: str | os.PathLike, speech_provenance: dict[str, Any], device: str = "cpu",
                 upstream_ckpt: str | os.PathLike | None = None):
        """upstream_ckpt: where the upstream's `ckpt` (SSL weights) is now, if not where the k-means dir says."""
        from zipper.tokens.features import FeatureUpstream, feature_hash
        from zipper.tokens.kmeans import KMeansModel

        self.kmeans = KMeansModel(kmeans_dir)
        km = self.kmeans.provenance
        check_provenance(km, speech_provenance, INVENTORY_KEYS,
                         f"the k-means dir {kmeans_dir} vs the model's speech tokens")
        conf = dict(km.get("upstream_conf") or {})
        moved = upstream_ckpt is not None and "ckpt" in conf
        here = dict(conf, ckpt=str(upstream_ckpt)) if moved else conf
        self.upstream = FeatureUpstream(km["upstream"], km["layer"], here)
        made = self.upstream.provenance()
        if moved:  # the same weights at another path: the identity is that of the original path
            original = dict(made["upstream_conf"], ckpt=conf["ckpt"])
            made["feature_hash"] = feature_hash(dict(made, upstream_conf=original))
        expected = km.get("upstream_feature_hash", km["feature_hash"])  # under a unit encoder: its input
        if made["feature_hash"] != expected:
            raise ProvenanceError(f"the features {km['upstream']} (layer {km['layer']}) made here from the config in "
                                  f"{kmeans_dir} hash to {made['feature_hash']}, not to the {expected} its "
                                  "centroids were fitted on: the feature config does not match the model's units")
        self.device = device
        self.upstream.to(device)

    def __call__(self, samples: np.ndarray, what: str) -> np.ndarray:
        """(N,) float32 at 16 kHz -> (T,) int32 units."""
        if self.upstream.num_frames(len(samples)) < 1:
            raise InputError(f"{what} is too short for one feature frame ({len(samples) / SAMPLE_RATE:.3f} s)")
        feats = self.upstream.extract([torch.from_numpy(np.ascontiguousarray(samples)).to(self.device)])[0]  # (T, D)
        if feats.shape[0] == 0:
            raise InputError(f"{what} is too short for one feature frame ({len(samples) / SAMPLE_RATE:.3f} s)")
        return self.kmeans.from_upstream(feats.cpu().numpy())


def load_speech(item: Audio, sample_rate: Optional[int], what: str) -> np.ndarray:
    """A file, samples with `sample_rate`, or (samples, rate) -> (N,) float32 mono at 16 kHz."""
    from zipper.data.format_audio import resample

    if isinstance(item, (str, os.PathLike)):
        try:
            rate, samples = read_any_audio(item)
        except AudioError as e:
            raise InputError(str(e)) from e
    else:
        if isinstance(item, tuple):
            item, sample_rate = item
        if sample_rate is None:
            raise InputError(f"{what}: samples given without their sample rate")
        samples = item.detach().cpu().numpy() if isinstance(item, torch.Tensor) else np.asarray(item)
        try:
            samples = to_mono(samples, what)
        except AudioError as e:
            raise InputError(str(e)) from e
        rate = int(sample_rate)
    if rate != SAMPLE_RATE:
        samples = resample(samples, rate, SAMPLE_RATE)
    return samples


# ------------------------------------------------------------------------------------------------------ ASR
class Speech2Text:
    """`asr(audio) -> str`; `asr([audio, ...]) -> [str, ...]` decoded in batches (stage 10's decoding).

    audio: a file soundfile reads (any rate, mono or several channels), samples with `sample_rate=`, or a
    (samples, rate) pair."""

    def __init__(self, fused: FusedModel, units: AudioToUnits, configs: dict[str, SearchConfig], batch_size: int = 16):
        self.fused, self.units, self.configs, self.batch_size = fused, units, configs, batch_size

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str = "cpu", checkpoint: str = CHECKPOINT,
                        kmeans_dir: str | None = None, decode_config: dict[str, Any] | None = None,
                        batch_size: int = 16, **search: Any) -> "Speech2Text":
        """path: an experiment dir (exp/zipper_...) or a packed model.  Search settings: the experiment's
        (stage 10's, or the packed ones), then `decode_config` ({text: {...}, speech: {...}}), then `search`
        keywords for the text (method, beam_size, max_len, ...).  kmeans_dir: another place for its k-means."""
        with open_model(path, checkpoint, kmeans_dir=kmeans_dir, decode_config=decode_config or None) as files:
            fused = FusedModel.load(files, device)
            if files.kmeans_dir is None:
                raise FileNotFoundError(f"{path}: no k-means dir found for its speech units (exp/kmeans/"
                                        f"{fused.speech_provenance.get('kmeans_tag')}): pass kmeans_dir=")
            units = AudioToUnits(files.kmeans_dir, fused.speech_provenance, device, files.upstream_ckpt)
        return cls(fused, units, fused.configs(decode_config, "asr", search), batch_size)

    def units_of(self, audio: Audio, sample_rate: Optional[int] = None, what: str = "audio") -> np.ndarray:
        """(T,) int32 frame-rate units of one recording."""
        return self.units(load_speech(audio, sample_rate, what), what)

    def transcribe_units(self, units: Sequence[np.ndarray], names: Sequence[str] | None = None) -> list[str]:
        """Frame-rate unit sequences -> transcripts (what stage 10 does with a units.scp)."""
        names = list(names) if names is not None else [f"input {i}" for i in range(len(units))]
        rows = [self.fused.speech_row(u, n) for u, n in zip(units, names)]
        f = self.fused
        hyps = decode_rows(f.model, f.tokenizer, f.train_args, self.configs, rows, [np.zeros(0, np.int64)] * len(rows),
                           f.device, "asr", self.batch_size)
        return [f.tokenizer.decode(h[0]) for h in hyps["text"]]

    def __call__(self, audio: Audio | list[Audio], sample_rate: Optional[int] = None) -> str | list[str]:
        items = audio if isinstance(audio, list) else [audio]
        names = [str(a) if isinstance(a, (str, os.PathLike)) else f"audio {i}" for i, a in enumerate(items)]
        units = [self.units_of(a, sample_rate, n) for a, n in zip(items, names)]
        texts = self.transcribe_units(units, names)
        return texts if isinstance(audio, list) else texts[0]


# ------------------------------------------------------------------------------------------------------ TTS
class Speech(NamedTuple):
    units: np.ndarray  # (N,) int32 0-based, deduplicated when the model was trained so
    waveform: Optional[np.ndarray]  # (T,) float32 in [-1, 1]; None without a vocoder
    sample_rate: Optional[int]


class Text2Speech:
    """`tts(text) -> Speech(units, waveform, sample_rate)`; `tts([text, ...])` -> a list, decoded in batches."""

    def __init__(self, fused: FusedModel, vocoder, configs: dict[str, SearchConfig], batch_size: int = 16,
                 speaker: Optional[str] = None):
        self.fused, self.vocoder, self.configs = fused, vocoder, configs
        self.batch_size, self.speaker = batch_size, speaker
        if vocoder is not None:
            vocoder.speaker_index(speaker)  # an unknown voice fails here

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str = "cpu", checkpoint: str = CHECKPOINT,
                        vocoder_dir: str | None = None, vocoder_checkpoint: str = "vocoder.pth",
                        decode_config: dict[str, Any] | None = None, speaker: Optional[str] = None,
                        batch_size: int = 16, **search: Any) -> "Text2Speech":
        """path: an experiment dir or a packed model; `search`: speech search settings (temperature, top_k,
        max_len, seed, ...) over the experiment's; vocoder_dir: a vocoder (default: the packed one, or the one
        exp/vocoder_* trained on the model's units); without any, `waveform` is None."""
        from zipper.vocoder.inference import Vocoder

        with open_model(path, checkpoint, vocoder_dir=vocoder_dir, vocoder_checkpoint=vocoder_checkpoint,
                        decode_config=decode_config or None) as files:
            fused = FusedModel.load(files, device)
            vocoder = None
            if files.vocoder_dir is not None:
                vocoder = Vocoder.from_exp(files.vocoder_dir, files.vocoder_checkpoint, device)
                vocoder.check_units(fused.speech_provenance, f"the speech tokens of {path}")
            else:
                logger.warning("%s: no vocoder (pass vocoder_dir=): units only, no waveform", path)
        return cls(fused, vocoder, fused.configs(decode_config, "tts", search), batch_size, speaker)

    def text_row(self, text: str, what: str) -> np.ndarray:
        from zipper.scoring.wer import Normalizer

        normalized = Normalizer()(text)
        if not normalized:
            raise InputError(f"{what}: nothing to say: {text!r} is empty after normalisation (lower case, "
                             "punctuation removed)")
        return self.fused.text_row(normalized, what)

    def units_of_rows(self, rows: list[np.ndarray]) -> list[list[list[int]]]:
        """Text rows -> nbest unit sequences per row (stage 10's TTS decoding)."""
        f = self.fused
        speech = [np.asarray([BOS, EOS], dtype=np.int64)] * len(rows)  # no speech input in TTS
        return decode_rows(f.model, f.tokenizer, f.train_args, self.configs, speech, rows, f.device, "tts",
                           self.batch_size)["speech"]

    def vocode(self, units: np.ndarray, what: str) -> Speech:
        if self.vocoder is None:
            return Speech(units, None, None)
        if units.size == 0:
            raise InputError(f"{what}: the model generated no units")
        samples = self.vocoder(units, bool(self.fused.train_args.dedup), self.speaker)
        return Speech(units, samples, self.vocoder.fs)

    def __call__(self, text: str | list[str]) -> Speech | list[Speech]:
        texts = text if isinstance(text, list) else [text]
        names = [f"text {i + 1} ({t[:30]!r})" for i, t in enumerate(texts)]
        rows = [self.text_row(t, n) for t, n in zip(texts, names)]
        hyps = self.units_of_rows(rows)
        out = [self.vocode(np.asarray(h[0], dtype=np.int32), n) for h, n in zip(hyps, names)]
        return out if isinstance(text, list) else out[0]
