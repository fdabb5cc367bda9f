"""The unit-level TTS judge: a CTC character recogniser that reads semantic units, trained on gold units.

The paper judges TTS by vocoding the generated tokens and running an ASR system (USM) on the audio.  A judge
that reads the units themselves measures the TTS model alone, without a vocoder between it and the score, and
needs nothing but the recipe's own data: it is trained on the gold units of the aligned training set and
applied unchanged to generated units.  Its WER on the gold units of the test set is the oracle row (the
ceiling any TTS model can reach under this judge).

The encoder and the CTC layer are ESPnet's (`TransformerEncoder` with an embedding input layer and convolutional
feed-forward blocks, `CTC`); characters after the scoring normalisation are the output symbols, so the judge's
output is directly comparable with the references it is scored against.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

import kaldiio
import numpy as np
import torch
import yaml
from torch import nn

from zipper.data.kaldi_dir import read_kv
from zipper.scoring.wer import Normalizer
from zipper.tokens.units import INVENTORY_KEYS, UnitSet, dedup
from zipper.utils.atomic import atomic_write_text
from zipper.utils.cli import yaml_value

BLANK = "<blank>"
SPACE = "<space>"


class CharVocabulary:
    """CTC output symbols: <blank> at 0, then the characters of the normalised training transcripts."""

    def __init__(self, symbols: Sequence[str]):
        if not symbols or symbols[0] != BLANK:
            raise ValueError(f"a character vocabulary starts with {BLANK}")
        self.symbols = list(symbols)
        self.index = {s: i for i, s in enumerate(self.symbols)}

    @classmethod
    def from_texts(cls, texts: Sequence[str]) -> "CharVocabulary":
        chars = sorted({SPACE if c == " " else c for t in texts for c in t})
        return cls([BLANK, *chars])

    @classmethod
    def load(cls, path: str | Path) -> "CharVocabulary":
        return cls(Path(path).read_text(encoding="utf-8").split("\n")[:-1])

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, "".join(f"{s}\n" for s in self.symbols))

    def __len__(self) -> int:
        return len(self.symbols)

    def encode(self, text: str) -> tuple[list[int], int]:
        """Ids of a normalised text, and how many characters were not in the vocabulary (dropped)."""
        ids = [self.index.get(SPACE if c == " " else c, -1) for c in text]
        return [i for i in ids if i >= 0], sum(i < 0 for i in ids)

    def decode(self, ids: Sequence[int]) -> str:
        chars = (self.symbols[i] for i in ids if i != 0)
        return " ".join("".join(" " if c == SPACE else c for c in chars).split())


@dataclasses.dataclass
class JudgeConfig:
    n_units: int  # codebook size K (units are 0 .. K-1); with input_dim > 0, unused
    n_chars: int  # CTC symbols including <blank>
    input_dim: int = 0  # 0: reads units (an embedding); > 0: reads continuous frames of this dim (a linear layer)
    d_model: int = 192
    n_heads: int = 4
    d_ff: int = 512
    n_layers: int = 4
    conv_kernel: int = 3  # feed-forward blocks start with a 1-D convolution: units are local evidence
    dropout: float = 0.1
    time_masks: int = 0  # training only: spans of units read as one extra "masked" unit (SpecAugment's time masks)
    time_mask_ratio: float = 0.05  # a span's widest, as a share of the utterance's units


class UnitCTCJudge(nn.Module):
    """units (B, T), or frames (B, T, input_dim) -> character log-probabilities (B, T, C); trained with CTC.

    With continuous input it is the unit encoder's model (zipper/tokens/unit_encoder.py)."""

    def __init__(self, config: JudgeConfig):
        super().__init__()
        with contextlib.redirect_stdout(io.StringIO()):  # espnet prints a note when flash-attn is absent
            from espnet2.asr.ctc import CTC
            from espnet2.asr.encoder.transformer_encoder import TransformerEncoder

        self.config = config
        self.masking = bool(config.time_masks) and not config.input_dim
        units_in = config.n_units + 1 if self.masking else config.n_units  # id n_units: a masked unit
        self.encoder = TransformerEncoder(
            input_size=config.input_dim or units_in, output_size=config.d_model, attention_heads=config.n_heads,
            linear_units=config.d_ff, num_blocks=config.n_layers, dropout_rate=config.dropout,
            positional_dropout_rate=config.dropout, input_layer="linear" if config.input_dim else "embed",
            positionwise_layer_type="conv1d-linear",
            positionwise_conv_kernel_size=config.conv_kernel, use_flash_attn=False)
        self.ctc = CTC(odim=config.n_chars, encoder_output_size=config.d_model)

    def encode(self, units: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, hidden_lengths, _ = self.encoder(units, lengths)  # (B, T, D), (B,)
        return hidden, hidden_lengths

    def mask_spans(self, units: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """`time_masks` spans per row, each up to `time_mask_ratio` of its length, set to the mask id: the units'
        SpecAugment, against a judge that learns the 3,500 training utterances by heart (docs/learning.md J7)."""
        b, t = units.shape
        widest = (lengths.float() * self.config.time_mask_ratio).ceil().long().clamp(min=1)  # (B,)
        masked = torch.zeros(b, t, dtype=torch.bool, device=units.device)
        steps = torch.arange(t, device=units.device)[None, :]  # (1, T)
        for _ in range(self.config.time_masks):
            width = (torch.rand(b, device=units.device) * (widest + 1)).long()  # 0 .. widest
            start = (torch.rand(b, device=units.device) * (lengths - width + 1).clamp(min=1)).long()
            masked |= (steps >= start[:, None]) & (steps < (start + width)[:, None])
        return units.masked_fill(masked, self.config.n_units)

    def forward(self, units: torch.Tensor, unit_lengths: torch.Tensor, chars: torch.Tensor,
                char_lengths: torch.Tensor, **_) -> tuple[torch.Tensor, dict, torch.Tensor]:
        """CTC loss per target character, so that exp(loss) is a per-character perplexity (the trainer's
        `(loss, stats, weight)` contract; weight = characters)."""
        if self.training and self.masking:
            units = self.mask_spans(units, unit_lengths)
        hidden, hidden_lengths = self.encode(units, unit_lengths)
        total = self.ctc(hidden, hidden_lengths, chars, char_lengths) * units.shape[0]  # espnet divides by B
        count = char_lengths.sum()
        loss = total / count.clamp(min=1)
        return loss, {"loss": loss.detach()}, count.detach()

    @torch.no_grad()
    def transcribe(self, units: torch.Tensor, lengths: torch.Tensor,
                   lexicon: Optional["LexiconCTCDecoder"] = None) -> list[list[int]]:
        """Greedy CTC: best symbol per frame, repeats merged, blanks removed (ids, no <blank>); with a lexicon,
        the best spelling of its words instead (a beam search over the CTC posteriors)."""
        hidden, hidden_lengths = self.encode(units, lengths)
        if lexicon is not None:
            return lexicon(self.ctc.log_softmax(hidden), hidden_lengths)
        best = self.ctc.argmax(hidden)  # (B, T)
        out = []
        for row, n in zip(best.tolist(), hidden_lengths.tolist()):
            ids, previous = [], -1
            for i in row[:n]:
                if i != previous and i != 0:
                    ids.append(i)
                previous = i
            out.append(ids)
        return out


class LexiconCTCDecoder:
    """CTC posteriors -> character ids that spell only the words of a word list.

    torchaudio's flashlight lexicon decoder (a prefix-tree beam search, no language model): a judge that reads
    "cat" as "cap" or "kat" is held to real words, as a recogniser with a pronunciation lexicon is.  The words
    come from the recipe's unpaired text (its closed vocabulary), never from the transcripts being judged.
    """

    def __init__(self, vocab: CharVocabulary, words: Sequence[str], beam_size: int = 200):
        from torchaudio.models.decoder import ctc_decoder

        self.spellable = spellable = sorted({w for w in words if w and all(c in vocab.index for c in w)})
        if not spellable:
            raise ValueError("no word of the lexicon can be spelt with the judge's characters")
        self.vocab = vocab
        self._dir = tempfile.TemporaryDirectory()
        path = Path(self._dir.name) / "lexicon.txt"
        path.write_text("".join(f"{w}\t{' '.join(w)} {SPACE}\n" for w in spellable), encoding="utf-8")
        self.decoder = ctc_decoder(lexicon=str(path), tokens=vocab.symbols, lm=None, beam_size=beam_size,
                                   blank_token=BLANK, sil_token=SPACE, unk_word="<unk>")

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        """log_probs (B, T, C), lengths (B,) -> ids (no <blank>) of each row's best word sequence."""
        # A word is spelt with the boundary after it, which the last word has no frame for: one more frame,
        # where only the boundary (or a blank) can be read, lets it end.
        b, t, c = log_probs.shape
        padded = torch.full((b, t + 1, c), float("-inf"))
        padded[:, :t] = log_probs.float().cpu()
        rows, ends = torch.arange(b), lengths.cpu().long()
        padded[rows, ends, self.vocab.index[SPACE]] = 0.0
        padded[rows, ends, self.vocab.index[BLANK]] = 0.0
        hyps = self.decoder(padded, (ends + 1).int())
        out = []
        for row in hyps:
            words = row[0].words if row else []
            out.append(self.vocab.encode(" ".join(words))[0])
        return out


def read_lexicon(path: str | Path, normalizer: Normalizer) -> list[str]:
    """The words of a Kaldi text file, normalised as the judge's references are."""
    from zipper.inference.lexicon import read_words

    words = sorted({w for word in read_words(path) for w in normalizer(word).split()})
    if not words:
        raise ValueError(f"{path}: no words for the judge's lexicon")
    return words


def lexicon_decoder(config: dict[str, Any], vocab: CharVocabulary) -> Optional[LexiconCTCDecoder]:
    """The lexicon decoding a judge's config.yaml asks for (`lexicon`: a Kaldi text file), or None (greedy)."""
    if not config.get("lexicon"):
        return None
    return LexiconCTCDecoder(vocab, read_lexicon(config["lexicon"], Normalizer(**(config.get("normalizer") or {}))))


def pad_units(sequences: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) int64 units, or (B, T, D) float32 frames when the sequences are (T, D) float arrays, padded with 0
    (masked by the lengths); (B,) lengths."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    frames = np.asarray(sequences[0]).ndim == 2
    shape = (len(sequences), max(int(lengths.max()), 1), *(np.asarray(sequences[0]).shape[1:] if frames else ()))
    out = torch.zeros(shape, dtype=torch.float32 if frames else torch.long)
    for i, s in enumerate(sequences):
        out[i, :len(s)] = torch.as_tensor(s, dtype=out.dtype)
    return out, lengths


class JudgeBatches:
    """A trainer BatchSource over (units or frames, characters) pairs, batched by length."""

    def __init__(self, units: list[np.ndarray], chars: list[list[int]], batch_bins: int, seed: int,
                 shuffle: bool, max_batch_size: int = 0, rank: int = 0, world_size: int = 1):
        from zipper.data.sequences import LengthBatchSampler

        self.units, self.chars = units, chars
        self.sampler = LengthBatchSampler([len(u) for u in units], batch_bins, seed, shuffle, max_batch_size,
                                          rank, world_size)

    def batches(self, epoch: int) -> list[list[int]]:
        return self.sampler.batches(epoch)

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        units, unit_lengths = pad_units([self.units[i] for i in indices])
        char_lengths = torch.tensor([len(self.chars[i]) for i in indices], dtype=torch.long)
        chars = torch.full((len(indices), max(int(char_lengths.max()), 1)), -1, dtype=torch.long)
        for row, i in enumerate(indices):
            chars[row, :len(self.chars[i])] = torch.as_tensor(self.chars[i], dtype=torch.long)
        return {"units": units, "unit_lengths": unit_lengths, "chars": chars, "char_lengths": char_lengths}


def transcribe_all(model: UnitCTCJudge, vocab: CharVocabulary, units: dict[str, np.ndarray],
                   batch_size: int = 32, device: str | torch.device = "cpu",
                   lexicon: Optional[LexiconCTCDecoder] = None) -> dict[str, str]:
    """Judge transcripts of many utterances, batched by length (order of the input kept in the output)."""
    model.eval()
    keys = sorted(units, key=lambda u: len(units[u]))
    out: dict[str, str] = {}
    for start in range(0, len(keys), batch_size):
        chunk = keys[start:start + batch_size]
        padded, lengths = pad_units([units[u] if len(units[u]) else np.zeros(1, np.int64) for u in chunk])
        for utt, ids in zip(chunk, model.transcribe(padded.to(device), lengths.to(device), lexicon)):
            out[utt] = vocab.decode(ids)
    return {u: out[u] for u in units}


def load_units(units_dir: str | Path, utts: Sequence[str] | None = None, dedup_runs: bool = False,
               inventory: dict[str, Any] | None = None, scp: str | Path | None = None) -> dict[str, np.ndarray]:
    """Units of a set (all, or `utts`, each of which must exist), refusing another inventory than `inventory`.

    `scp` reads another list than units_dir/units.scp under the same provenance (e.g. nbest/units.2.scp)."""
    units = UnitSet(units_dir)
    if inventory is not None:
        units.check_inventory(inventory, "the units the judge was trained on")
    table = read_kv(scp) if scp is not None else units.scp
    keys = list(table) if utts is None else list(utts)
    missing = [u for u in keys if u not in table]
    if missing:
        raise KeyError(f"{len(missing)} utterances have no units in {scp or units_dir}, e.g. '{missing[0]}'")
    out = {}
    for utt in keys:
        raw = np.asarray(kaldiio.load_mat(table[utt]), dtype=np.int64)
        out[utt] = dedup(raw)[0] if dedup_runs else raw
    return out


def inventory_of(units_dir: str | Path) -> dict[str, Any]:
    """The unit inventory (codebook provenance) a units dir was made with."""
    provenance = UnitSet(units_dir).provenance
    return {k: provenance.get(k) for k in INVENTORY_KEYS}


def load_judge(exp_dir: str | Path, checkpoint: str = "valid.loss.ave.pth", device: str = "cpu"
               ) -> tuple[UnitCTCJudge, CharVocabulary, dict[str, Any]]:
    """(model, characters, config) of a finished judge_train experiment."""
    exp_dir = Path(exp_dir)
    for name in ("config.yaml", "tokens.txt", checkpoint):
        if not (exp_dir / name).exists():
            raise FileNotFoundError(f"{exp_dir / name} is missing: {exp_dir} is not a finished judge experiment")
    with open(exp_dir / "config.yaml", encoding="utf-8") as f:
        config = yaml.safe_load(f)
    vocab = CharVocabulary.load(exp_dir / "tokens.txt")
    inventory = inventory_of(config["train_units"])
    model = UnitCTCJudge(JudgeConfig(n_units=int(inventory["n_clusters"]), n_chars=len(vocab),
                                     **(config.get("judge_conf") or {})))
    model.load_state_dict(torch.load(exp_dir / checkpoint, map_location="cpu"))
    config["inventory"] = inventory
    return model.to(device).eval(), vocab, config


def normalised_targets(texts: dict[str, str], vocab: CharVocabulary, normalizer: Normalizer,
                       source: str) -> tuple[list[str], list[list[int]], int]:
    """(utts, character ids, dropped characters) of transcripts; an utterance that normalises to nothing
    is an error naming it (a judge cannot be trained towards an empty target)."""
    utts, ids, dropped = [], [], 0
    for utt, text in texts.items():
        encoded, unknown = vocab.encode(normalizer(text))
        if not encoded:
            raise ValueError(f"{source}: utterance '{utt}' has no characters left after normalisation: {text!r}")
        utts.append(utt)
        ids.append(encoded)
        dropped += unknown
    return utts, ids, dropped


def add_ctc_data_arguments(group, inputs: str, help_dir: str) -> None:
    """The options of a CTC character model's training data: `--{train,valid}_{inputs}` (dirs like `help_dir`)
    and `--{train,valid}_text`, and the transcript normalisation (shared by the judge and the unit encoder)."""
    group.add_argument(f"--train_{inputs}", required=True, help=f"{inputs} of the training set ({help_dir})")
    group.add_argument("--train_text", required=True, help="data dir (with `text`) of the training set")
    group.add_argument(f"--valid_{inputs}", required=True, help=f"{inputs} of the validation set")
    group.add_argument("--valid_text", required=True, help="data dir (with `text`) of the validation set")
    group.add_argument("--normalizer", type=yaml_value, default={},
                       help="YAML dict of zipper.scoring.wer.Normalizer fields (transcripts -> characters)")
