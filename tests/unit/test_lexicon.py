"""The lexicon constraint: text search spells only known words, ends only after a whole word."""

from __future__ import annotations

import pytest
import torch

from zipper.data.kaldi_dir import write_kv
from zipper.inference.lexicon import LexiconConstraint, lexicon_constraint, read_words
from zipper.inference.search import SearchConfig, run_search
from zipper.tokens.token_list import EOS, NUM_SPECIAL, SPECIAL_TOKENS

B = "\u2581"
PIECES = list(SPECIAL_TOKENS) + [B, "a", "c", "t", "o", "g", "d", B + "c"]
ID = {p: i for i, p in enumerate(PIECES)}
WORDS = {"cat", "cot", "dog", "a"}


def ids(*pieces: str) -> list[int]:
    return [ID[p] for p in pieces]


def allowed_after(constraint: LexiconConstraint, *pieces: str) -> set[str]:
    mask = constraint(torch.tensor([ids(*pieces)], dtype=torch.long).reshape(1, len(pieces)))[0]
    return {PIECES[i] for i in torch.nonzero(mask).flatten().tolist()}


def test_only_spellings_of_known_words_continue():
    c = LexiconConstraint(PIECES, WORDS, EOS, NUM_SPECIAL)
    assert allowed_after(c) == {B, B + "c"}  # a text starts a word; "<eos>" first would be an empty text
    assert allowed_after(c, B) == {"a", "c", "d"}
    assert allowed_after(c, B, "c") == {"a", "o"}
    assert allowed_after(c, B + "c") == {"a", "o"}  # a piece that starts a word and spells its first letter
    assert allowed_after(c, B, "c", "a") == {"t"}  # "ca" is no word: neither a new word nor the end
    assert allowed_after(c, B, "c", "a", "t") == {B, B + "c", SPECIAL_TOKENS[EOS]}
    assert allowed_after(c, B, "a") == {B, B + "c", SPECIAL_TOKENS[EOS]}  # "a" is a word; "at" is not
    assert allowed_after(c, B, "a", B, "d", "o", "g", SPECIAL_TOKENS[EOS]) == {B, B + "c", SPECIAL_TOKENS[EOS]}


class ScriptedDecoder:
    """Logits that prefer, at every step, the next piece of a fixed non-word text; rows follow beams."""

    def __init__(self, script: list[str], rows: int):
        self.script, self.position = script, torch.zeros(rows, dtype=torch.long)

    def logits(self) -> torch.Tensor:
        out = torch.full((len(self.position), len(PIECES)), -5.0)
        out[:, ID["o"]] = -1.0  # the runner-up everywhere
        for row, pos in enumerate(self.position.tolist()):
            out[row, ID[self.script[pos]] if pos < len(self.script) else EOS] = 0.0
        return out

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.position = self.position + 1
        return self.logits()

    def reorder(self, index: torch.Tensor) -> None:
        self.position = self.position[index]


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_search_turns_a_misspelling_into_a_word(method):
    script = [B, "c", "a", "g"]  # "cag": the decoder's favourite, not a word
    constraint = LexiconConstraint(PIECES, WORDS, EOS, NUM_SPECIAL)
    config = SearchConfig(method, beam_size=3, max_len=8)
    free = run_search(ScriptedDecoder(script, 1), ScriptedDecoder(script, 1).logits(), EOS, config)
    assert [PIECES[i] for i in free[0]] == script
    decoder = ScriptedDecoder(script, 1)
    hyp = run_search(decoder, decoder.logits(), EOS, config, constraint=constraint)[0]
    assert "".join(PIECES[i] for i in hyp).replace(B, " ").split() == ["cat"]


def test_lexicon_comes_from_a_kaldi_text_file(tmp_path):
    write_kv(tmp_path / "text", {"u1": "the cat", "u2": "a dog"})
    assert read_words(tmp_path / "text") == {"the", "cat", "a", "dog"}
    c = lexicon_constraint(str(tmp_path / "text"), tuple(PIECES), EOS, NUM_SPECIAL)
    assert c is lexicon_constraint(str(tmp_path / "text"), tuple(PIECES), EOS, NUM_SPECIAL)  # built once
    (tmp_path / "empty").write_text("")
    with pytest.raises(ValueError, match="empty: no words for a lexicon"):
        read_words(tmp_path / "empty")
